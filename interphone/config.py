"""Settings, read from the environment in this one module.

Every variable is parsed strictly: a bad value stops start-up with a
:class:`ConfigError` that names the variable. Secrets may also come from a file
named by ``NAME_FILE`` (e.g. ``SECRET_KEY_FILE=/run/secrets/key``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .digits import small_int

ENVIRONMENTS = ("development", "test", "production")
# Credentials shared by the app and the dev-phone simulator when Twilio is not configured.
DEV_ACCOUNT_SID = "AC" + "0" * 32
DEV_AUTH_TOKEN = "dev-phone-auth-token"
# the birth-date hash key of development and tests: fixed, so demo data keeps matching
DEV_BIRTHDATE_KEY = "interphone-development-only-key"
MIN_SECRET = 32  # characters of SECRET_KEY and BIRTHDATE_HASH_KEY in production
# variables of the test harness (README): production refuses to start with any of them
TEST_ONLY = ("DEV_PHONE_REST_URL", "INTERPHONE_FAILPOINTS")


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class QueueSettings:
    """The tunable rules of the call queue. Durations in seconds.

    Each field is the environment variable of its name in capitals (``OFFER_TIMEOUT_S``…),
    listed in the README's Configuration table; docs/architecture.md ("The path of a call")
    tells where each rule applies.
    """

    # OFFER_TIMEOUT_S: an offer not accepted in time returns the contact to its place. The
    # sweep expires offers past their deadline, every SWEEP_INTERVAL_S, and the agent may
    # accept until then: an offer lasts between OFFER_TIMEOUT_S and OFFER_TIMEOUT_S +
    # SWEEP_INTERVAL_S (20 to 22 s by default).
    offer_timeout_s: float = 20.0
    wrap_up_s: float = 30.0
    promote_after_s: float = 1800.0
    language_relax_s: float = 120.0
    callback_retry_delay_s: float = 600.0
    callback_max_attempts: int = 3
    missed_offers_pause: int = 2
    urgent_within_days: int = 15
    dispatch_scan: int = 50
    sweep_interval_s: float = 2.0  # SWEEP_INTERVAL_S: period of the sweep (offers, wrap-ups)
    default_handle_time_s: float = 300.0


@dataclass(frozen=True)
class RateLimits:
    """Flask-Limiter strings ("10/minute;100/hour"); see docs/operations.md."""

    enabled: bool = True
    login: str = "20/minute;200/hour"  # per IP, sign-in form posts
    api: str = "600/minute"  # per IP, the JSON API
    webhooks: str = "120/minute"  # per IP, webhooks refused for a bad signature
    caller_calls: str = "15/hour"  # per calling number, new calls
    caller_turns: str = "60/minute"  # per calling number, IVR turns
    caller_sms: str = "10/hour"  # per sending number, SMS
    # per calling number (per call when withheld), case status lookups: the guard
    # against guessing birth dates, so it holds even with RATE_LIMITS=off
    caller_lookups: str = "10/hour"
    # withheld callers (no number, or Twilio's placeholders) share one allowance per
    # kind: sized for their share of a préfecture's line (docs/operations.md, section 5)
    withheld_calls: str = "60/hour"
    withheld_turns: str = "120/minute"
    withheld_lookups: str = "30/hour"
    # failed birth dates per file number, whoever types them: then only an agent gives
    # that file's status (kept even with RATE_LIMITS=off, as the lookups)
    file_failures: str = "5/day"


@dataclass(frozen=True)
class FeedLimits:
    """Open live feeds (web/feeds.py). Each holds one of the process's WEB_THREADS threads,
    which also answer Twilio: at most half of them stream feeds."""

    web_threads: int = 32  # WEB_THREADS, as the Procfile's web line reads it
    per_process: int = 16  # FEEDS_PER_PROCESS, at most WEB_THREADS / 2
    per_user: int = 4  # FEEDS_PER_USER: beyond, the person's oldest feed is replaced


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    redis_url: str | None = None
    # Redis through Sentinel (REDIS_SENTINELS=host:port,...): the primary of
    # ``redis_sentinel_master`` is found and followed across fail-overs (REDIS_URL unused)
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = "interphone"
    redis_sentinel_db: int = 0
    database_url: str | None = None
    secret_key: str = ""
    birthdate_key: str = ""
    public_base_url: str = "http://127.0.0.1:5000"
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_api_key: str | None = None
    twilio_api_secret: str | None = None
    vosk_models_dir: Path | None = None
    # languages heard by the local speech server (Vosk); the others use Twilio's speech
    # recognition. None: every language with a model folder under VOSK_MODELS_DIR.
    local_speech_languages: tuple[str, ...] | None = None
    speech_stream_url: str = ""  # wss://… of the speech server; default from the base URL
    door_callback_offer_s: float = 300.0  # at the door, offer a callback after this wait
    # the IVR: wrong birth dates in one call before a callback (at the door, an agent) is
    # offered instead of another try; seconds of silence between two announcements on hold
    status_failures_before_callback: int = 3
    hold_announce_s: int = 50
    voicemail_max_s: int = 120  # longest message left after hours (<Record maxLength>)
    instance_path: Path = Path("instance")
    default_site: str = "prefecture"
    default_region: str = "FR"
    queue: QueueSettings = field(default_factory=QueueSettings)

    dev_phone: bool = True
    api_tokens: tuple[str, ...] = ()
    # operations (docs/operations.md)
    log_format: str = "text"  # LOG_FORMAT: text or json
    log_level: str = "INFO"
    metrics_token: str | None = None  # METRICS_TOKEN: /metrics from outside loopback
    retention_days: int = 180  # RETENTION_DAYS: personal data of closed contacts
    trusted_proxies: int = 0  # TRUSTED_PROXIES: reverse proxies whose X-Forwarded-For counts
    limits: RateLimits = field(default_factory=lambda: RateLimits())
    feeds: FeedLimits = field(default_factory=FeedLimits)
    # the dev phone's REST side reached over HTTP (fault tests cut that network)
    dev_phone_rest_url: str = ""
    # named fail points that stop the process where a fault test kills it (never production)
    failpoints: tuple[str, ...] = ()
    # a bridge leg with no sign of life after this long was never placed: place it again
    bridge_leg_timeout_s: float = 90.0

    @property
    def twilio_configured(self) -> bool:
        return not self.dev_phone

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


class _Env:
    """Typed, strict accessors over one environment mapping."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def text(self, name: str, default: str | None = None) -> str | None:
        file_name = self.environ.get(f"{name}_FILE")
        if file_name:
            try:
                return Path(file_name).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{name}_FILE: cannot read {file_name!r} ({exc})") from exc
        value = self.environ.get(name)
        if value is None or value.strip() == "":
            return default
        return value.strip()

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.text(name, default) or default
        if value not in choices:
            raise ConfigError(f"{name}: {value!r} is not one of {', '.join(choices)}")
        return value

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}: {raw!r} is not a number") from None
        if value != value or value < minimum:  # NaN or below the floor
            raise ConfigError(f"{name}: {raw!r} must be a number >= {minimum:g}")
        return value

    def integer(self, name: str, default: int, *, minimum: int = 0) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}: {raw!r} is not a whole number") from None
        if value < minimum:
            raise ConfigError(f"{name}: {raw!r} must be >= {minimum}")
        return value

    def rate(self, name: str, default: str) -> str:
        """A Flask-Limiter rate string such as ``10/minute;100/hour``."""
        value = self.text(name, default) or default
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ConfigError(f"{name}: {value!r} is not a rate such as '10/minute'") from None
        return value

    def url(self, name: str, schemes: tuple[str, ...]) -> str | None:
        value = self.text(name)
        if value is None:
            return None
        scheme = value.split(":", 1)[0].lower()
        if ":" not in value or scheme not in schemes:
            raise ConfigError(f"{name}: {value!r} must start with one of {', '.join(schemes)}")
        return value


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``environ`` (default: ``os.environ``)."""

    env = _Env(os.environ if environ is None else environ)
    mode = env.choice("INTERPHONE_ENV", ENVIRONMENTS, "development")
    production = mode == "production"
    if production:
        for name in TEST_ONLY:
            if env.text(name) is not None:
                raise ConfigError(f"{name}: for tests only, refused in production")

    secret_key = env.text("SECRET_KEY")
    if secret_key is None:
        if production:
            raise ConfigError("SECRET_KEY: required in production")
        secret_key = secrets.token_hex(32)
    elif production and len(secret_key) < MIN_SECRET:
        raise ConfigError(f"SECRET_KEY: must be at least {MIN_SECRET} characters in production")

    birthdate_key = env.text("BIRTHDATE_HASH_KEY")
    if birthdate_key is None:
        if production:
            raise ConfigError("BIRTHDATE_HASH_KEY: required in production")
        birthdate_key = DEV_BIRTHDATE_KEY
    elif production and (len(birthdate_key) < MIN_SECRET or birthdate_key == DEV_BIRTHDATE_KEY):
        # a short or published key lets anyone holding the hashes try every birth date
        raise ConfigError(
            f"BIRTHDATE_HASH_KEY: at least {MIN_SECRET} characters, and not the "
            "development key, in production"
        )

    twilio_sid = env.text("TWILIO_ACCOUNT_SID")
    if twilio_sid is not None and not (twilio_sid.startswith("AC") and len(twilio_sid) == 34):
        raise ConfigError("TWILIO_ACCOUNT_SID: expected 'AC' followed by 32 hex characters")
    twilio_token = env.text("TWILIO_AUTH_TOKEN")
    if (twilio_sid is None) != (twilio_token is None):
        raise ConfigError("TWILIO_AUTH_TOKEN: give both TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
    if production and twilio_sid is None:
        raise ConfigError("TWILIO_ACCOUNT_SID: required in production")
    if production and twilio_token == DEV_AUTH_TOKEN:  # published: anyone could sign webhooks
        raise ConfigError("TWILIO_AUTH_TOKEN: the dev phone's token is refused in production")
    # The dev phone plays Twilio when no credentials are set (never in production).
    dev_phone = twilio_sid is None and not production
    if twilio_sid is None:
        twilio_sid, twilio_token = DEV_ACCOUNT_SID, DEV_AUTH_TOKEN

    api_tokens = tuple(t.strip() for t in (env.text("API_TOKENS") or "").split(",") if t.strip())
    if any(len(token) < 32 for token in api_tokens):
        raise ConfigError("API_TOKENS: each token must have at least 32 characters")
    vosk_dir = env.text("VOSK_MODELS_DIR")
    local_speech = env.text("LOCAL_SPEECH_LANGUAGES")
    stream_url = env.url("SPEECH_STREAM_URL", ("ws", "wss"))
    public_base_url = env.url("PUBLIC_BASE_URL", ("http", "https"))
    if production and not (public_base_url or "").lower().startswith("https://"):
        # Twilio's signatures cover this address; cookies are sent over https alone
        raise ConfigError("PUBLIC_BASE_URL: an https:// address is required in production")

    failpoints = tuple(
        p.strip() for p in (env.text("INTERPHONE_FAILPOINTS") or "").split(",") if p.strip()
    )

    queue = QueueSettings(
        offer_timeout_s=env.number("OFFER_TIMEOUT_S", 20.0, minimum=1),
        wrap_up_s=env.number("WRAP_UP_S", 30.0),
        promote_after_s=env.number("PROMOTE_AFTER_S", 1800.0, minimum=1),
        language_relax_s=env.number("LANGUAGE_RELAX_S", 120.0),
        callback_retry_delay_s=env.number("CALLBACK_RETRY_DELAY_S", 600.0),
        callback_max_attempts=env.integer("CALLBACK_MAX_ATTEMPTS", 3, minimum=1),
        missed_offers_pause=env.integer("MISSED_OFFERS_PAUSE", 2, minimum=1),
        urgent_within_days=env.integer("URGENT_WITHIN_DAYS", 15),
        dispatch_scan=env.integer("DISPATCH_SCAN", 50, minimum=1),
        sweep_interval_s=env.number("SWEEP_INTERVAL_S", 2.0, minimum=0.1),
        default_handle_time_s=env.number("DEFAULT_HANDLE_TIME_S", 300.0, minimum=1),
    )

    limits = RateLimits(
        enabled=env.choice("RATE_LIMITS", ("on", "off"), "off" if mode == "test" else "on") == "on",
        login=env.rate("RATE_LIMIT_LOGIN", RateLimits.login),
        api=env.rate("RATE_LIMIT_API", RateLimits.api),
        webhooks=env.rate("RATE_LIMIT_WEBHOOKS", RateLimits.webhooks),
        caller_calls=env.rate("RATE_LIMIT_CALLER_CALLS", RateLimits.caller_calls),
        caller_turns=env.rate("RATE_LIMIT_CALLER_TURNS", RateLimits.caller_turns),
        caller_sms=env.rate("RATE_LIMIT_CALLER_SMS", RateLimits.caller_sms),
        caller_lookups=env.rate("RATE_LIMIT_CALLER_LOOKUPS", RateLimits.caller_lookups),
        withheld_calls=env.rate("RATE_LIMIT_WITHHELD_CALLS", RateLimits.withheld_calls),
        withheld_turns=env.rate("RATE_LIMIT_WITHHELD_TURNS", RateLimits.withheld_turns),
        withheld_lookups=env.rate("RATE_LIMIT_WITHHELD_LOOKUPS", RateLimits.withheld_lookups),
        file_failures=env.rate("RATE_LIMIT_FILE_FAILURES", RateLimits.file_failures),
    )
    metrics_token = env.text("METRICS_TOKEN")
    if metrics_token is not None and len(metrics_token) < 32:
        raise ConfigError("METRICS_TOKEN: must have at least 32 characters")

    return Settings(
        env=mode,
        log_format=env.choice("LOG_FORMAT", ("text", "json"), "json" if production else "text"),
        log_level=env.choice("LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"),
        metrics_token=metrics_token,
        retention_days=env.integer("RETENTION_DAYS", 180, minimum=1),
        trusted_proxies=env.integer("TRUSTED_PROXIES", 0),
        limits=limits,
        feeds=_feed_limits(env),
        redis_url=env.url("REDIS_URL", ("redis", "rediss", "unix")),
        redis_sentinels=_sentinels(env.text("REDIS_SENTINELS")),
        redis_sentinel_master=env.text("REDIS_SENTINEL_MASTER", "interphone") or "interphone",
        redis_sentinel_db=env.integer("REDIS_SENTINEL_DB", 0),
        database_url=env.url(
            "DATABASE_URL", ("sqlite", "postgresql", "postgresql+psycopg", "postgres")
        ),
        secret_key=secret_key,
        birthdate_key=birthdate_key,
        public_base_url=(public_base_url or "http://127.0.0.1:5000").rstrip("/"),
        twilio_account_sid=twilio_sid,
        twilio_auth_token=twilio_token,
        dev_phone=dev_phone,
        api_tokens=api_tokens,
        dev_phone_rest_url=(env.url("DEV_PHONE_REST_URL", ("http",)) or "").rstrip("/"),
        failpoints=failpoints,
        bridge_leg_timeout_s=env.number("BRIDGE_LEG_TIMEOUT_S", 90.0, minimum=1),
        twilio_api_key=env.text("TWILIO_API_KEY"),
        twilio_api_secret=env.text("TWILIO_API_SECRET"),
        vosk_models_dir=Path(vosk_dir) if vosk_dir else None,
        local_speech_languages=(
            tuple(code.strip() for code in local_speech.split(",") if code.strip())
            if local_speech is not None
            else None
        ),
        speech_stream_url=stream_url or "",
        door_callback_offer_s=env.number("DOOR_CALLBACK_OFFER_S", 300.0, minimum=0),
        status_failures_before_callback=env.integer(
            "STATUS_FAILURES_BEFORE_CALLBACK", 3, minimum=1
        ),
        hold_announce_s=env.integer("HOLD_ANNOUNCE_S", 50, minimum=1),
        voicemail_max_s=env.integer("VOICEMAIL_MAX_S", 120, minimum=5),
        instance_path=Path(env.text("INTERPHONE_INSTANCE", "instance") or "instance").resolve(),
        default_site=env.text("INTERPHONE_SITE", "prefecture") or "prefecture",
        default_region=env.text("DEFAULT_REGION", "FR") or "FR",
        queue=queue,
    )


def _feed_limits(env: _Env) -> FeedLimits:
    threads = env.integer("WEB_THREADS", FeedLimits.web_threads, minimum=1)
    # one thread (a sync worker): no feed at all, every screen is told to retry elsewhere
    per_process = env.integer("FEEDS_PER_PROCESS", threads // 2, minimum=0)
    if per_process > threads // 2:
        raise ConfigError(
            f"FEEDS_PER_PROCESS: {per_process} is more than half of WEB_THREADS ({threads}): "
            "the live feeds would take the threads that answer Twilio"
        )
    per_user = env.integer("FEEDS_PER_USER", FeedLimits.per_user, minimum=1)
    return FeedLimits(web_threads=threads, per_process=per_process, per_user=per_user)


def _sentinels(raw: str | None) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` → ((host, port), ...); empty when unset."""
    out = []
    for item in (raw or "").split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        number = small_int(port, 5)
        if not sep or not host or number is None or not 0 < number < 65536:
            raise ConfigError(f"REDIS_SENTINELS: {item!r} is not host:port")
        out.append((host.strip("[]"), number))
    return tuple(out)
