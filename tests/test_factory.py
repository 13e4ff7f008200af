"""Configuration and the application factory."""

from __future__ import annotations

from pathlib import Path

import pytest

from interphone.config import DEV_AUTH_TOKEN, DEV_BIRTHDATE_KEY, ConfigError, load_settings
from interphone.runtime import Runtime
from interphone.web import create_app


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"INTERPHONE_ENV": "staging"}, "INTERPHONE_ENV"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"OFFER_TIMEOUT_S": "soon"}, "OFFER_TIMEOUT_S"),
        ({"OFFER_TIMEOUT_S": "0"}, "OFFER_TIMEOUT_S"),
        ({"CALLBACK_MAX_ATTEMPTS": "2.5"}, "CALLBACK_MAX_ATTEMPTS"),
        ({"WRAP_UP_S": "nan"}, "WRAP_UP_S"),
        ({"STATUS_FAILURES_BEFORE_CALLBACK": "0"}, "STATUS_FAILURES_BEFORE_CALLBACK"),
        ({"HOLD_ANNOUNCE_S": "1.5"}, "HOLD_ANNOUNCE_S"),
        ({"HOLD_ANNOUNCE_S": "0"}, "HOLD_ANNOUNCE_S"),
        ({"PUBLIC_BASE_URL": "ftp://x"}, "PUBLIC_BASE_URL"),
        ({"TWILIO_ACCOUNT_SID": "XX123"}, "TWILIO_ACCOUNT_SID"),
        ({"INTERPHONE_ENV": "production"}, "SECRET_KEY"),
        ({"INTERPHONE_ENV": "production", "SECRET_KEY": "short"}, "SECRET_KEY"),
        ({"INTERPHONE_ENV": "production", "SECRET_KEY": "k" * 40}, "BIRTHDATE_HASH_KEY"),
        ({"SECRET_KEY_FILE": "/nonexistent/secret"}, "SECRET_KEY_FILE"),
        ({"TWILIO_ACCOUNT_SID": "AC" + "1" * 32}, "TWILIO_AUTH_TOKEN"),
        (
            {
                "INTERPHONE_ENV": "production",
                "SECRET_KEY": "k" * 40,
                "BIRTHDATE_HASH_KEY": "b" * 40,
            },
            "TWILIO_ACCOUNT_SID",
        ),
    ],
)
def test_bad_value_fails_at_start_up_naming_the_variable(
    env: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings(env)


PRODUCTION = {
    "INTERPHONE_ENV": "production",
    "SECRET_KEY": "k" * 40,
    "BIRTHDATE_HASH_KEY": "b" * 40,
    "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
    "TWILIO_AUTH_TOKEN": "t" * 32,
    "PUBLIC_BASE_URL": "https://interphone.example.gouv.fr",
}


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"BIRTHDATE_HASH_KEY": "k"}, "BIRTHDATE_HASH_KEY"),
        ({"BIRTHDATE_HASH_KEY": "b" * 31}, "BIRTHDATE_HASH_KEY"),
        ({"BIRTHDATE_HASH_KEY": DEV_BIRTHDATE_KEY}, "BIRTHDATE_HASH_KEY"),
        ({"TWILIO_AUTH_TOKEN": DEV_AUTH_TOKEN}, "TWILIO_AUTH_TOKEN"),
        ({"PUBLIC_BASE_URL": ""}, "PUBLIC_BASE_URL"),
        ({"PUBLIC_BASE_URL": "http://interphone.example.gouv.fr"}, "PUBLIC_BASE_URL"),
        ({"DEV_PHONE_REST_URL": "http://127.0.0.1:5001"}, "DEV_PHONE_REST_URL"),
        ({"INTERPHONE_FAILPOINTS": "queue.dispatch.offered"}, "INTERPHONE_FAILPOINTS"),
    ],
)
def test_production_refuses_a_guessable_key_a_public_token_no_https_or_a_test_variable(
    changes: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings({**PRODUCTION, **changes})


def test_production_starts_with_its_secrets_and_an_https_address() -> None:
    settings = load_settings(PRODUCTION)
    assert settings.env == "production" and not settings.dev_phone
    assert settings.public_base_url == "https://interphone.example.gouv.fr"


def test_defaults_need_nothing_from_the_environment() -> None:
    settings = load_settings({})
    assert settings.dev_phone and not settings.twilio_configured
    assert settings.env == "development"
    assert settings.redis_url is None and settings.database_url is None
    assert settings.queue.offer_timeout_s == 20 and settings.queue.callback_max_attempts == 3
    assert settings.status_failures_before_callback == 3 and settings.hold_announce_s == 50
    assert len(settings.secret_key) >= 32


def test_secret_may_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s" * 40 + "\n")
    settings = load_settings({"SECRET_KEY_FILE": str(secret)})
    assert settings.secret_key == "s" * 40


def test_queue_rules_are_configurable() -> None:
    settings = load_settings(
        {
            "OFFER_TIMEOUT_S": "15",
            "PROMOTE_AFTER_S": "900",
            "LANGUAGE_RELAX_S": "60",
            "CALLBACK_MAX_ATTEMPTS": "5",
        }
    )
    assert (
        settings.queue.offer_timeout_s,
        settings.queue.promote_after_s,
        settings.queue.language_relax_s,
        settings.queue.callback_max_attempts,
    ) == (15, 900, 60, 5)


def test_ivr_rules_are_configurable() -> None:
    settings = load_settings({"STATUS_FAILURES_BEFORE_CALLBACK": "5", "HOLD_ANNOUNCE_S": "20"})
    assert (settings.status_failures_before_callback, settings.hold_announce_s) == (5, 20)


def test_production_requires_redis_and_database_urls() -> None:
    settings = load_settings(PRODUCTION)
    rt = Runtime(settings)
    with pytest.raises(ConfigError, match="REDIS_URL"):
        _ = rt.redis_url
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        _ = rt.database_url


def test_unset_database_url_means_sqlite_in_the_instance_folder(tmp_path: Path) -> None:
    settings = load_settings({"INTERPHONE_INSTANCE": str(tmp_path / "inst")})
    assert Runtime(settings).database_url == f"sqlite:///{tmp_path / 'inst' / 'interphone.sqlite3'}"


def test_postgres_urls_are_normalized_to_psycopg() -> None:
    settings = load_settings({"DATABASE_URL": "postgres://u@h/db"})
    assert Runtime(settings).database_url == "postgresql+psycopg://u@h/db"


def test_healthz_reports_redis_and_database(runtime: Runtime) -> None:
    client = create_app(runtime=runtime).test_client()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "redis": {"ok": True}, "database": {"ok": True}}
    from interphone.worker import Worker

    worker = Worker([runtime.rq_queue], connection=runtime.redis)
    worker.register_birth()  # /readyz also wants an RQ worker alive
    try:
        assert client.get("/readyz").status_code == 200
    finally:
        worker.register_death()


def test_readyz_says_not_ready_when_redis_is_unreachable(runtime: Runtime, settings) -> None:
    broken = Runtime(settings.with_overrides(redis_url="redis://127.0.0.1:1/0"))
    try:
        client = create_app(runtime=broken).test_client()
        assert client.get("/healthz").json["redis"] == {"ok": False, "error": "ConnectionError"}
        response = client.get("/readyz")
        assert response.status_code == 503 and response.json["status"] == "not-ready"
    finally:
        broken.close()


def _signed_in(runtime: Runtime):
    import re

    from interphone.accounts import add_user

    add_user(runtime.sessions, "agent@example.org", "a-long-password", site_code="prefecture")
    client = create_app(runtime=runtime).test_client()
    login = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    client.post(
        "/login",
        data={"email": "agent@example.org", "password": "a-long-password", "csrf_token": token},
    )
    return client


def test_queue_page_needs_a_signed_in_user(runtime: Runtime, queue) -> None:
    response = create_app(runtime=runtime).test_client().get("/")
    assert response.status_code == 302 and "/login" in response.location


def test_queue_page_lists_waiting_contacts_with_masked_numbers(runtime: Runtime, queue) -> None:
    queue.enqueue_live("prefecture", language="ar", phone="+33612345678")
    client = _signed_in(runtime)
    page = client.get("/").get_data(as_text=True)
    assert "1 contact(s) en attente" in page and "ar" in page
    assert "+33612345678" not in page and "78" in page


def test_unknown_site_on_the_queue_page_is_a_clear_404(runtime: Runtime, queue) -> None:
    response = _signed_in(runtime).get("/?site=nowhere")
    assert response.status_code == 404 and response.json["error_id"] == "unknown-site"
