"""Config: flags over env over TOML file over defaults, and errors that name the bad source."""

from __future__ import annotations

import pytest

from gateway.config import Config, ConfigError


def test_defaults():
    c = Config.load({}, env={})
    assert (c.host, c.port, c.database_url, c.max_frame_bytes) == ("127.0.0.1", 4000, None, 65536)


def test_precedence_flags_over_env_over_file(tmp_path):
    f = tmp_path / "nuvem.toml"
    f.write_text('port = 5000\nhost = "0.0.0.0"\nhistory-max-count = 10\nheartbeat_timeout = 30\n')
    env = {"NUVEM_PORT": "6000", "NUVEM_DATABASE_URL": "postgresql://env/db", "NUVEM_HISTORY_MAX_AGE_SECONDS": "none"}
    c = Config.load({"port": 7000, "host": None, "config": str(f)}, env=env)
    assert c.port == 7000                        # flag
    assert c.database_url == "postgresql://env/db"   # env
    assert c.host == "0.0.0.0"                    # file (the None flag is unset)
    assert c.history_max_count == 10 and c.heartbeat_timeout == 30.0
    assert c.history_max_age_seconds is None      # "none" clears an optional setting
    assert Config.load({}, env=dict(env, NUVEM_CONFIG=str(f))).port == 6000


@pytest.mark.parametrize("env, message", [
    ({"NUVEM_PORT": "abc"}, "NUVEM_PORT"),
    ({"NUVEM_PORT": "70000"}, "port"),
    ({"NUVEM_MAX_FRAME_BYTES": "10"}, "max_frame_bytes"),
    ({"NUVEM_EVENT_LOOP": "trio"}, "event_loop"),
    ({"NUVEM_ACCESS_LOG": "maybe"}, "NUVEM_ACCESS_LOG"),
    ({"NUVEM_AUTH_CHECK_INTERVAL": "0"}, "auth_check_interval"),
])
def test_bad_values_name_their_source(env, message):
    with pytest.raises(ConfigError, match=message):
        Config.load({}, env=env)


def test_bad_file(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'prot'"):
        Config.load({}, env={}, config_file=f)
    f.write_text("port = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.load({}, env={}, config_file=f)
    with pytest.raises(ConfigError, match="cannot read"):
        Config.load({}, env={}, config_file=tmp_path / "missing.toml")


def test_booleans_from_env_and_file(tmp_path):
    assert Config.load({}, env={}).access_log is False
    assert Config.load({}, env={"NUVEM_ACCESS_LOG": "true"}).access_log is True
    assert Config.load({}, env={"NUVEM_ACCESS_LOG": "0"}).access_log is False   # not just "a non-empty string"
    f = tmp_path / "nuvem.toml"
    f.write_text("access_log = true\n")
    assert Config.load({}, env={}, config_file=f).access_log is True
