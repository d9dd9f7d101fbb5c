"""The call engine: :class:`CallSession`, an explicit state machine over one RTCPeerConnection.

A session owns one peer connection, its tracks and its chat data channel, and tells its views
what happens through the events of :mod:`app.events`. It is driven either over a
:class:`signaling.base.SignalingChannel` (:meth:`CallSession.dial`, :meth:`CallSession.answer`)
or step by step for copy-paste signaling (:meth:`CallSession.create_offer` and friends).

The allowed state moves are data (:data:`TRANSITIONS`); an illegal move raises
:class:`app.errors.IllegalTransition` and leaves the state unchanged, like h11's state machine.
Workarounds for aiortc live in :mod:`app.rtcfixes`, not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aioice import Candidate as IceCandidate
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaBlackhole
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack
from aiortc.rtcicetransport import candidate_from_aioice

from app import rtcfixes
from app.call import pathwatch, stats
from app.call.iceview import CandidateBook, candidate_info, jsonable
from app.call.media import GatedTrack, RemoteFeed, SourceTee
from app.call.negotiation import Negotiation, check_remote_sdp, local_sdp, trickle_message
from app.call.sas import sdp_fingerprint, short_auth_string
from app.call.state import FINAL_STATES, CallEvent, CallStateMachine
from app.errors import CallError, ConfigError, ConnectionFailed, IllegalTransition
from app.events import (
    CallState,
    CandidateGathered,
    CandidateInfo,
    CandidatePairInfo,
    ChatReceived,
    ChatStateChanged,
    ErrorOccurred,
    Event,
    GatheringFinished,
    IceServersInUse,
    Layer,
    PairsUpdated,
    RemoteCandidateAdded,
    SasReady,
    SdpExchanged,
    SelectedPairChanged,
    StateChanged,
    StatsSample,
    TransportStateChanged,
)
from app.iceservers import IceServer, merge_ice_servers
from app.media.base import MediaSink
from signaling.base import SignalingChannel
from signaling.errors import ChannelClosed, SignalingError
from signaling.messages import Answer, Bye, Candidate, EndOfCandidates, Message, Offer
from signaling.messages import decode as decode_message
from signaling.messages import encode as encode_message

logger = logging.getLogger(__name__)

S = CallState
E = CallEvent
__all__ = ["CallOptions", "CallSession"]

MAX_CHAT_LENGTH = 16 * 1024  # one SCTP message, comfortably below aiortc's limits
CONNECT_TIMEOUT = 30.0  # ICE + DTLS must finish within this after both descriptions are set
# With no STUN/TURN server only host candidates exist: if they have not met within this, they
# will not (a NAT is in the way), and the user needs to hear what would help.
CONNECT_TIMEOUT_NO_SERVERS = 8.0
NO_PATH_MESSAGE = "no network path to the other person: add a STUN/TURN server or host a relay"
CONTROL_LABEL = "peercall-control"
FAILED_PREFIX = "failed: "  # a Bye's reason when the sender's call failed (not a hang-up)
BYE_FLUSH = 0.2  # how long a hang-up waits for a bye on the data channel to leave
BYE_TIMEOUT = 1.0  # telling the peer we hung up must never hold a hang-up up
# Dead-path timing: see app.call.pathwatch (named here too: tests shorten them).
SILENCE_DISCONNECTED = pathwatch.SILENCE_DISCONNECTED
SILENCE_FAILED = pathwatch.SILENCE_FAILED
ADDRESS_CHECK = 2.0  # how often the machine's addresses are compared (a new network, a lost one)


@dataclass(frozen=True)
class CallOptions:
    """How a session connects. Defaults suit a call between two machines on one network."""

    ice_servers: tuple[IceServer, ...] = ()  # explicit: empty means no STUN/TURN at all
    relay_only: bool = False  # "Always relay": iceTransportPolicy relay (hides our addresses)
    loopback_candidates: bool = False  # host candidates on 127.0.0.1 only (same-machine calls)
    gather_timeout: float = 1.0  # the longest we wait on any STUN/TURN server
    audio: bool = True
    video: bool = False


class CallSession:
    """One call: a state machine over an RTCPeerConnection, observable through events.

    Sources are aiortc tracks the session takes ownership of (it stops them on hang-up);
    ``None`` sends silence (audio) or nothing (video). Sinks receive the remote tracks; without
    one, remote media is consumed and discarded so it never piles up in memory.
    """

    def __init__(
        self,
        options: CallOptions | None = None,
        *,
        audio_source: MediaStreamTrack | None = None,
        video_source: MediaStreamTrack | None = None,
        audio_sink: MediaSink | None = None,
        video_sink: MediaSink | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options or CallOptions()
        self._clock = clock
        self._t0 = clock()
        self._machine = CallStateMachine()
        self.events: list[Event] = []
        self._subscribers: list[Callable[[Event], None]] = []
        # The sources live for the whole call; each peer connection gets its own gates.
        audio = (audio_source or AudioStreamTrack()) if self.options.audio else None
        self._audio_tee = SourceTee(audio) if audio is not None else None
        self._video_tee = SourceTee(video_source) if video_source is not None else None
        self._audio: GatedTrack | None = None  # the newest connection's gates
        self._video: GatedTrack | None = None
        self._gates: list[GatedTrack] = []  # every live gate (mute applies to all)
        # While an ICE restart runs, the old connection keeps the call going (RFC 8445 §9:
        # the old ICE session stays up until the new one is ready).
        self._standby: RTCPeerConnection | None = None
        self._rx_tracks: dict[RTCPeerConnection, dict[str, MediaStreamTrack]] = {}
        self._controls: dict[RTCPeerConnection, RTCDataChannel] = {}
        self._chats: dict[RTCPeerConnection, RTCDataChannel] = {}
        self._rtp_seen: dict[RTCPeerConnection, float] = {}  # loop time of the last RTP
        self._restart_started = 0.0
        # A restart is retried only once answered: an offer still queued in a reconnecting
        # signaling client (or in SCTP) will be delivered; a second would pile up behind it.
        self._restart_answer_received = False
        self._watching = False
        self._audio_sink = audio_sink
        self._video_sink = video_sink
        self._blackholes: list[MediaBlackhole] = []
        self._feeds: dict[str, RemoteFeed] = {}
        self._pc: RTCPeerConnection | None = None
        self._certificates: Any = None  # kept across renegotiations, so the SAS stays valid
        self._dialer = False
        self._restarting = False
        self._last_rx = 0.0
        self._chat: RTCDataChannel | None = None
        self._gather_started: float | None = None
        self._channel: SignalingChannel | None = None
        self._trickle = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connected: asyncio.Future[None] | None = None
        self._closing = False
        self._closed = asyncio.Event()
        self._candidates = CandidateBook()
        self._control: RTCDataChannel | None = None
        self._signaling_failed = False  # the channel gave up: no renegotiation through it
        self._inbound_hooked: set[RTCPeerConnection] = set()
        self._path_back = False
        self._chat_queue: list[str] = []
        self.connected_once = False  # reached CONNECTED at least once (exit status, history)
        self.sas: str | None = None
        self.muted = False
        self.video_enabled = True
        self.selected: SelectedPairChanged | None = None
        self._reset_path_state()

    def _reset_path_state(self) -> None:
        """What belongs to one peer connection (a renegotiated path starts these afresh)."""
        self._gatherings: list[rtcfixes.Gathering] = []
        self._negotiation = Negotiation()
        self._pairs_snapshot: tuple[CandidatePairInfo, ...] = ()
        self._selected_key: tuple[str, int, str, int] | None = None
        self._last_counters: stats.Counters | None = None

    # -- observation -------------------------------------------------------------------

    @property
    def state(self) -> CallState:
        return self._machine.state

    def now(self) -> float:
        """Seconds since the session was created (the ``at`` of every event)."""
        return self._clock() - self._t0

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback`` with every future event; returns a function that unsubscribes."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def _emit(self, event: Event) -> None:
        self.events.append(event)
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # a broken view must not break the call
                logger.exception("event subscriber %r failed on %r", callback, event)

    def _move(self, event: CallEvent, reason: str | None = None) -> None:
        old = self._machine.handle(event)
        new = self._machine.state
        logger.info("call %s -> %s%s", old.value, new.value, f" ({reason})" if reason else "")
        self._emit(StateChanged(old, new, self.now(), reason))

    @property
    def local_candidates(self) -> list[CandidateInfo]:
        return self._candidates.local

    @property
    def remote_candidates(self) -> list[CandidateInfo]:
        return self._candidates.remote

    @property
    def pairs(self) -> tuple[CandidatePairInfo, ...]:
        return self._pairs_snapshot

    # -- peer connection set-up ----------------------------------------------------------

    def _configuration(self) -> RTCConfiguration:
        servers = [
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in self.options.ice_servers
        ]
        policy = (
            RTCIceTransportPolicy.RELAY if self.options.relay_only else RTCIceTransportPolicy.ALL
        )
        # An explicit list, even empty: aiortc's default is a public STUN server.
        return RTCConfiguration(
            iceServers=servers, iceTransportPolicy=policy, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE
        )

    def _adopt_channel_servers(self, channel: SignalingChannel | None) -> None:
        """Use the ICE servers the signaling server handed out on join (issue 11), after the
        user's own. Called before each peer connection is built, so a restart picks up
        credentials the server refreshed meanwhile."""
        listed = getattr(channel, "ice_servers", None) or []
        offered = []
        for data in listed:
            try:
                offered.append(IceServer.from_dict(data, origin="signaling server"))
            except ConfigError as exc:
                logger.warning("ignoring an ICE server from the signaling server: %s", exc)
        user = [s for s in self.options.ice_servers if s.origin == "user"]
        self.options = dataclasses.replace(
            self.options, ice_servers=merge_ice_servers(user, offered)
        )

    @property
    def ice_servers(self) -> tuple[IceServer, ...]:
        """The servers in use, each with its ``origin``."""
        return self.options.ice_servers

    def _ensure_pc(self) -> RTCPeerConnection:
        if self._pc is not None:
            return self._pc
        self._adopt_channel_servers(self._channel)
        self._emit(IceServersInUse(self.options.ice_servers, self.now()))
        pc = RTCPeerConnection(self._configuration())
        rtcfixes.install_bundle_fix(pc)
        # One DTLS certificate for the whole call: a renegotiated path keeps the fingerprints
        # (and so the SAS) the users compared. aiortc reads it when transports are created.
        if self._certificates is None:
            self._certificates = rtcfixes.certificates(pc)
        else:
            rtcfixes.use_certificates(pc, self._certificates)
        self._pc = pc
        self._rx_tracks[pc] = {}
        if self._audio_tee is not None:
            self._audio = self._audio_tee.gate(enabled=not self.muted)
            self._gates.append(self._audio)
            pc.addTrack(self._audio)
        if self.options.video:
            if self._video_tee is not None:
                self._video = self._video_tee.gate(enabled=self.video_enabled)
                self._gates.append(self._video)
                pc.addTrack(self._video)
            else:
                pc.addTransceiver("video", direction="recvonly")
        # Negotiated out of band (same id both ends), so neither side waits for a
        # "datachannel" event and chat works the moment SCTP is up (RFC 8832 §6 not needed).
        chat = self._chat = pc.createDataChannel("chat", negotiated=True, id=0)
        self._chats[pc] = chat
        chat.on("message", self._on_chat)
        chat.on("open", lambda: self._on_chat_open(chat))
        # In-call signaling (bye, restart) once connected: works without a signaling server,
        # so copy-paste calls end cleanly too. Same codec as the signaling channel.
        control = self._control = pc.createDataChannel(CONTROL_LABEL, negotiated=True, id=1)
        self._controls[pc] = control
        control.on("message", lambda data: self._on_control(pc, data))
        rtcfixes.tune_sctp(pc)
        rtcfixes.on_rtp(pc, lambda: self._on_rtp(pc))

        # Handlers check that their connection is still the current one: an old connection
        # closed by a renegotiation must not move the call.
        def current(handler: Callable[..., None]) -> Callable[..., None]:
            def call(*args: Any) -> None:
                if pc is self._pc:
                    handler(*args)

            return call

        pc.on("track", lambda track: self._on_track(pc, track))
        pc.on("connectionstatechange", current(self._on_connection_state))
        pc.on("iceconnectionstatechange", current(self._on_ice_connection_state))
        pc.on("icegatheringstatechange", current(self._on_ice_gathering_state))
        pc.on("signalingstatechange", current(self._on_signaling_state))
        return pc

    async def _gather(self, *, wait: bool) -> None:
        """Start gathering (host candidates at once); with ``wait``, also await STUN/TURN."""
        pc = self._ensure_pc()
        self._gather_started = self.now()
        self._gatherings = rtcfixes.install_gathering(
            pc,
            on_candidate=self._on_local_candidate,
            timeout=self.options.gather_timeout,
            loopback_only=self.options.loopback_candidates,
            servers=self._configuration().iceServers or [],
        )
        for gathering in self._gatherings:
            gathering.done.add_done_callback(self._on_gathering_done)
        for conn in rtcfixes.ice_connections(pc):
            rtcfixes.check_stats(conn).on_switch = self._update_pairs
        await asyncio.gather(*(g.gather() for g in rtcfixes.ice_gatherers(pc)))
        if wait:
            await asyncio.gather(*(asyncio.shield(g.done) for g in self._gatherings))
        else:
            await asyncio.gather(*(asyncio.shield(g.first) for g in self._gatherings))

    def _on_local_candidate(self, candidate: IceCandidate, server: str | None) -> None:
        if self._pc is not None:  # the candidate's socket just joined: count its checks
            for conn in rtcfixes.ice_connections(self._pc):
                rtcfixes.tap_sockets(conn, stats.CheckCounter)
        info = candidate_info(candidate, "local", self.now(), server)
        origin = rtcfixes.candidate_origin(self._gatherings, candidate)
        if candidate.type == "relay" and origin is not None and origin.mapped is not None:
            # Relay-only hides it in the SDP (raddr 0.0.0.0); the debug panel shows what the
            # TURN server saw (XOR-MAPPED-ADDRESS of the Allocate).
            info = dataclasses.replace(
                info, related_address=origin.mapped[0], related_port=origin.mapped[1]
            )
        self._candidates.add(info)
        self._emit(CandidateGathered(info))
        if self._trickle:
            self._queue_trickle(trickle_message(candidate))

    def _on_gathering_done(self, future: asyncio.Future[tuple[str, ...]]) -> None:
        if future.cancelled() or self._closing:
            return
        if not all(g.done.done() for g in self._gatherings):
            return
        failed = tuple(s for g in self._gatherings for s in g.done.result())
        started = self._gather_started or 0.0
        self._emit(GatheringFinished(self.now(), self.now() - started, failed))
        if self._trickle:
            self._queue_trickle(EndOfCandidates())

    def _queue_trickle(self, message: Message) -> None:
        if self._negotiation.outgoing(message):
            self._spawn(self._send(message))

    async def _flush_trickle(self) -> None:
        for message in self._negotiation.description_went_out():
            await self._send(message)

    async def _send(self, message: Message) -> None:
        """To the peer: by the signaling channel while it can carry in-call messages, else
        (copy-paste, or the server gone) over the call's control data channel."""
        if self._signaling_usable() or not self.connected_once:
            if self._channel is None:
                return
            try:
                await self._channel.send(message)
            except SignalingError as exc:
                logger.info("signaling send failed: %s", exc)
            return
        control = self._open_control()
        if control is None:
            logger.info("no way to send %s to the peer right now", type(message).__name__)
            return
        with contextlib.suppress(Exception):  # a closing channel: the restart is retried
            control.send(encode_message(message))

    def _signaling_usable(self) -> bool:
        channel = self._channel
        return channel is not None and channel.supports_trickle and not self._signaling_failed

    def _open_control(self) -> RTCDataChannel | None:
        """The control channel of the connection carrying the call (else the newest one)."""
        for pc in (self._standby, self._pc):
            control = self._controls.get(pc) if pc is not None else None
            if control is not None and control.readyState == "open":
                return control
        return None

    def _local_sdp(self, kind: str) -> str:
        assert self._pc is not None
        pending = any(not g.done.done() for g in self._gatherings)
        sdp = local_sdp(self._pc.localDescription.sdp, gathering_pending=pending)
        self._emit(SdpExchanged("local", kind, sdp, self.now()))  # type: ignore[arg-type]
        return sdp

    async def _set_remote(self, kind: str, sdp: str) -> None:
        assert self._pc is not None
        self._emit(SdpExchanged("remote", kind, sdp, self.now()))  # type: ignore[arg-type]
        check_remote_sdp(kind, sdp)
        try:
            await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        except Exception as exc:  # aiortc raises ValueError/OperationError on bad SDP
            logger.info("setRemoteDescription(%s) failed", kind, exc_info=True)
            raise CallError(f"the peer's {kind} was not usable: {exc}") from None
        for parsed in self._negotiation.remote_description(sdp):
            self._note_remote_candidate(parsed)
        rtcfixes.install_audio_jitter_buffers(self._pc)
        for candidate in self._negotiation.take_pending():
            await self.add_remote_candidate(candidate)

    def _note_remote_candidate(self, parsed: IceCandidate) -> None:
        info = candidate_info(parsed, "remote", self.now())
        self._candidates.add(info)
        self._emit(RemoteCandidateAdded(info))

    # -- low-level API (copy-paste signaling) --------------------------------------------

    async def create_offer(self, *, trickle: bool = False) -> Offer:
        """Make the offer. Without ``trickle`` it carries every candidate (bounded wait)."""
        self._move(E.GATHER)
        self._trickle = trickle
        pc = self._ensure_pc()
        try:
            await self._gather(wait=not trickle)
            await pc.setLocalDescription(await pc.createOffer())
        except Exception as exc:
            # Unexpected from the library: the traceback goes to the log, the user gets a line.
            logger.exception("could not create the offer")
            await self._fail(f"could not create the offer: {exc}")
            raise CallError(f"could not create the offer: {exc}") from None
        sdp = self._local_sdp("offer")
        self._move(E.OFFER_MADE)
        return Offer(sdp)

    async def accept_offer(self, offer: Offer, *, trickle: bool = False) -> Answer:
        """Take the peer's offer and make our answer; the call then connects."""
        self._move(E.GATHER)
        self._trickle = trickle
        pc = self._ensure_pc()
        try:
            await self._set_remote("offer", offer.sdp)
            await self._gather(wait=not trickle)
            await pc.setLocalDescription(await pc.createAnswer())
        except CallError as exc:
            await self._fail(str(exc))
            raise
        except Exception as exc:
            # Unexpected from the library: the traceback goes to the log, the user gets a line.
            logger.exception("could not answer the offer")
            await self._fail(f"could not answer the offer: {exc}")
            raise CallError(f"could not answer the offer: {exc}") from None
        sdp = self._local_sdp("answer")
        self._move(E.ANSWER_MADE)
        self._move(E.DESCRIPTIONS_SET)
        self._start_connecting()
        return Answer(sdp)

    async def accept_answer(self, answer: Answer) -> None:
        """Take the peer's answer to our offer; the call then connects."""
        if self.state is not S.OFFERING:
            raise IllegalTransition(
                f"an answer is only accepted while offering, not {self.state.value}"
            )
        try:
            await self._set_remote("answer", answer.sdp)
        except CallError as exc:
            await self._fail(str(exc))
            raise
        self._move(E.DESCRIPTIONS_SET)
        self._start_connecting()

    async def add_remote_candidate(self, candidate: Candidate) -> None:
        """Add a trickled remote candidate (held until the remote description is set)."""
        pc = self._pc
        if pc is None or pc.remoteDescription is None:
            self._negotiation.hold_remote(candidate)
            return
        parsed = self._negotiation.new_remote(candidate.candidate)
        if parsed is None:
            return
        self._note_remote_candidate(parsed)
        rtc = candidate_from_aioice(parsed)
        rtc.sdpMid = candidate.sdp_mid
        rtc.sdpMLineIndex = candidate.sdp_mline_index
        with contextlib.suppress(Exception):  # a bad candidate must not end the call
            await pc.addIceCandidate(rtc)

    async def _end_of_remote_candidates(self) -> None:
        # aioice declares failure once the peer has no more candidates and every pair failed;
        # our own relay candidate may still be on its way, so hold the news until it is.
        if self._gatherings:
            await asyncio.gather(*(asyncio.shield(g.done) for g in self._gatherings))
        if self._pc is not None and self._pc.remoteDescription is not None:
            with contextlib.suppress(Exception):
                await self._pc.addIceCandidate(None)

    # -- high-level API over a signaling channel -----------------------------------------

    async def dial(self, channel: SignalingChannel) -> None:
        """Call the peer at the other end of ``channel``; returns once connected."""
        self._channel = channel
        self._dialer = True
        offer = await self.create_offer(trickle=channel.supports_trickle)
        await self._send_or_fail(offer)
        await self._flush_trickle()
        # A copy-paste channel carries the answer and nothing else: read it, then leave stdin
        # to the chat (in-call signaling goes over the data channel).
        once = not channel.supports_trickle
        self._spawn(self._receive_loop(channel, until_answer=once))
        await self._wait_connected()

    async def wait_for_offer(self, channel: SignalingChannel) -> Offer:
        """Wait for the peer's offer (the call is RINGING when this returns); candidates that
        arrive meanwhile are kept for later."""
        self._channel = channel
        while True:
            message = await channel.receive()
            match message:
                case Offer():
                    if self.state is S.IDLE:
                        self._move(E.RING)
                    return message
                case Candidate():
                    self._negotiation.hold_remote(message)
                case EndOfCandidates():
                    self._negotiation.hold_end_of_candidates()
                case Bye(reason=reason):
                    raise ChannelClosed(f"the caller gave up ({reason})")
                case _:
                    logger.info("ignoring %r while waiting for an offer", message)

    async def answer(self, channel: SignalingChannel, offer: Offer) -> None:
        """Accept ``offer`` (from :meth:`wait_for_offer`); returns once connected."""
        self._channel = channel
        answer = await self.accept_offer(offer, trickle=channel.supports_trickle)
        await self._send_or_fail(answer)
        await self._flush_trickle()
        if self._negotiation.remote_ended:
            self._spawn(self._end_of_remote_candidates())
        if channel.supports_trickle:  # copy-paste: nothing more will come that way
            self._spawn(self._receive_loop(channel))
        await self._wait_connected()

    async def decline(self, channel: SignalingChannel, reason: str = "declined") -> None:
        """Refuse an incoming call."""
        self._channel = channel
        await self._send(Bye(reason))
        await self._finish(S.ENDED, reason)

    async def _send_or_fail(self, message: Message) -> None:
        assert self._channel is not None
        try:
            await self._channel.send(message)
        except SignalingError as exc:
            await self._fail(f"signaling failed: {exc}")
            raise ConnectionFailed(f"signaling failed: {exc}") from None

    async def _receive_loop(self, channel: SignalingChannel, *, until_answer: bool = False) -> None:
        while not self._closing:
            try:
                message = await channel.receive()
            except SignalingError as exc:
                # Terminal: a closed channel or a client that gave up reconnecting re-raises
                # at once on every receive, so looping would spin without yielding. The call
                # itself goes on over its media path and the data channel.
                self._signaling_lost(exc)
                return
            await self._on_signal(message)
            if until_answer and isinstance(message, Answer):
                return

    def _signaling_lost(self, exc: SignalingError) -> None:
        self._signaling_failed = True
        if self._closing:
            return
        if self.state not in (S.CONNECTED, S.RECONNECTING):
            self._spawn(self._fail(f"signaling closed before the call connected: {exc}"))
            return
        logger.warning("signaling lost mid-call: %s", exc)
        self._emit(ErrorOccurred(f"signaling lost ({exc}); the call goes on", self.now()))

    async def _on_signal(self, message: Message) -> None:
        """One message from the peer, by the signaling channel or the control data channel."""
        match message:
            case Answer() if self.state is S.OFFERING:
                with contextlib.suppress(CallError):
                    await self.accept_answer(message)
            case Answer() if self._restarting:
                await self._restart_answered(message)
            case Offer() if self.state in (S.CONNECTED, S.RECONNECTING) and self._pc:
                # The peer renegotiates a dead path. On glare the dialer's offer wins.
                if self._restarting and self._dialer:
                    logger.info("ignoring the peer's restart offer: ours goes first")
                else:
                    await self._restart_as_answerer(message)
            case Candidate():
                await self.add_remote_candidate(message)
            case EndOfCandidates():
                await self._end_of_remote_candidates()
            case Bye(reason=reason):
                await self._peer_hung_up(reason)
            case _:
                logger.info("ignoring unexpected %r in state %s", message, self.state.value)

    async def _peer_hung_up(self, reason: str) -> None:
        if self._closing:
            return
        if reason.startswith(FAILED_PREFIX):
            await self._fail(reason.removeprefix(FAILED_PREFIX), notify=False)
            return
        if reason == "declined":
            text = "the other person declined"
        elif reason in ("hangup", ""):
            text = "the other person hung up"
        else:
            text = f"the other person hung up ({reason})"
        await self._finish(S.ENDED, text, notify=False)

    def _on_control(self, pc: RTCPeerConnection, data: str | bytes) -> None:
        if pc is not self._pc and pc is not self._standby:
            return
        try:
            message = decode_message(data)
        except SignalingError as exc:
            logger.info("bad message on the control channel: %s", exc)
            return
        self._spawn(self._on_signal(message))

    def _connected_future(self) -> asyncio.Future[None]:
        if self._connected is None:
            self._connected = asyncio.get_running_loop().create_future()
            # Callers who never await it (copy-paste flow) must not get "never retrieved".
            self._connected.add_done_callback(lambda f: f.cancelled() or f.exception())
            if self.state in FINAL_STATES:
                self._connected.set_exception(
                    ConnectionFailed("the call ended before it connected")
                )
        return self._connected

    async def _wait_connected(self) -> None:
        await asyncio.shield(self._connected_future())

    # -- connection progress -------------------------------------------------------------

    def _start_connecting(self, *, deadline: bool = True) -> None:
        self._connected_future()
        self._spawn(self._watch_pairs())
        if deadline:
            # Owned by CONNECTING: cancelled the moment the call connects or ends.
            if self.options.ice_servers:
                timeout = CONNECT_TIMEOUT
                message = f"no connection after {CONNECT_TIMEOUT:.0f} s (ICE found no path)"
            else:
                timeout, message = CONNECT_TIMEOUT_NO_SERVERS, NO_PATH_MESSAGE
            self._machine.call_later("connect", timeout, lambda: self._spawn(self._fail(message)))
        assert self._pc is not None
        for transceiver in self._pc.getTransceivers():
            dtls = transceiver.receiver.transport
            if dtls is not None:
                dtls.on("statechange", lambda d=dtls: self._layer("dtls", d.state))
                break

    def _layer(self, layer: Layer, state: str) -> None:
        self._emit(TransportStateChanged(layer, state, self.now()))

    def _on_ice_gathering_state(self) -> None:
        if self._pc is not None:
            self._layer("ice-gathering", self._pc.iceGatheringState)

    def _on_ice_connection_state(self) -> None:
        if self._pc is not None:
            self._layer("ice-connection", self._pc.iceConnectionState)

    def _on_signaling_state(self) -> None:
        if self._pc is not None:
            self._layer("signaling", self._pc.signalingState)

    def _on_connection_state(self) -> None:
        pc = self._pc
        if pc is None:
            return
        state = pc.connectionState
        self._layer("peer-connection", state)
        if state == "connected":
            self._maybe_connected()
        elif state == "failed" and self._standby is not None:
            self._spawn(self._drop_pending("the new path failed"))
        elif state == "failed" and self.state not in FINAL_STATES:
            if not self.options.ice_servers and not self.connected_once:
                self._spawn(self._fail(NO_PATH_MESSAGE))
            else:
                self._spawn(self._fail("the connection failed (ICE or DTLS)"))

    def _on_rtp(self, pc: RTCPeerConnection) -> None:
        first = pc not in self._rtp_seen
        self._rtp_seen[pc] = asyncio.get_running_loop().time()
        if pc is self._pc and (first or self.state is S.RECONNECTING):
            self._maybe_connected()

    def _rtp_flowing(self, pc: RTCPeerConnection | None, within: float = 0.5) -> bool:
        at = self._rtp_seen.get(pc) if pc is not None else None
        return at is not None and asyncio.get_running_loop().time() - at < within

    def _expects_rtp(self, pc: RTCPeerConnection) -> bool:
        """Whether the peer sends media at all (a data-only peer connects on DTLS alone)."""
        return any(t.currentDirection in ("sendrecv", "recvonly") for t in pc.getTransceivers())

    def _maybe_connected(self) -> None:
        """CONNECTED means media flows: ICE and DTLS are up and RTP from the peer arrives.

        Chat is not waited for: its SCTP handshake may take longer under loss (see
        ChatStateChanged). After an outage the same rule holds: connected again only once RTP
        arrives again (see RECONNECTING in _watch_path). A restarted connection that gets
        there takes over from the old one.
        """
        pc = self._pc
        if pc is None or self.state in FINAL_STATES or pc.connectionState != "connected":
            return
        if self._expects_rtp(pc) and not self._rtp_flowing(pc, within=SILENCE_DISCONNECTED):
            return
        if self._standby is not None:
            self._promote()
        if self.state not in (S.CONNECTING, S.RECONNECTING):
            return
        self._update_pairs()
        previous_sas = self.sas
        self._compute_sas()
        if previous_sas is not None and self.sas != previous_sas:
            self._emit(
                ErrorOccurred("the security code (SAS) changed: compare it again", self.now())
            )
        self._restarting = False
        self._move(E.MEDIA_FLOWING)
        self.connected_once = True
        if self._connected is not None and not self._connected.done():
            self._connected.set_result(None)
        if self._chat is None or self._chat.readyState != "open":
            self._emit(ChatStateChanged("connecting", self.now()))
        self._hook_inbound(pc)
        if not self._watching:
            self._watching = True
            self._spawn(self._stats_loop())
            self._spawn(self._watch_path())

    def _promote(self) -> None:
        """The restarted connection carries media: switch the sinks to it, close the old one."""
        old, self._standby = self._standby, None
        self._restarting = False
        self._switch_feeds(self._pc)
        self._hook_inbound(self._pc)
        if old is not None:
            self._forget(old)
            self._spawn(rtcfixes.close_quietly(old))
        logger.info("the restarted connection took over")

    async def _drop_pending(self, reason: str) -> None:
        """Abandon a restart attempt; the old connection goes on carrying the call."""
        pending, standby = self._pc, self._standby
        if standby is None or pending is None:
            return
        logger.info("dropping the pending connection: %s", reason)
        for gathering in self._gatherings:
            await gathering.close()
        self._pc, self._standby = standby, None
        self._chat, self._control = self._chats.get(standby), self._controls.get(standby)
        self._restarting = False
        self._reset_path_state()
        self._forget(pending)
        self._flush_chat()
        await rtcfixes.close_quietly(pending)

    def _forget(self, pc: RTCPeerConnection) -> None:
        self._rx_tracks.pop(pc, None)
        self._controls.pop(pc, None)
        self._chats.pop(pc, None)
        self._rtp_seen.pop(pc, None)
        self._inbound_hooked.discard(pc)

    def _switch_feeds(self, pc: RTCPeerConnection | None) -> None:
        for kind, track in self._rx_tracks.get(pc, {}).items() if pc is not None else ():
            feed = self._feeds.get(kind)
            if feed is not None:
                feed.switch(track)

    def _compute_sas(self) -> None:
        pc = self._pc
        assert pc is not None
        transports = [t.sender.transport for t in pc.getTransceivers()]
        if pc.sctp is not None:
            transports.append(pc.sctp.transport)
        local = next(
            (
                f"{fp.algorithm} {fp.value}"
                for t in transports
                if t is not None
                for fp in t.getLocalParameters().fingerprints
                if fp.algorithm == "sha-256"
            ),
            None,
        )
        remote = sdp_fingerprint(pc.remoteDescription.sdp) if pc.remoteDescription else None
        if local and remote:
            self.sas = short_auth_string(local, remote)
            self._emit(SasReady(self.sas, local, remote))

    def _pair_info(self, pair: Any) -> CandidatePairInfo:
        local = candidate_info(pair.local_candidate, "local", 0.0)
        remote = candidate_info(pair.remote_candidate, "remote", 0.0)
        local = self._candidates.known(local)
        remote = self._candidates.known(remote)
        return CandidatePairInfo(
            local=local,
            remote=remote,
            state=pair.state.name.lower().replace("_", "-"),
            nominated=bool(getattr(pair, "nominated", False)),
            counters=stats.pair_counters(rtcfixes.socket_tap(pair.protocol), pair.remote_addr),
        )

    def _update_pairs(self) -> None:
        pc = self._pc
        if pc is None:
            return
        chosen = rtcfixes.selected_pair(pc)
        key = None
        if chosen is not None:
            key = (chosen.local_candidate.host, chosen.local_candidate.port, *chosen.remote_addr)
        infos = []
        for pair in rtcfixes.candidate_pairs(pc):
            info = self._pair_info(pair)
            if pair is chosen:
                info = dataclasses.replace(info, selected=True, nominated=True)
            infos.append(info)
        snapshot = tuple(infos)
        # Counters move with every packet: an event (kept in ``events``) only when a pair's
        # state does; views read the live counters from ``pairs``.
        moved = stats.without_counters(snapshot) != stats.without_counters(self._pairs_snapshot)
        self._pairs_snapshot = snapshot
        if moved:
            self._emit(PairsUpdated(snapshot, self.now()))
        if chosen is not None and key != self._selected_key:
            self._selected_key = key
            info = next(i for i in snapshot if i.selected) if snapshot else self._pair_info(chosen)
            relayed = "relay" in (info.local.type, info.remote.type)
            self.selected = SelectedPairChanged(info, relayed, self.now())
            self._emit(self.selected)

    async def _watch_pairs(self) -> None:
        while self.state in (S.CONNECTING, S.CONNECTED) and not self._closing:
            self._update_pairs()
            await asyncio.sleep(0.1 if self.state is S.CONNECTING else 1.0)

    async def _stats_loop(self) -> None:
        while not self._closing and self.state in (S.CONNECTED, S.RECONNECTING):
            await asyncio.sleep(1.0)
            if self._pc is None or self.state is not S.CONNECTED:
                continue
            try:
                report = await self._pc.getStats()
            except Exception as exc:  # stats are best effort; never end a call over them
                logger.debug("getStats failed: %s", exc)
                continue
            self._emit(self._sample(report))

    def _sample(self, report: Any) -> StatsSample:
        extra: dict[str, float] = {}
        if self._pc is not None:
            for transceiver in self._pc.getTransceivers():
                jb = rtcfixes.jitter_buffer(transceiver.receiver)
                if isinstance(jb, rtcfixes.AudioJitterBuffer):
                    extra["jitter_buffer_skipped"] = float(jb.skipped)
                    extra["jitter_buffer_dropped"] = float(jb.dropped)
        result, self._last_counters = stats.sample(report, self._last_counters, self.now(), extra)
        return result

    # -- dead-path detection and renegotiation ------------------------------------------

    def _hook_inbound(self, pc: RTCPeerConnection | None) -> None:
        """Note the time of every packet from the peer (media, RTCP, DTLS, STUN replies)."""
        if pc is None or pc in self._inbound_hooked:
            return
        self._inbound_hooked.add(pc)
        loop = asyncio.get_running_loop()
        self._last_rx = loop.time()
        for conn in rtcfixes.ice_connections(pc):
            rtcfixes.on_inbound(conn, lambda: setattr(self, "_last_rx", loop.time()))

    async def _watch_path(self) -> None:
        """Notice a silent path within seconds and recover (RFC 7675 consent takes 30 s).

        While RECONNECTING the old ICE session stays up: the moment its path comes back, RTP
        arrives on it and the call is CONNECTED again. A trickling signaling channel also lets
        the call restart on a fresh path (new candidates, new ufrag/pwd: RFC 8445 §9) for an
        address change; a restart that has not connected after RESTART_RETRY is tried
        again. The call gives up only after SILENCE_FAILED (the RECONNECTING timer).
        """
        loop = asyncio.get_running_loop()
        addresses = self._local_addresses()
        next_address_check = loop.time() + ADDRESS_CHECK
        while not self._closing and self.state in (S.CONNECTED, S.RECONNECTING):
            await asyncio.sleep(0.25)
            now = loop.time()
            if now >= next_address_check:
                next_address_check = now + ADDRESS_CHECK
                current = self._local_addresses()
                if current != addresses:
                    # A new network or a lost one (RFC 8445 §9: the addresses changed):
                    # restart at once rather than wait for silence; the call goes on
                    # meanwhile on the old path if it still works.
                    addresses = current
                    if not self._restarting and self._can_renegotiate():
                        await self._restart_as_offerer("the local network addresses changed")
                        continue
            silent = now - self._last_rx
            back = self.state is S.RECONNECTING and silent < SILENCE_DISCONNECTED
            if back and not self._path_back:
                self._path_back = True
                self._layer("ice-connection", "connected")
            step = pathwatch.next_step(
                pathwatch.Observed(
                    state=self.state,
                    silent=silent,
                    rtp_flowing=self._rtp_flowing(self._standby or self._pc),
                    dialer=self._dialer,
                    can_renegotiate=self._can_renegotiate(),
                    restarting=self._restarting or self._standby is not None,
                    restart_answered=self._restart_answer_received,
                    since_restart=now - self._restart_started,
                )
            )
            reason = f"no packets from the peer for {silent:.0f} s"
            if step is pathwatch.Step.RECONNECTING:
                self._enter_reconnecting(reason)
            elif step is pathwatch.Step.MEDIA_BACK:
                # The old path is back: media again on it, while a restart may still finish.
                self._move(E.MEDIA_FLOWING, "media flows again")
            elif step is pathwatch.Step.RESTART:
                await self._restart_as_offerer(reason)
            elif step is pathwatch.Step.DROP_PENDING:
                await self._drop_pending("it did not connect")

    def _local_addresses(self) -> frozenset[str]:
        if self.options.loopback_candidates:
            return frozenset(rtcfixes.LOOPBACK_ADDRESSES)
        return rtcfixes.host_addresses()

    def _can_renegotiate(self) -> bool:
        return self._signaling_usable() or self._open_control() is not None

    def _enter_reconnecting(self, reason: str) -> None:
        """CONNECTED -> RECONNECTING, with the give-up timer that state owns."""
        if self.state is not S.CONNECTED:
            return
        self._path_back = False
        self._layer("ice-connection", "disconnected")
        self._emit(ErrorOccurred(reason, self.now()))
        self._move(E.PATH_LOST, f"{reason}: reconnecting")
        message = f"lost the connection to the peer (no packets for {SILENCE_FAILED:.0f} s)"
        self._machine.call_later(
            "give up", SILENCE_FAILED, lambda: self._spawn(self._fail(message))
        )

    async def _renew_pc(self) -> RTCPeerConnection:
        """Start a fresh connection beside the one carrying the call (an ICE restart).

        aiortc has no ICE restart (RFC 8445 §9), so a new peer connection with the same
        sources, certificate and sinks stands in for it: new ufrag/pwd, new candidates, new
        checks, new DTLS. The connection carrying media stays up as the standby until the new
        one carries media (see _promote); an earlier attempt that never connected is closed.
        """
        current = self._pc
        for gathering in self._gatherings:
            await gathering.close()
        self._pc = None
        self._reset_path_state()
        if current is not None:
            if self._standby is None:
                self._standby = current
            else:
                self._forget(current)
                await rtcfixes.close_quietly(current)
        self._restart_started = asyncio.get_running_loop().time()
        return self._ensure_pc()

    async def restart_ice(self, reason: str = "restart requested") -> None:
        """Restart ICE now on a fresh connection, the current one carrying the call meanwhile
        (e.g. the local address changed). Goes by the signaling channel, or over the call's
        control data channel when there is none (copy-paste calls)."""
        if self.state not in (S.CONNECTED, S.RECONNECTING) or self._restarting:
            raise CallError(f"cannot restart ICE while {self.state.value}")
        if not self._can_renegotiate():
            raise CallError("cannot restart ICE: no way to reach the other person")
        await self._restart_as_offerer(reason)

    async def _restart_as_offerer(self, reason: str) -> None:
        try:
            logger.info("restarting ICE: %s", reason)
            pc = await self._renew_pc()
            self._restarting = True
            self._restart_answer_received = False
            self._trickle = True
            await self._gather(wait=False)
            await pc.setLocalDescription(await pc.createOffer())
        except Exception as exc:
            # Unexpected from the library: the traceback goes to the log, the user gets a line.
            logger.exception("could not reconnect")
            await self._fail(f"could not reconnect: {exc}")
            return
        await self._send(Offer(self._local_sdp("offer")))
        await self._flush_trickle()  # RECONNECTING's give-up timer bounds the wait

    async def _restart_answered(self, answer: Answer) -> None:
        pc = self._pc
        if pc is None or pc.signalingState != "have-local-offer":
            logger.info("ignoring a late answer to an earlier restart")
            return
        try:
            await self._set_remote("answer", answer.sdp)
        except CallError as exc:
            if self._standby is not None:  # the old connection may still carry the call
                await self._drop_pending(str(exc))
                return
            await self._fail(str(exc))
            return
        self._restart_answer_received = True
        self._start_connecting(deadline=False)

    async def _restart_as_answerer(self, offer: Offer) -> None:
        try:
            logger.info("the peer restarts ICE")
            pc = await self._renew_pc()
            self._restarting = True
            self._trickle = True
            await self._set_remote("offer", offer.sdp)
            await self._gather(wait=False)
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            # Unexpected from the library: the traceback goes to the log, the user gets a line.
            logger.exception("could not reconnect")
            await self._fail(f"could not reconnect: {exc}")
            return
        await self._send(Answer(self._local_sdp("answer")))
        await self._flush_trickle()
        self._start_connecting(deadline=False)

    # -- media and chat ------------------------------------------------------------------

    def _on_track(self, pc: RTCPeerConnection, track: MediaStreamTrack) -> None:
        if pc not in self._rx_tracks:  # closed meanwhile
            return
        self._rx_tracks[pc][track.kind] = track
        feed = self._feeds.get(track.kind)
        if feed is not None:
            if self._standby is None and pc is self._pc:
                feed.switch(track)  # else: switched when this connection takes over
            return
        feed = self._feeds[track.kind] = RemoteFeed(track.kind)
        feed.switch(track)
        sink = self._audio_sink if track.kind == "audio" else self._video_sink
        if sink is not None:
            self._spawn(sink.start(feed))
        else:
            hole = MediaBlackhole()
            hole.addTrack(feed)
            self._blackholes.append(hole)
            self._spawn(hole.start())

    def _on_chat(self, message: str | bytes) -> None:
        text = message if isinstance(message, str) else message.decode("utf-8", "replace")
        self._emit(ChatReceived(text, self.now()))

    def _on_chat_open(self, chat: RTCDataChannel) -> None:
        if chat is not self._open_chat() or self._closing:
            return
        self._emit(ChatStateChanged("open", self.now()))
        self._flush_chat()

    def _flush_chat(self) -> None:
        chat = self._open_chat()
        if chat is None:
            return
        queued, self._chat_queue = self._chat_queue, []
        for text in queued:
            chat.send(text)

    def _open_chat(self) -> RTCDataChannel | None:
        """The chat channel to use: the newest connection's, else (while a restart runs) the
        one still carrying the call."""
        for pc in (self._pc, self._standby):
            chat = self._chats.get(pc) if pc is not None else None
            if chat is not None and chat.readyState == "open":
                return chat
        return None

    @property
    def chat_open(self) -> bool:
        return self._open_chat() is not None

    async def send_chat(self, text: str) -> None:
        """Send a chat message over the call's data channel.

        Once the call is connected, a message sent while the chat channel is still
        connecting (or reconnecting) is queued and goes out when it opens.
        """
        if not text:
            raise CallError("chat message is empty")
        if len(text) > MAX_CHAT_LENGTH:
            raise CallError(f"chat message is longer than {MAX_CHAT_LENGTH} characters")
        chat = self._open_chat()
        if chat is not None:
            chat.send(text)
        elif self.connected_once and self.state not in FINAL_STATES:
            self._chat_queue.append(text)
        else:
            raise CallError("chat is not available until the call is connected")

    def set_muted(self, muted: bool) -> None:
        """Send silence instead of the microphone (the stream keeps its timing)."""
        self.muted = muted
        for gate in self._gates:
            if gate.kind == "audio":
                gate.enabled = not muted

    def set_video_enabled(self, on: bool) -> None:
        """Send black frames instead of the camera."""
        self.video_enabled = on
        for gate in self._gates:
            if gate.kind == "video":
                gate.enabled = on

    # -- ending --------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if isinstance(exc, MediaStreamError):
                return
            logger.error("session task failed: %r", exc, exc_info=exc)
            self._emit(ErrorOccurred(f"internal error: {exc}", self.now()))

    async def _fail(self, message: str, *, notify: bool = True) -> None:
        if self.state in FINAL_STATES:
            return
        self._emit(ErrorOccurred(message, self.now(), fatal=True))
        await self._finish(S.FAILED, message, notify=notify)

    async def hangup(self, reason: str = "hangup") -> None:
        """End the call (idempotent): tell the peer, close everything, state ENDED."""
        await self._finish(S.ENDED, reason)

    close = hangup

    async def _finish(self, final: CallState, reason: str, *, notify: bool = True) -> None:
        if self._closing:
            # Another hang-up is closing things: return only once it is done, so a caller
            # that hangs up and then exits never races the teardown.
            if asyncio.current_task() not in self._tasks:
                await self._closed.wait()
            return
        self._closing = True
        try:
            await self._teardown(final, reason, notify=notify)
        finally:
            self._closed.set()

    async def _teardown(self, final: CallState, reason: str, *, notify: bool) -> None:
        if notify and self.state not in FINAL_STATES:
            # A failure says so, so the other side fails with the same reason rather than
            # reporting that the other person hung up.
            await self._send_bye(FAILED_PREFIX + reason if final is S.FAILED else reason)
        if self.state not in FINAL_STATES:
            self._move(E.HANG_UP if final is S.ENDED else E.FAIL, reason)
        if self._connected is not None and not self._connected.done():
            self._connected.set_exception(ConnectionFailed(f"call ended: {reason}"))
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        for gathering in self._gatherings:
            await gathering.close()
        for sink in (self._audio_sink, self._video_sink):
            if sink is not None:
                with contextlib.suppress(Exception):
                    await sink.stop()
        for hole in self._blackholes:
            with contextlib.suppress(Exception):
                await hole.stop()
        for track in (*self._gates, *self._feeds.values()):
            track.stop()
        for tee in (self._audio_tee, self._video_tee):
            if tee is not None:
                await tee.stop()
        for pc in (self._pc, self._standby):
            if pc is not None:
                await rtcfixes.close_quietly(pc)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _standby_control(self) -> RTCDataChannel | None:
        return self._controls.get(self._standby) if self._standby is not None else None

    async def _send_bye(self, reason: str) -> None:
        """Tell the peer: over the data channel (reaches it even in copy-paste calls and
        without a signaling server) and over the signaling channel; never holds a hang-up."""
        controls = [self._control, self._standby_control()]
        control = next((c for c in controls if c is not None and c.readyState == "open"), None)
        if control is not None:
            drained = asyncio.Event()
            control.on("bufferedamountlow", drained.set)
            with contextlib.suppress(Exception):
                control.send(encode_message(Bye(reason)))
                # SCTP hands the chunk to DTLS asynchronously; closing at once could lose it.
                if control.bufferedAmount > 0:
                    await asyncio.wait_for(drained.wait(), BYE_FLUSH)
                await asyncio.sleep(0.02)
        if self._channel is not None and not self._signaling_failed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._channel.send(Bye(reason)), BYE_TIMEOUT)

    # -- export --------------------------------------------------------------------------

    def export(self) -> dict[str, Any]:
        """Everything a bug report needs, JSON-ready: options, events, candidates, SDPs, SAS."""
        return {
            "format": "peercall-session/1",
            "options": jsonable(self.options),
            "state": self.state.value,
            "sas": self.sas,
            "local_candidates": jsonable(self.local_candidates),
            "remote_candidates": jsonable(self.remote_candidates),
            "pairs": jsonable(self._pairs_snapshot),
            "selected": jsonable(self.selected),
            "events": jsonable(self.events),
        }
