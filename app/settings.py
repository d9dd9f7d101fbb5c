"""User settings, declared once as data and persisted per user as JSON, written atomically.

Each :class:`Setting` names its type, default and validation in one place (the qutebrowser
``configdata`` idea); views build their widgets from the table and never re-validate. The file
lives under ``platformdirs.user_config_dir("PeerCall")``. A corrupt file never stops the app:
:meth:`Settings.load` keeps a copy next to it, logs one line, puts the same line in
``load_error`` for the UI to show once, and continues with defaults.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.errors import ConfigError

logger = logging.getLogger(__name__)

SETTINGS_VERSION = 1
SIGNALING_BACKENDS = ("websocket", "manual", "lan")


def config_dir() -> Path:
    """The per-user directory PeerCall writes its settings and history to."""
    import platformdirs

    return Path(platformdirs.user_config_dir("PeerCall"))


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON so that a crash leaves either the old file or the new one.

    The text goes to a temporary file in the same directory, is flushed to disk, then
    ``os.replace``-d over ``path`` (atomic on POSIX and Windows). The file is private (0600):
    it can hold TURN passwords.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> tuple[Any, str | None]:
    """Read a JSON file: ``(data, None)``, or ``(None, one-line error)`` if it is unreadable.

    A missing file is not an error (``(None, None)``). An unreadable one is moved aside to
    ``<name>.corrupt`` so that writing defaults does not destroy what the user may want back.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError) as exc:
        error = f"cannot read {path}: {exc}"
    else:
        try:
            return json.loads(text), None
        except json.JSONDecodeError as exc:
            error = f"{path} is corrupt ({exc.msg} at line {exc.lineno}); using defaults"
    with contextlib.suppress(OSError):
        os.replace(path, path.with_name(path.name + ".corrupt"))
    return None, error


# --- validators: each raises ConfigError with a one-line message naming the problem ---------


def _port(name: str, value: Any) -> None:
    if not 1 <= value <= 65535:
        raise ConfigError(f"{name}: port must be between 1 and 65535, got {value}")


def _port_or_zero(name: str, value: Any) -> None:
    if not 0 <= value <= 65535:
        raise ConfigError(f"{name}: port must be between 0 and 65535, got {value}")


def _choice(*choices: str) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if value not in choices:
            raise ConfigError(f"{name}: must be one of {', '.join(choices)}, got {value!r}")

    return check


def _int_range(low: int, high: int) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if not low <= value <= high:
            raise ConfigError(f"{name}: must be between {low} and {high}, got {value}")

    return check


def _ip_or_empty(name: str, value: Any) -> None:
    if value:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ConfigError(f"{name}: {value!r} is not an IP address") from None


def _ws_url(name: str, value: Any) -> None:
    if not value.startswith(("ws://", "wss://")):
        raise ConfigError(f"{name}: signaling URL must start with ws:// or wss://, got {value!r}")


def _pem_file_or_empty(name: str, value: Any) -> None:
    if value and not Path(value).expanduser().is_file():
        raise ConfigError(f"{name}: no such file: {value}")


def _realm(name: str, value: Any) -> None:
    if not value or any(c.isspace() for c in value):
        raise ConfigError(f"{name}: realm must be a non-empty word, got {value!r}")


def validate_ice_server(entry: Any) -> None:
    """One ICE server entry: ``{"urls": [...], "username": ..., "credential": ...}``."""
    from app.iceservers import IceServer

    if not isinstance(entry, dict) or not isinstance(entry.get("urls"), list):
        raise ConfigError("ICE server: expected an object with a list of 'urls'")
    urls = entry["urls"]
    if not urls or not all(isinstance(u, str) for u in urls):
        raise ConfigError("ICE server: 'urls' must be a non-empty list of strings")
    username, credential = entry.get("username"), entry.get("credential")
    for field_name, field_value in (("username", username), ("credential", credential)):
        if field_value is not None and not isinstance(field_value, str):
            raise ConfigError(f"ICE server: {field_name} must be a string")
    IceServer(urls=tuple(urls), username=username or None, credential=credential or None)


def _ice_servers(name: str, value: Any) -> None:
    for entry in value:
        validate_ice_server(entry)


def _relay_users(name: str, value: Any) -> None:
    for entry in value:
        if (
            not isinstance(entry, list)
            or len(entry) != 2
            or not all(isinstance(x, str) and x for x in entry)
        ):
            raise ConfigError(f"{name}: each user must be a [name, password] pair")
        if ":" in entry[0]:
            raise ConfigError(f"{name}: user name {entry[0]!r} must not contain ':'")


MAX_RECENT = 8


def _recent_rooms(name: str, value: Any) -> None:
    for entry in value:
        if (
            not isinstance(entry, list)
            or len(entry) != 2
            or not all(isinstance(x, str) and x for x in entry)
        ):
            raise ConfigError(f"{name}: each entry must be a [server URL, room] pair")
    if len(value) > MAX_RECENT:
        raise ConfigError(f"{name}: at most {MAX_RECENT} entries, got {len(value)}")


def _contacts(name: str, value: Any) -> None:
    for who, where in value.items():
        if not (
            isinstance(where, list) and len(where) == 2 and all(isinstance(x, str) for x in where)
        ):
            raise ConfigError(f"{name}: {who!r} must map to a [server URL, room] pair")


def remember_room(recent: list[list[str]], url: str, room: str) -> list[list[str]]:
    """``recent`` with ``[url, room]`` moved to the front (newest first, at most MAX_RECENT)."""
    entry = [url, room]
    return ([entry] + [e for e in recent if e != entry])[:MAX_RECENT]


@dataclass(frozen=True)
class Setting:
    """One setting: its key, JSON type, default, a line of help and an optional check."""

    name: str
    type: type
    default: Any
    help: str
    check: Callable[[str, Any], None] | None = None

    def validate(self, value: Any) -> Any:
        """Return ``value`` if it is acceptable for this setting, else raise ConfigError."""
        ok = isinstance(value, self.type) and not (self.type is int and isinstance(value, bool))
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise ConfigError(
                f"{self.name}: expected {self.type.__name__}, got {type(value).__name__}"
            )
        if self.check is not None:
            self.check(self.name, value)
        return value


SETTINGS: tuple[Setting, ...] = (
    Setting("display_name", str, "", "the name peers see in presence lists and history"),
    Setting("ice_servers", list, [], "STUN/TURN servers for calls", _ice_servers),
    Setting("relay_only", bool, False, "always relay media (hides your address from the peer)"),
    Setting("gather_timeout", float, 2.0, "seconds to wait on STUN/TURN servers", None),
    Setting(
        "signaling.backend",
        str,
        "websocket",
        "how offers reach the peer",
        _choice(*SIGNALING_BACKENDS),
    ),
    Setting("signaling.url", str, "ws://127.0.0.1:8765", "WebSocket signaling server", _ws_url),
    Setting("signaling.room", str, "peercall", "room name both people join"),
    Setting("signaling.secret", str, "", "room secret (both people type the same)"),
    Setting(
        "signaling.ca_file",
        str,
        "",
        "PEM certificate(s) to trust for a wss:// server with a self-signed certificate"
        " (empty: the system CAs)",
        _pem_file_or_empty,
    ),
    Setting(
        "signaling.recent",
        list,
        [],
        "rooms joined lately as [server URL, room], newest first",
        _recent_rooms,
    ),
    Setting(
        "signaling.contacts",
        dict,
        {},
        "people called in a room: display name -> [server URL, room] (history's Call back)",
        _contacts,
    ),
    Setting("ui.geometry", str, "", "the main window's size and place (Qt saveGeometry, base64)"),
    Setting("audio.input", str, "", "microphone (empty: system default)"),
    Setting("audio.output", str, "", "speaker (empty: system default)"),
    Setting("video.camera", str, "", "camera (empty: none / first found)"),
    Setting("video.enabled", bool, False, "send video when a call starts"),
    Setting(
        "audio.noise_suppression",
        int,
        0,
        "WebRTC noise suppression level (0 off .. 4 strongest)",
        _int_range(0, 4),
    ),
    Setting(
        "audio.auto_gain",
        int,
        0,
        "WebRTC automatic gain target in dBFS (0 off .. 31)",
        _int_range(0, 31),
    ),
    Setting(
        "audio.echo_cancel",
        bool,
        False,
        "use PulseAudio's WebRTC echo canceller (module-echo-cancel) for calls",
    ),
    Setting("relay.enabled", bool, False, "host the embedded STUN/TURN relay at start-up"),
    # Loopback unless the user hosts for others (then 0.0.0.0: every interface), issue 12.2.
    Setting("relay.listen", str, "127.0.0.1", "address the relay listens on", _ip_or_empty),
    Setting("relay.port", int, 3478, "relay STUN/TURN port (UDP and TCP)", _port_or_zero),
    Setting("relay.min_port", int, 49152, "lowest relayed port", _port),
    Setting("relay.max_port", int, 49252, "highest relayed port (a range easy to forward)", _port),
    Setting("relay.realm", str, "peercall", "TURN realm", _realm),
    Setting("relay.external_ip", str, "", "public address to advertise (behind NAT)", _ip_or_empty),
    Setting("relay.users", list, [], "TURN users as [name, password] pairs", _relay_users),
    Setting("signaling_server.enabled", bool, False, "host the signaling server at start-up"),
    Setting("signaling_server.listen", str, "127.0.0.1", "address it listens on", _ip_or_empty),
    Setting("signaling_server.port", int, 8765, "its TCP port", _port_or_zero),
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


def _cross_check(values: dict[str, Any]) -> None:
    if values["relay.min_port"] > values["relay.max_port"]:
        raise ConfigError(
            f"relay ports: min {values['relay.min_port']} is above max {values['relay.max_port']}"
        )


class Settings:
    """The user's settings: a validated mapping over :data:`SETTINGS`, saved as JSON."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else config_dir() / "settings.json"
        self._values: dict[str, Any] = {s.name: _copy(s.default) for s in SETTINGS}
        #: One line describing why the file on disk was not (fully) used, else None.
        self.load_error: str | None = None

    @classmethod
    def load(cls, path: Path | None = None) -> Settings:
        """Read the settings file; bad content becomes defaults plus ``load_error``."""
        settings = cls(path)
        data, error = read_json(settings.path)
        problems: list[str] = [error] if error else []
        if data is not None and not isinstance(data, dict):
            error = f"{settings.path} is not a JSON object; using defaults"
            problems.append(error)
            with contextlib.suppress(OSError):
                os.replace(settings.path, settings.path.with_name(settings.path.name + ".corrupt"))
            data = None
        for name, value in (data or {}).get("values", {}).items():
            setting = BY_NAME.get(name)
            if setting is None:
                continue  # a newer version's setting: ignore, keep the file loadable
            try:
                settings._values[name] = setting.validate(value)
            except ConfigError as exc:
                problems.append(f"{exc}; using the default")
        try:
            _cross_check(settings._values)
        except ConfigError as exc:
            problems.append(f"{exc}; using the defaults")
            for name in ("relay.min_port", "relay.max_port"):
                settings._values[name] = BY_NAME[name].default
        if problems:
            settings.load_error = f"settings: {problems[0]}" + (
                f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            )
            logger.warning("%s", settings.load_error)
            if error is not None:
                settings.save()
        return settings

    def __getitem__(self, name: str) -> Any:
        if name not in BY_NAME:
            raise KeyError(name)
        return _copy(self._values[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def set(self, name: str, value: Any) -> None:
        """Validate and store one value (not saved until :meth:`save`)."""
        setting = BY_NAME.get(name)
        if setting is None:
            raise ConfigError(f"unknown setting {name!r}")
        self.update({name: value})

    def check(self, values: dict[str, Any]) -> dict[str, Any]:
        """The settings as they would be with ``values`` applied; raises ConfigError (one line)
        if any value, or a cross check, fails. Nothing is stored (a dialog validates as typed)."""
        new = dict(self._values)
        for name, value in values.items():
            setting = BY_NAME.get(name)
            if setting is None:
                raise ConfigError(f"unknown setting {name!r}")
            new[name] = setting.validate(_copy(value))
        _cross_check(new)
        return new

    def update(self, values: dict[str, Any]) -> None:
        """Validate several values together (cross checks included); all or nothing."""
        self._values = self.check(values)

    def as_dict(self) -> dict[str, Any]:
        return {name: _copy(value) for name, value in self._values.items()}

    def save(self) -> None:
        """Write every value that differs from its default, atomically."""
        changed = {
            name: value for name, value in self._values.items() if value != BY_NAME[name].default
        }
        write_json_atomic(self.path, {"version": SETTINGS_VERSION, "values": changed})


def _copy(value: Any) -> Any:
    """A deep copy for the JSON-shaped values settings hold (lists of lists/dicts)."""
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value
