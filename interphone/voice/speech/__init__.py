"""Offline speech recognition (Vosk) for the keypad-free door intercom.

The audio never leaves the préfecture: Twilio streams the caller's voice (Media Streams,
8 kHz µ-law) to the **speech stream server**, a process of its own (``Procfile``:
``stream``, :func:`interphone.voice.speech.app.create_stream_app`), which recognizes one
word of a small grammar per step and stores the outcome in Redis for the IVR.

How the IVR uses it (the IVR side lives in ``voice/ivr.py`` and ``voice/door.py``):

1. For a speech step, answer Twilio with::

       <Connect action="https://…/voice/step/<step>?n=…">
         <Stream url="wss://…/voice/stream">
           <Parameter name="key" value="<step>-<n>"/>
           <Parameter name="grammar" value="yes_no|menu|language|digits"/>
           <Parameter name="lang" value="fr"/>
           <Parameter name="max_s" value="8"/>   (optional: how long to listen)
           <Parameter name="token" value="…"/>   (token.sign(SECRET_KEY, CallSid, key))
         </Stream>
       </Connect>

2. The server decides (match, no match, silence, too long or error), stores the result
   and closes the stream; Twilio then requests the ``action`` URL.
3. There, read the result::

       result = SpeechResults(redis).get(call_sid, key)   # SpeechResult | None
       if result is None or result.status == "error": ...  # fall back (e.g. <Gather>)
       elif result.matched: result.meaning  # "yes", "callback", "fr", "0612345678"
       else: ...  # no_match, silence, too_long: ask again, then the live queue

   ``SpeechResults.delete(call_sid, key)`` before asking the same question again.
   ``result.word`` is what was heard, for the read-back ("vous avez dit : rappel ?").
   Spoken digits are personal data: normalize them with
   :func:`~interphone.voice.speech.vocabulary.phone_from_digits`, read them back for a
   yes/no confirmation, never log them (``repr(result)`` masks them).

Modules: ``mulaw`` (G.711 decoding), ``vocabulary`` (the ``[speech.*]`` tables of the
prompt catalogues; normalization), ``models`` (``ModelRegistry``: one ``vosk.Model`` per
language and process), ``recognizer`` (``Utterance``: one grammar-restricted utterance),
``results`` (``SpeechResult``, ``SpeechResults``), ``token`` (the stream's per-call
token), ``stream`` (the WebSocket endpoint),
``app`` (the stream server's WSGI app), ``bench`` (``interphone bench speech``). Vosk is
imported when a model is first loaded; importing this package (results, vocabulary)
loads neither Vosk nor Flask-Sock.
"""

from __future__ import annotations

from .results import SpeechResult, SpeechResults, Status
from .vocabulary import (
    GRAMMARS,
    Grammar,
    Vocabulary,
    VocabularyError,
    digits_from_words,
    load_vocabulary,
    phone_from_digits,
)

__all__ = [
    "GRAMMARS",
    "Grammar",
    "SpeechResult",
    "SpeechResults",
    "Status",
    "Vocabulary",
    "VocabularyError",
    "digits_from_words",
    "load_vocabulary",
    "phone_from_digits",
]
