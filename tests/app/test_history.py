"""Call history: persisted like the settings, bounded, and robust to a damaged file."""

from __future__ import annotations

import json
from pathlib import Path

from app.history import MAX_RECORDS, CallRecord, History


def record(peer: str = "bob", route: str = "direct") -> CallRecord:
    return CallRecord(
        peer=peer,
        started=1_700_000_000.0,
        duration=61.5,
        direction="outgoing",
        outcome="completed",
        route=route,  # type: ignore[arg-type]
    )


def test_add_persists(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    history = History.load(path)
    history.add(record("alice", "relay"))
    history.add(record("bob"))
    again = History.load(path)
    assert again.load_error is None
    assert again.records == [record("alice", "relay"), record("bob")]


def test_bounded(tmp_path: Path) -> None:
    history = History(tmp_path / "history.json")
    for i in range(MAX_RECORDS + 3):
        history.records.append(record(f"p{i}"))
    history.add(record("last"))
    assert len(history.records) == MAX_RECORDS
    assert history.records[-1].peer == "last"


def test_corrupt_file_starts_fresh(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    path.write_text("{{", encoding="utf-8")
    history = History.load(path)
    assert history.records == []
    assert history.load_error is not None
    assert "corrupt" in history.load_error
    history.add(record())
    assert History.load(path).records == [record()]


def test_bad_entries_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    good = {
        "peer": "x",
        "started": 1.0,
        "duration": 2.0,
        "direction": "incoming",
        "outcome": "missed",
    }
    bad = [{"peer": "y"}, {**good, "direction": "sideways"}, "junk"]
    path.write_text(json.dumps({"calls": [good, *bad]}), encoding="utf-8")
    history = History.load(path)
    assert [r.peer for r in history.records] == ["x"]
    assert history.load_error is not None
    assert "skipped 3" in history.load_error


def test_two_writers_keep_both_records(tmp_path: Path) -> None:
    """Both ends of a call on one machine record at once; neither overwrites the other."""
    path = tmp_path / "history.json"
    first, second = History.load(path), History.load(path)  # both loaded an empty history
    first.add(record("from the first"))
    second.add(record("from the second"))
    assert [r.peer for r in History.load(path).records] == ["from the first", "from the second"]
