"""Configuration of the scale-out topology: Sentinel addresses, fail points, the worker."""

from __future__ import annotations

import pytest
import redis

from interphone.config import ConfigError, load_settings
from interphone.runtime import connect_redis


def test_sentinel_addresses_are_parsed_into_host_port_pairs() -> None:
    settings = load_settings(
        {"REDIS_SENTINELS": "127.0.0.1:17001, sentinel-b:26379", "REDIS_SENTINEL_MASTER": "ip"}
    )
    assert settings.redis_sentinels == (("127.0.0.1", 17001), ("sentinel-b", 26379))
    assert settings.redis_sentinel_master == "ip"


@pytest.mark.parametrize("bad", ["127.0.0.1", "host:port", "host:0", ":26379", "h:99999"])
def test_malformed_sentinel_address_stops_the_start_naming_the_variable(bad: str) -> None:
    with pytest.raises(ConfigError, match="REDIS_SENTINELS"):
        load_settings({"REDIS_SENTINELS": bad})


def test_sentinel_settings_give_a_client_that_asks_the_sentinels_for_the_primary() -> None:
    client = connect_redis(load_settings({"REDIS_SENTINELS": "127.0.0.1:17999"}))
    try:
        assert isinstance(client.connection_pool, redis.sentinel.SentinelConnectionPool)
        assert client.connection_pool.service_name == "interphone"
    finally:
        client.close()


def test_fail_points_are_refused_in_production() -> None:
    production = {
        "INTERPHONE_ENV": "production",
        "SECRET_KEY": "x" * 40,
        "BIRTHDATE_HASH_KEY": "k" * 40,
        "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
        "TWILIO_AUTH_TOKEN": "token",
        "INTERPHONE_FAILPOINTS": "queue.dispatch.offered",
    }
    with pytest.raises(ConfigError, match="INTERPHONE_FAILPOINTS"):
        load_settings(production)
    assert load_settings({"INTERPHONE_FAILPOINTS": "a, b"}).failpoints == ("a", "b")
