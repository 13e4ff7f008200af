"""The speech stream server: a small WSGI app of its own (``Procfile``: ``stream``), so
the models (about 0.5 GB each) are loaded once, in one process, not in every web worker.

Run it with one gunicorn process and enough threads for the simultaneous streams (each
stream holds a thread for the length of a speech step), with the worker class that gives
a thread only to a request arrived whole (:mod:`interphone.gunicorn_worker`)::

    gunicorn --workers 1 --threads 128 \
        --worker-class interphone.gunicorn_worker.GuardedThreadWorker \
        "interphone.voice.speech.app:create_stream_app()"
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, abort, jsonify, request
from twilio.request_validator import RequestValidator

from ...config import Settings, load_settings
from ...runtime import connect_redis
from ..signature import raw_path_and_query
from .models import ModelError, ModelRegistry, rss_mb
from .recognizer import Limits
from .results import SpeechResults
from .stream import PATH, SpeechStreams, init_app

log = logging.getLogger(__name__)


def registry_from_settings(settings: Settings, vocabulary_dir: Path | None = None) -> ModelRegistry:
    """Models from ``VOSK_MODELS_DIR/<lang>/``."""
    return ModelRegistry(settings.vosk_models_dir, vocabulary_dir=vocabulary_dir)


def stream_urls(settings: Settings) -> list[str]:
    """The URLs Twilio may have signed for this handshake: the raw path and query on
    ``SPEECH_STREAM_URL``'s host (when the stream server has a host of its own) or on
    ``PUBLIC_BASE_URL``, each as ``wss://`` (the ``<Stream url>``) and ``https://``."""
    tail = raw_path_and_query()
    bases = [settings.public_base_url.rstrip("/")]
    urls = []
    if settings.speech_stream_url:
        urls.append(settings.speech_stream_url)
        parts = urlsplit(settings.speech_stream_url)
        bases.insert(0, f"{parts.scheme}://{parts.netloc}")
    for base in bases:
        scheme, _, rest = base.partition("://")
        secure = scheme in ("https", "wss")
        urls += [("wss://" if secure else "ws://") + rest + tail]
        urls += [("https://" if secure else "http://") + rest + tail]
    return urls


def create_stream_app(
    settings: Settings | None = None,
    *,
    registry: ModelRegistry | None = None,
    results: SpeechResults | None = None,
    limits: Limits | None = None,
    vocabulary_dir: str | Path | None = None,
    max_streams: int = 100,
    load: bool = True,
) -> Flask:
    """The WebSocket endpoint on ``/voice/stream`` and ``GET /healthz``.

    The endpoint is public (Twilio connects to it), so the WebSocket handshake must carry
    Twilio's ``X-Twilio-Signature`` (the auth token's signature of the stream URL, as
    ``PUBLIC_BASE_URL`` gives it, in its ``wss://`` or ``https://`` form): anything else
    is refused with 403 before any audio is taken. That signature is the same for every
    call: each stream must also carry the IVR's token for its call (:mod:`.token`).

    ``load``: load every model now (the default: the first caller does not wait for
    it, and a missing grammar word is logged, or stops start-up in strict mode).
    """
    settings = settings or load_settings()
    vocab = Path(vocabulary_dir) if vocabulary_dir else None
    registry = registry or registry_from_settings(settings, vocab)
    if results is None:
        results = SpeechResults(connect_redis(settings))
    if load:
        languages = registry.languages()
        if not languages:
            message = "no Vosk model: set VOSK_MODELS_DIR to a folder with one folder per language"
            if settings.env == "production":
                raise ModelError(message)
            log.warning("%s; every speech step will answer 'error'", message)
        registry.load_all()
    streams = SpeechStreams(
        registry, results, limits, secret=settings.secret_key, max_streams=max_streams
    )
    app = Flask(__name__)
    app.extensions["speech_streams"] = streams
    init_app(app, streams, PATH)
    validator = RequestValidator(settings.twilio_auth_token or "")

    @app.before_request
    def twilio_only() -> None:
        if request.path != PATH:
            return
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature or not any(
            validator.validate(url, {}, signature) for url in stream_urls(settings)
        ):
            abort(403, description="invalid Twilio signature")

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(
            status="ok",
            pid=os.getpid(),
            rss_mb=rss_mb(),
            **registry.describe(),
            **streams.describe(),
        )

    return app
