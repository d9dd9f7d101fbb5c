"""Once-a-second call statistics as a pure function of (report, previous counters, now), and
per candidate pair counters of STUN checks and bytes (aioice keeps none)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from app.events import CandidatePairInfo, PairCounters, StatsSample, StreamStats

# RTP clock rates, to turn RFC 3550 jitter (timestamp units) into ms: Opus always uses
# 48 kHz (RFC 7587 §4.1), VP8 90 kHz (RFC 7741 §4.1).
CLOCK_RATES = {"audio": 48_000, "video": 90_000}


@dataclass(frozen=True)
class Counters:
    """What the next sample needs from this one: byte totals and when they were read."""

    at: float
    bytes_in: float
    bytes_out: float


def sample(
    report: Mapping[str, Any],
    previous: Counters | None,
    now: float,
    extra: Mapping[str, float] | None = None,
) -> tuple[StatsSample, Counters]:
    """Read an aiortc stats report into a :class:`StatsSample` and the counters for the next.

    Bit rates need two reports, so the first sample has none.
    """
    rtt = jitter = fraction = None
    lost = 0
    seen_lost = False
    bytes_in = bytes_out = 0.0
    for stat in report.values():
        kind = getattr(stat, "type", "")
        if kind == "remote-inbound-rtp":
            if stat.roundTripTime is not None:
                rtt = stat.roundTripTime * 1000.0
            if stat.fractionLost is not None:
                # aiortc passes the receiver report's raw 8-bit fixed-point fraction
                # (RFC 3550 §6.4.1: lost/expected * 256); StatsSample wants 0..1.
                fraction = float(stat.fractionLost) / 256.0
        elif kind == "transport":  # every byte on the path: media, RTCP, chat
            bytes_in += stat.bytesReceived or 0
            bytes_out += stat.bytesSent or 0
        elif kind == "inbound-rtp":
            if stat.jitter is not None and stat.kind == "audio":
                # aiortc reports RFC 3550 §6.4.1 interarrival jitter in RTP timestamp units;
                # Opus always uses a 48 kHz RTP clock (RFC 7587 §4.1), so 48 units = 1 ms.
                jitter = float(stat.jitter) / 48.0
            if stat.packetsLost is not None:
                lost += stat.packetsLost
                seen_lost = True
    rate_in = rate_out = None
    streams = _streams(report)
    if previous is not None:
        dt = max(now - previous.at, 1e-3)
        rate_in = max(0.0, (bytes_in - previous.bytes_in) * 8 / 1000 / dt)
        rate_out = max(0.0, (bytes_out - previous.bytes_out) * 8 / 1000 / dt)
    result = StatsSample(
        at=now,
        rtt_ms=rtt,
        jitter_ms=jitter,
        packets_lost=lost if seen_lost else None,
        fraction_lost=fraction,
        bitrate_in_kbps=rate_in,
        bitrate_out_kbps=rate_out,
        extra=dict(extra or {}),
        streams=streams,
    )
    return result, Counters(now, bytes_in, bytes_out)


def _jitter_ms(kind: str, units: float | None) -> float | None:
    rate = CLOCK_RATES.get(kind)
    return None if units is None or rate is None else float(units) * 1000.0 / rate


def _streams(report: Mapping[str, Any]) -> tuple[StreamStats, ...]:
    """Each inbound-rtp / outbound-rtp of the report; what we send gets its loss and jitter
    from the remote-inbound-rtp of the same SSRC (the peer's receiver report)."""
    remote = {
        stat.ssrc: stat
        for stat in report.values()
        if getattr(stat, "type", "") == "remote-inbound-rtp"
    }
    found = []
    for stat in report.values():
        kind = getattr(stat, "type", "")
        if kind == "inbound-rtp":
            found.append(
                StreamStats(
                    kind=stat.kind,
                    direction="in",
                    ssrc=stat.ssrc,
                    packets=stat.packetsReceived,
                    bytes=None,  # aiortc's inbound-rtp has no bytesReceived
                    packets_lost=stat.packetsLost,
                    jitter_ms=_jitter_ms(stat.kind, stat.jitter),
                )
            )
        elif kind == "outbound-rtp":
            report_back = remote.get(stat.ssrc)
            found.append(
                StreamStats(
                    kind=stat.kind,
                    direction="out",
                    ssrc=stat.ssrc,
                    packets=stat.packetsSent,
                    bytes=stat.bytesSent,
                    packets_lost=report_back.packetsLost if report_back is not None else None,
                    jitter_ms=(
                        _jitter_ms(stat.kind, report_back.jitter)
                        if report_back is not None
                        else None
                    ),
                )
            )
    order = {("audio", "in"): 0, ("audio", "out"): 1, ("video", "in"): 2, ("video", "out"): 3}
    return tuple(sorted(found, key=lambda s: (order.get((s.kind, s.direction), 9), s.ssrc)))


# --- candidate pair counters ---------------------------------------------------------------

_MAGIC_COOKIE = b"\x21\x12\xa4\x42"  # RFC 8489 §5
_PENDING_LIMIT = 64  # unanswered checks remembered per socket (consent checks on a dead path)


def stun_kind(data: bytes) -> tuple[int, int, bytes] | None:
    """(class, method, transaction ID) of a STUN message, or None for anything else.

    RFC 7983 §7: a datagram whose first byte is 0..3 is STUN; RFC 8489 §5 places the magic
    cookie at bytes 4..7 and interleaves the class bits C1 (0x100) and C0 (0x010) with the
    method bits of the 14-bit message type. Class 0 is a request, 2 a success response.
    """
    if len(data) < 20 or data[0] > 3 or data[4:8] != _MAGIC_COOKIE:
        return None
    kind = (data[0] << 8) | data[1]
    klass = ((kind >> 7) & 0x2) | ((kind >> 4) & 0x1)
    method = (kind & 0x000F) | ((kind >> 1) & 0x0070) | ((kind >> 2) & 0x0F80)
    return klass, method, bytes(data[8:20])


_REQUEST, _SUCCESS = 0, 2
_BINDING = 1


class _Count:
    """Mutable counters of one (socket, remote address): what :class:`PairCounters` freezes."""

    def __init__(self) -> None:
        self.requests_sent = self.requests_received = 0
        self.responses_sent = self.responses_received = 0
        self.retransmissions_sent = 0
        self.current_rtt_ms: float | None = None
        self.total_rtt_ms = 0.0
        self.rtt_samples = 0
        self.bytes_sent = self.bytes_received = 0

    def freeze(self) -> PairCounters:
        return PairCounters(**{f.name: getattr(self, f.name) for f in fields(PairCounters)})


class CheckCounter:
    """Counts, on one aioice socket, the ICE checks and data per remote address: the tap
    :func:`app.rtcfixes.tap_socket` shows it every check, its retransmissions, the responses
    and the media, for host and relay (TURN) sockets alike."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self.counts: dict[tuple[str, int], _Count] = {}
        # transaction ID -> (remote address, first send time, copies sent)
        self._pending: dict[bytes, tuple[tuple[str, int], float, int]] = {}

    def sent_data(self, data: bytes, addr: tuple[str, int]) -> None:
        self.count(addr).bytes_sent += len(data)

    def count(self, addr: tuple[str, int]) -> _Count:
        found = self.counts.get(addr)
        if found is None:
            found = self.counts[addr] = _Count()
        return found

    def sent_stun(self, data: bytes, addr: tuple[str, int]) -> None:
        kind = stun_kind(data)
        if kind is None or kind[1] != _BINDING:
            return
        klass, _, tid = kind
        if klass == _REQUEST:
            # RFC 8445 §7.2.2: a check carries USERNAME; a srflx query to a STUN server is
            # not a check, but it goes to the server's address, which no pair has.
            count = self.count(addr)
            pending = self._pending.get(tid)
            if pending is None:
                count.requests_sent += 1
                self._pending[tid] = (addr, self._clock(), 1)
                if len(self._pending) > _PENDING_LIMIT:
                    del self._pending[next(iter(self._pending))]
            else:
                count.retransmissions_sent += 1
                self._pending[tid] = (pending[0], pending[1], pending[2] + 1)
        elif klass == _SUCCESS:
            self.count(addr).responses_sent += 1

    def received(self, data: bytes, addr: tuple[str, int]) -> None:
        kind = stun_kind(data) if isinstance(data, bytes | bytearray) else None
        if kind is None:
            self.count(addr).bytes_received += len(data)
            return
        klass, method, tid = kind
        if method != _BINDING:
            return
        if klass == _REQUEST:
            self.count(addr).requests_received += 1
        elif klass == _SUCCESS:
            pending = self._pending.pop(tid, None)
            if pending is None:
                return  # a duplicate response, or not one of our checks
            count = self.count(addr)
            count.responses_received += 1
            if pending[2] == 1:  # Karn's rule: only an unambiguous round trip is a sample
                rtt = (self._clock() - pending[1]) * 1000.0
                count.current_rtt_ms = rtt
                count.total_rtt_ms += rtt
                count.rtt_samples += 1


def without_counters(pairs: tuple[CandidatePairInfo, ...]) -> tuple[CandidatePairInfo, ...]:
    """The pairs with their counters left out: what tells whether a pair's state moved."""
    return tuple(replace(p, counters=None) for p in pairs)


def pair_counters(counter: Any, remote: tuple[str, int]) -> PairCounters | None:
    """The counters for ``remote`` of a pair's socket tap, or None if that socket has no
    :class:`CheckCounter` (``app.rtcfixes.socket_tap`` finds the tap)."""
    if not isinstance(counter, CheckCounter):
        return None
    found = counter.counts.get(remote)
    return found.freeze() if found is not None else PairCounters()
