"""Pure helpers that turn engine facts into what the widgets show (no Qt, unit-testable).

The widgets stay thin: they ask these functions for text and colours and paint them.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass

from app.errors import PeerCallError
from app.events import CallState, CandidateInfo, CandidatePairInfo, SelectedPairChanged

logger = logging.getLogger(__name__)


# One name per signaling backend, the same in the main window and in Settings (issue 12.11).
BACKEND_LABELS = {"websocket": "Server room", "lan": "LAN peer", "manual": "Copy / paste"}


@dataclass(frozen=True)
class Badge:
    """The always-visible connection badge: a key for tests, text, colour and a tooltip."""

    key: str
    text: str
    color: str
    tooltip: str


_CONNECTING = {
    CallState.RINGING,
    CallState.GATHERING,
    CallState.OFFERING,
    CallState.ANSWERING,
    CallState.CONNECTING,
    CallState.RECONNECTING,
}


def badge_for(state: CallState | None, selected: SelectedPairChanged | None = None) -> Badge:
    """The badge for a call state and, once connected, the path ICE selected."""
    if state is None or state is CallState.IDLE:
        return Badge("idle", "Not in a call", "#6b7280", "Start or answer a call")
    if state in _CONNECTING:
        return Badge("connecting", "Connecting…", "#b7791f", "Exchanging offers and checking paths")
    if state is CallState.FAILED:
        return Badge("failed", "Failed", "#c53030", "No path to the peer (see the debug panel)")
    if state is CallState.ENDED:
        return Badge("ended", "Call ended", "#6b7280", "The call is over")
    if selected is None:
        return Badge("connected", "Connected", "#2f855a", "Connected; path not reported yet")
    local, remote = selected.pair.local, selected.pair.remote
    path = f"{local.address}:{local.port} ⇄ {remote.address}:{remote.port}"
    if selected.relayed:
        return Badge(
            "relay", "Connected via relay", "#2b6cb0", f"Media goes through a TURN relay: {path}"
        )
    kind = "host" if local.type == "host" and remote.type == "host" else "server-reflexive"
    if "prflx" in (local.type, remote.type):
        kind = "peer-reflexive"
    return Badge(
        "direct",
        f"Connected direct ({kind})",
        "#2f855a",
        f"Media goes straight to the peer: {path}",
    )


def phase_badge(phase: str) -> Badge:
    """The badge before the engine has a state to show: waiting in a room, or ringing."""
    if phase == "ringing":
        return Badge("ringing", "Incoming call…", "#b7791f", "Accept or decline the call")
    if phase == "calling":
        return Badge("calling", "Calling…", "#b7791f", "Waiting for the other person to answer")
    return Badge("waiting", "Waiting for a call…", "#2b6cb0", "Ready: the other person can call")


def end_news(outcome: str, duration: str, failure: str | None, has_turn: bool) -> str:
    """One line for how a call ended, shown inline in the window (issue 12.6)."""
    if outcome == "completed":
        return f"Call ended — {duration}"
    if outcome == "declined":
        return "Call ended — declined"
    if outcome == "missed":
        return "Missed call"
    if outcome == "cancelled":
        return "Call cancelled"
    reason = failure or "the call could not be set up"
    no_path = "no path" in reason or "ICE" in reason or "connection failed" in reason
    if no_path and not has_turn:
        return f"Failed: {reason} — add a TURN server in Settings → ICE servers"
    return f"Failed: {reason}"


@dataclass(frozen=True)
class Quality:
    """A three-bar quality indicator from round-trip time and loss."""

    level: str  # unknown / good / fair / poor
    bars: int  # 0..3
    text: str


def quality_for(rtt_ms: float | None, fraction_lost: float | None) -> Quality:
    """Good below 150 ms and 2 % loss (ITU-T G.114's one-way comfort bound), poor from 400 ms
    or 10 % loss, fair between."""
    if rtt_ms is None and fraction_lost is None:
        return Quality("unknown", 0, "Quality: measuring…")
    rtt = rtt_ms if rtt_ms is not None else 0.0
    loss = fraction_lost if fraction_lost is not None else 0.0
    rtt_text = f"{rtt_ms:.0f} ms" if rtt_ms is not None else "? ms"
    detail = f"RTT {rtt_text}, loss {loss * 100:.1f} %"
    if rtt >= 400 or loss >= 0.10:
        return Quality("poor", 1, f"Poor — {detail}")
    if rtt >= 150 or loss >= 0.02:
        return Quality("fair", 2, f"Fair — {detail}")
    return Quality("good", 3, f"Good — {detail}")


def format_duration(seconds: float) -> str:
    """``m:ss`` under an hour, ``h:mm:ss`` above (the call timer and history)."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_bytes(count: int) -> str:
    """Human byte counts for the relay panel."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def priority_text(candidate: CandidateInfo) -> str:
    """The priority decoded as the Trickle ICE page does: ``value | type pref | local pref |
    component`` (RFC 8445 §5.1.2.1: 2^24·type + 2^8·local + (256 − component))."""
    return (
        f"{candidate.priority} | {candidate.type_preference} | "
        f"{candidate.local_preference} | {256 - candidate.component_preference}"
    )


def host_port(address: str, port: int | None) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{port}" if port is not None else host


CANDIDATE_COLUMNS = (
    "Side",
    "Time",
    "Comp",
    "Type",
    "Foundation",
    "Protocol",
    "Address",
    "Port",
    "Priority | type | local | comp",
    "Related",
    "Server",
)


def candidate_row(candidate: CandidateInfo) -> tuple[str, ...]:
    """One candidates-table row, in :data:`CANDIDATE_COLUMNS` order."""
    related = (
        host_port(candidate.related_address, candidate.related_port)
        if candidate.related_address
        else ""
    )
    protocol = candidate.protocol + (f" ({candidate.tcp_type})" if candidate.tcp_type else "")
    return (
        candidate.side,
        f"{candidate.at:.3f}",
        str(candidate.component),
        candidate.type,
        candidate.foundation,
        protocol,
        candidate.address,
        str(candidate.port),
        priority_text(candidate),
        related,
        candidate.server or "",
    )


PAIR_COLUMNS = (
    "Local",
    "Remote",
    "State",
    "Nominated",
    "Selected",
    "Requests sent",
    "Requests received",
    "Responses sent",
    "Responses received",
    "RTT (ms)",
    "Total RTT (ms)",
    "Bytes sent",
    "Bytes received",
)


def pair_row(pair: CandidatePairInfo) -> tuple[str, ...]:
    """The chrome://webrtc-internals candidate grid's columns; "n/a" where nothing counted
    (a socket that was not watched) rather than a made-up zero."""

    def end(c: CandidateInfo) -> str:
        return f"{c.type} {host_port(c.address, c.port)}"

    n = pair.counters
    if n is None:
        figures: tuple[str, ...] = ("n/a",) * 8
    else:
        rtt = f"{n.current_rtt_ms:.1f}" if n.current_rtt_ms is not None else "—"
        total = f"{n.total_rtt_ms:.1f}" if n.rtt_samples else "—"
        figures = (
            str(n.requests_sent),
            str(n.requests_received),
            str(n.responses_sent),
            str(n.responses_received),
            rtt,
            total,
            str(n.bytes_sent),
            str(n.bytes_received),
        )
    return (
        end(pair.local),
        end(pair.remote),
        pair.state,
        "yes" if pair.nominated else "",
        "yes" if pair.selected else "",
        *figures,
    )


def user_message(exc: BaseException) -> str:
    """One line for an exception shown to the user; never a traceback.

    Our own error classes already carry a user-fit message. OS errors are named by what they
    mean for a user. Anything else is a bug: its traceback goes to the log, the user gets the
    exception's type and text.
    """
    from nat.errors import NatError
    from signaling.errors import SignalingError

    if isinstance(exc, PeerCallError | NatError | SignalingError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(exc, OSError):
        if exc.errno == errno.EADDRINUSE:
            return "address already in use (another program holds that port)"
        if exc.errno == errno.EACCES:
            return "permission denied (ports below 1024 need privileges)"
        if exc.errno == errno.EADDRNOTAVAIL:
            return "that address is not on this machine"
        return exc.strerror or str(exc)
    logger.error("unexpected error", exc_info=exc)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
