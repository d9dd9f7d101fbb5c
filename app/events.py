"""Events a call session emits. This module is the contract between the engine and its views.

A view (the Qt adapter in ``app.ui``, the CLI, a test) subscribes to a session with
``session.subscribe(callback)`` and receives these frozen dataclasses, in order, on the event
loop's thread. Times (``at``) are seconds since the session was created (``time.monotonic``
based), so a debug panel can print "time since start" exactly like the Trickle ICE page.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from app.iceservers import IceServer


class CallState(enum.Enum):
    """The call's lifecycle. Allowed moves are a table in ``app.call.state``."""

    IDLE = "idle"
    RINGING = "ringing"  # an offer arrived; waiting for the user to accept or decline
    GATHERING = "gathering"
    OFFERING = "offering"
    ANSWERING = "answering"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"  # the path went silent: recovering (ICE restart)
    ENDED = "ended"
    FAILED = "failed"


CandidateType = Literal["host", "srflx", "prflx", "relay"]
Side = Literal["local", "remote"]
Layer = Literal["ice-gathering", "ice-connection", "dtls", "peer-connection", "signaling"]


@dataclass(frozen=True)
class CandidateInfo:
    """One ICE candidate as a debug panel shows it (RFC 8445 §5.1)."""

    side: Side
    component: int
    type: CandidateType
    foundation: str
    protocol: str  # "udp" or "tcp"
    address: str
    port: int
    priority: int
    related_address: str | None = None
    related_port: int | None = None
    tcp_type: str | None = None
    at: float = 0.0  # seconds since session start when gathered / received
    server: str | None = None  # STUN/TURN URI that produced a srflx/relay candidate

    @property
    def key(self) -> tuple[str, str, str, int]:
        """What tells two candidates apart: on a public host the srflx candidate has the host
        candidate's address and port, so address:port alone would merge them."""
        return (self.type, self.protocol, self.address, self.port)

    @property
    def type_preference(self) -> int:
        """Top 8 bits of the priority (RFC 8445 §5.1.2.1)."""
        return (self.priority >> 24) & 0xFF

    @property
    def local_preference(self) -> int:
        """Middle 16 bits of the priority."""
        return (self.priority >> 8) & 0xFFFF

    @property
    def component_preference(self) -> int:
        """Low 8 bits of the priority: 256 minus the component ID."""
        return self.priority & 0xFF


@dataclass(frozen=True)
class PairCounters:
    """What went over one candidate pair, named after W3C RTCIceCandidatePairStats.

    aioice keeps no such counters; :mod:`app.call.stats` counts the STUN checks and datagrams
    on the pair's socket. A request counts once however often it is retransmitted; RTT is
    sampled only from checks answered without a retransmission (Karn's rule, RFC 6298 §3:
    a reply to a retransmitted request is ambiguous). Bytes are UDP payloads (RTP, RTCP,
    DTLS, SCTP) without the STUN checks.
    """

    requests_sent: int = 0
    requests_received: int = 0
    responses_sent: int = 0
    responses_received: int = 0
    retransmissions_sent: int = 0
    current_rtt_ms: float | None = None
    total_rtt_ms: float = 0.0  # sum of every RTT sample (divide by rtt_samples for a mean)
    rtt_samples: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0


@dataclass(frozen=True)
class CandidatePairInfo:
    """One ICE candidate pair and its check state (RFC 8445 §6.1.2.6)."""

    local: CandidateInfo
    remote: CandidateInfo
    state: str  # frozen / waiting / in-progress / succeeded / failed
    nominated: bool = False
    selected: bool = False
    counters: PairCounters | None = None  # None: not counted (the socket was not watched)


@dataclass(frozen=True)
class StateChanged:
    """The call state machine moved."""

    old: CallState
    new: CallState
    at: float
    reason: str | None = None


@dataclass(frozen=True)
class TransportStateChanged:
    """An underlying layer (ICE gathering/connection, DTLS, peer connection) changed state."""

    layer: Layer
    state: str
    at: float


@dataclass(frozen=True)
class CandidateGathered:
    """A local candidate was gathered (emitted as soon as it exists, i.e. trickled)."""

    candidate: CandidateInfo


@dataclass(frozen=True)
class RemoteCandidateAdded:
    """A remote candidate arrived (in the SDP or trickled by signaling)."""

    candidate: CandidateInfo


@dataclass(frozen=True)
class GatheringFinished:
    """Local gathering ended; ``duration`` is seconds from gathering start."""

    at: float
    duration: float
    failed_servers: tuple[str, ...] = ()  # servers that did not answer in time


@dataclass(frozen=True)
class PairsUpdated:
    """The current candidate pair list (a snapshot, sent when any pair changes state)."""

    pairs: tuple[CandidatePairInfo, ...]
    at: float


@dataclass(frozen=True)
class SelectedPairChanged:
    """ICE selected a (new) pair. ``relayed`` is true when either end is a relay candidate."""

    pair: CandidatePairInfo
    relayed: bool
    at: float


@dataclass(frozen=True)
class StreamStats:
    """One RTP stream (audio/video, in/out) from aiortc's getStats, as
    chrome://webrtc-internals lists inbound-rtp / outbound-rtp. ``None`` means aiortc does not
    report it: it counts no received bytes, and loss/jitter of what we send come from the
    peer's receiver reports (RFC 3550 §6.4.2) once one has arrived."""

    kind: str  # "audio" or "video"
    direction: Literal["in", "out"]
    ssrc: int
    packets: int | None = None
    bytes: int | None = None
    packets_lost: int | None = None
    jitter_ms: float | None = None


@dataclass(frozen=True)
class StatsSample:
    """Once-a-second call statistics. ``None`` means not known yet."""

    at: float
    rtt_ms: float | None = None
    jitter_ms: float | None = None
    packets_lost: int | None = None
    fraction_lost: float | None = None  # 0..1 over the last interval
    bitrate_in_kbps: float | None = None
    bitrate_out_kbps: float | None = None
    audio_level: float | None = None  # 0..1 of the remote audio
    extra: dict[str, float] = field(default_factory=dict)
    streams: tuple[StreamStats, ...] = ()


@dataclass(frozen=True)
class ChatReceived:
    """A text chat message arrived over the data channel."""

    text: str
    at: float


@dataclass(frozen=True)
class IceServersInUse:
    """The STUN/TURN servers a peer connection is built with; each has an ``origin`` (typed by
    the user, or handed out by the signaling server on join)."""

    servers: tuple[IceServer, ...]
    at: float


@dataclass(frozen=True)
class ChatStateChanged:
    """The chat channel opened (``"open"``) or is still being set up (``"connecting"``).

    The call is connected once media flows; chat rides on SCTP, which may take longer under
    loss. Lines sent while it connects are queued and go out when it opens.
    """

    state: Literal["connecting", "open"]
    at: float


@dataclass(frozen=True)
class SasReady:
    """The short authentication string both ends should read aloud and compare."""

    sas: str
    local_fingerprint: str
    remote_fingerprint: str


@dataclass(frozen=True)
class SdpExchanged:
    """An SDP was set locally or remotely (kept for the debug panel's export)."""

    side: Side
    kind: Literal["offer", "answer"]
    sdp: str
    at: float


@dataclass(frozen=True)
class ErrorOccurred:
    """Something went wrong; ``message`` is one line fit for the user."""

    message: str
    at: float
    fatal: bool = False


Event = (
    StateChanged
    | TransportStateChanged
    | CandidateGathered
    | RemoteCandidateAdded
    | GatheringFinished
    | PairsUpdated
    | SelectedPairChanged
    | StatsSample
    | ChatReceived
    | ChatStateChanged
    | IceServersInUse
    | SasReady
    | SdpExchanged
    | ErrorOccurred
)
