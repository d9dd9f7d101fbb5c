"""Settings: declared as data, validated, persisted atomically, corrupt files survived."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from app.errors import ConfigError
from app.settings import BY_NAME, SETTINGS, Settings, write_json_atomic


def test_defaults_are_valid() -> None:
    for setting in SETTINGS:
        assert setting.validate(setting.default) == setting.default


def test_round_trip_keeps_changed_values(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    settings = Settings(path)
    servers = [{"urls": ["turn:127.0.0.1:3478"], "username": "u", "credential": "p"}]
    settings.update({"ice_servers": servers, "relay_only": True, "relay.port": 0})
    settings.save()
    again = Settings.load(path)
    assert again.load_error is None
    assert again["ice_servers"] == servers
    assert again["relay_only"] is True
    assert again["relay.port"] == 0
    assert again.as_dict() == settings.as_dict()
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_missing_file_gives_defaults_without_error(tmp_path: Path) -> None:
    settings = Settings.load(tmp_path / "nope.json")
    assert settings.load_error is None
    assert settings["signaling.backend"] == "websocket"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "is corrupt"),
        ("[1, 2]", "is not a JSON object"),
        ("\xff\xfe", "is corrupt"),
    ],
)
def test_corrupt_file_is_reported_once_and_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str, expected: str
) -> None:
    path = tmp_path / "settings.json"
    path.write_text(content, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="app.settings"):
        settings = Settings.load(path)
    assert settings.load_error is not None
    assert expected in settings.load_error
    assert "\n" not in settings.load_error
    assert len(caplog.records) == 1
    assert settings.as_dict() == Settings(path).as_dict()  # all defaults
    # A second start is clean: the file on disk is now valid.
    assert Settings.load(path).load_error is None


def test_corrupt_file_is_kept_aside(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text("{oops", encoding="utf-8")
    Settings.load(path)
    assert (tmp_path / "settings.json.corrupt").read_text(encoding="utf-8") == "{oops"


def test_one_bad_value_falls_back_alone(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    values = {"relay.port": 99999, "relay_only": True}
    path.write_text(json.dumps({"version": 1, "values": values}), encoding="utf-8")
    settings = Settings.load(path)
    assert settings["relay.port"] == BY_NAME["relay.port"].default
    assert settings["relay_only"] is True
    assert settings.load_error == (
        "settings: relay.port: port must be between 0 and 65535, got 99999; using the default"
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("relay.port", "3478", "relay.port: expected int, got str"),
        ("relay.port", True, "relay.port: expected int, got bool"),
        ("relay.port", 70000, "relay.port: port must be between 0 and 65535, got 70000"),
        ("signaling.backend", "carrier-pigeon", "signaling.backend: must be one of"),
        ("signaling.url", "http://x", "signaling.url: signaling URL must start with ws://"),
        ("relay.external_ip", "example.com", "relay.external_ip: 'example.com' is not an IP"),
        ("relay.realm", "two words", "relay.realm: realm must be a non-empty word"),
        ("relay.users", [["alice"]], "relay.users: each user must be a [name, password] pair"),
        ("relay.users", [["a:b", "pw"]], "must not contain ':'"),
        ("audio.noise_suppression", 9, "must be between 0 and 4"),
        ("ice_servers", [{"urls": ["http://x"]}], "must start with stun:, stuns:, turn: or turns:"),
        ("ice_servers", [{"urls": ["turn:example.com"]}], "TURN needs a username and a credential"),
        ("ice_servers", ["stun:x"], "expected an object with a list of 'urls'"),
        ("nonexistent", 1, "unknown setting 'nonexistent'"),
    ],
)
def test_bad_values_are_refused_with_one_line(name: str, value: Any, message: str) -> None:
    settings = Settings(Path("/nonexistent/settings.json"))
    before = settings.as_dict()
    with pytest.raises(ConfigError) as info:
        settings.set(name, value)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert settings.as_dict() == before


def test_cross_check_relay_port_range() -> None:
    settings = Settings(Path("/nonexistent/settings.json"))
    with pytest.raises(ConfigError, match="min 60000 is above max 50000"):
        settings.update({"relay.min_port": 60000, "relay.max_port": 50000})
    settings.update({"relay.min_port": 40000, "relay.max_port": 40010})
    assert settings["relay.max_port"] == 40010


def test_values_are_copies() -> None:
    settings = Settings(Path("/nonexistent/settings.json"))
    servers = settings["ice_servers"]
    servers.append({"urls": ["stun:x"]})
    assert settings["ice_servers"] == []


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_check_validates_without_storing() -> None:
    settings = Settings(Path("/nonexistent/settings.json"))
    merged = settings.check({"relay.port": 5000})
    assert merged["relay.port"] == 5000
    assert settings["relay.port"] == 3478
    with pytest.raises(ConfigError, match="min 60000 is above max 50000"):
        settings.check({"relay.min_port": 60000, "relay.max_port": 50000})
    with pytest.raises(ConfigError, match="unknown setting 'nope'"):
        settings.check({"nope": 1})
