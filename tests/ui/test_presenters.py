"""Table-driven tests of the pure view helpers (badge, quality, priority, errors)."""

from __future__ import annotations

import errno

import pytest

from app.errors import ConfigError
from app.events import CallState, CandidateInfo, CandidatePairInfo, SelectedPairChanged
from app.ui.presenters import (
    badge_for,
    candidate_row,
    end_news,
    format_duration,
    priority_text,
    quality_for,
    user_message,
)


def cand(kind: str, side: str = "local") -> CandidateInfo:
    return CandidateInfo(side, 1, kind, "1", "udp", "127.0.0.1", 5000, 2130706431)  # type: ignore[arg-type]


def selected(local: str, remote: str, relayed: bool) -> SelectedPairChanged:
    pair = CandidatePairInfo(cand(local), cand(remote, "remote"), "succeeded", True, True)
    return SelectedPairChanged(pair, relayed, 1.0)


@pytest.mark.parametrize(
    ("state", "sel", "key", "text"),
    [
        (None, None, "idle", "Not in a call"),
        (CallState.GATHERING, None, "connecting", "Connecting…"),
        (CallState.CONNECTING, None, "connecting", "Connecting…"),
        (CallState.CONNECTED, None, "connected", "Connected"),
        (CallState.CONNECTED, selected("host", "host", False), "direct", "Connected direct (host)"),
        (
            CallState.CONNECTED,
            selected("srflx", "host", False),
            "direct",
            "Connected direct (server-reflexive)",
        ),
        (CallState.CONNECTED, selected("relay", "host", True), "relay", "Connected via relay"),
        (CallState.FAILED, None, "failed", "Failed"),
        (CallState.ENDED, None, "ended", "Call ended"),
    ],
)
def test_badge(
    state: CallState | None, sel: SelectedPairChanged | None, key: str, text: str
) -> None:
    badge = badge_for(state, sel)
    assert (badge.key, badge.text) == (key, text)


@pytest.mark.parametrize(
    ("rtt", "loss", "level", "bars"),
    [
        (None, None, "unknown", 0),
        (20.0, 0.0, "good", 3),
        (200.0, 0.0, "fair", 2),
        (20.0, 0.03, "fair", 2),
        (450.0, 0.0, "poor", 1),
        (20.0, 0.2, "poor", 1),
    ],
)
def test_quality(rtt: float | None, loss: float | None, level: str, bars: int) -> None:
    quality = quality_for(rtt, loss)
    assert (quality.level, quality.bars) == (level, bars)


def test_priority_decoding_matches_rfc8445_formula() -> None:
    # host, local preference 65535, component 1: (126 << 24) | (65535 << 8) | 255
    c = CandidateInfo(
        "local", 1, "host", "1", "udp", "10.0.0.1", 1, (126 << 24) | (65535 << 8) | 255
    )
    assert priority_text(c) == f"{c.priority} | 126 | 65535 | 1"
    assert candidate_row(c)[3] == "host"


@pytest.mark.parametrize(("seconds", "text"), [(0, "0:00"), (61.9, "1:01"), (3725, "1:02:05")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (ConfigError("bad URI"), "bad URI"),
        (OSError(errno.EADDRINUSE, "Address already in use"), "address already in use"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "connection refused"),
        (TimeoutError(), "timed out"),
    ],
)
def test_user_message_is_one_line(exc: BaseException, text: str) -> None:
    message = user_message(exc)
    assert message.startswith(text)
    assert "\n" not in message


@pytest.mark.parametrize(
    ("outcome", "failure", "has_turn", "text"),
    [
        ("completed", None, False, "Call ended — 1:05"),
        ("declined", None, False, "Call ended — declined"),
        ("missed", None, False, "Missed call"),
        ("cancelled", None, False, "Call cancelled"),
        (
            "failed",
            "no connection after 30 s (ICE failed)",
            False,
            "Failed: no connection after 30 s (ICE failed) — add a TURN server in Settings → ICE"
            " servers",
        ),
        # With a TURN server configured, adding one is no advice.
        ("failed", "ICE failed", True, "Failed: ICE failed"),
        ("failed", "wrong room secret", False, "Failed: wrong room secret"),
    ],
)
def test_end_news_is_one_inline_line_and_names_the_fix_for_no_path(
    outcome: str, failure: str | None, has_turn: bool, text: str
) -> None:
    """What the window's news line says when a call ends (issue 12.6)."""
    assert end_news(outcome, "1:05", failure, has_turn) == text
