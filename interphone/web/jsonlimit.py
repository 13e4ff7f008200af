"""JSON bodies read with a nesting limit, wherever the app reads one (its JSON provider).

Python's decoder recurses once per level of nesting: a body nested 1,000 deep raised
``RecursionError`` out of ``request.get_json``, a 500 before any view ran (the NUL
guard reads JSON bodies first). No body the app takes is nested more than a few
levels, so a deeper one is malformed JSON: a ``ValueError``, which ``get_json`` turns
into its 400 (or, when silent, into None) and the API into its own 400.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from flask.json.provider import DefaultJSONProvider

MAX_DEPTH = 32

# a string runs to its closing quote, or to the end of a malformed text: every quote
# starts a match that succeeds, so a hostile text is read in linear time
_STRINGS = re.compile(r'"(?:[^"\\]|\\[\s\S])*+(?:"|\\?\Z)')
_BRACKETS = re.compile(r"[\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def too_deep(text: str) -> bool:
    """Whether the arrays and objects of the JSON ``text`` nest deeper than
    :data:`MAX_DEPTH` (brackets inside strings do not count); linear, no recursion."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False  # too few brackets to nest that deep
    brackets = _BRACKETS.findall(_STRINGS.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > MAX_DEPTH


class BoundedJSON(DefaultJSONProvider):
    """Flask's JSON, refusing documents nested deeper than :data:`MAX_DEPTH`."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        text = s if isinstance(s, str) else s.decode(json.detect_encoding(s), "surrogatepass")
        if too_deep(text):
            raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
        return super().loads(text, **kwargs)
