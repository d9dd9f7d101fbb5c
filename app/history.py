"""Call history: who, when, how long, direct or relayed; persisted per user like the settings."""

from __future__ import annotations

import fcntl
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from app.settings import config_dir, read_json, write_json_atomic

logger = logging.getLogger(__name__)

Direction = Literal["outgoing", "incoming"]
# "cancelled": the caller hung up before an answer (issue 12.9: it was logged "failed").
Outcome = Literal["completed", "declined", "missed", "failed", "cancelled"]
Route = Literal["direct", "relay", "none"]
MAX_RECORDS = 500


@dataclass(frozen=True)
class CallRecord:
    """One call as the history view lists it. ``started`` is Unix time; ``duration`` seconds."""

    peer: str
    started: float
    duration: float
    direction: Direction
    outcome: Outcome
    route: Route = "none"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CallRecord:
        record = cls(
            peer=str(data["peer"]),
            started=float(data["started"]),
            duration=float(data["duration"]),
            direction=data["direction"],
            outcome=data["outcome"],
            route=data.get("route", "none"),
        )
        if record.direction not in ("outgoing", "incoming"):
            raise ValueError(f"bad direction {record.direction!r}")
        if record.outcome not in ("completed", "declined", "missed", "failed", "cancelled"):
            raise ValueError(f"bad outcome {record.outcome!r}")
        if record.route not in ("direct", "relay", "none"):
            raise ValueError(f"bad route {record.route!r}")
        return record


class History:
    """The most recent :data:`MAX_RECORDS` calls, newest last."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else config_dir() / "history.json"
        self.records: list[CallRecord] = []
        #: One line describing why the file on disk was not (fully) used, else None.
        self.load_error: str | None = None

    @classmethod
    def load(cls, path: Path | None = None) -> History:
        """Read the history file; a corrupt file or entry is reported and skipped."""
        history = cls(path)
        data, error = read_json(history.path)
        entries = data.get("calls") if isinstance(data, dict) else None
        if data is not None and not isinstance(entries, list):
            error = f"{history.path} has no 'calls' list; starting a new history"
        bad = 0
        for entry in entries or []:
            try:
                history.records.append(CallRecord.from_dict(entry))
            except (KeyError, TypeError, ValueError):
                bad += 1
        if bad and error is None:
            error = f"{history.path}: skipped {bad} unreadable call record(s)"
        if error is not None:
            history.load_error = f"history: {error}"
            logger.warning("%s", history.load_error)
        return history

    def add(self, record: CallRecord) -> None:
        """Append a call and save (keeping only the newest :data:`MAX_RECORDS`).

        Two processes may record at once (the window and ``peercall call``, or both ends of a
        call on one machine): under an exclusive lock the file is read again and the new call
        appended to what is there, so neither overwrites the other's record.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.path.exists():
                on_disk = History.load(self.path)
                if on_disk.load_error is None:
                    self.records = on_disk.records
            self.records.append(record)
            del self.records[:-MAX_RECORDS]
            self.save()

    def save(self) -> None:
        write_json_atomic(self.path, {"calls": [asdict(r) for r in self.records]})
