"""CallSession: the state machine as data, and real calls between two sessions on loopback."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

import av
import pytest

from app.call.sas import short_auth_string
from app.call.session import CallOptions, CallSession
from app.errors import CallError, ConnectionFailed, IllegalTransition
from app.events import (
    CallState,
    CandidateGathered,
    ChatReceived,
    ErrorOccurred,
    Event,
    GatheringFinished,
    PairsUpdated,
    SasReady,
    SdpExchanged,
    SelectedPairChanged,
    StateChanged,
    StatsSample,
    TransportStateChanged,
)
from app.iceservers import IceServer
from signaling.errors import ChannelClosed
from signaling.memory import memory_pair
from signaling.messages import Answer, Offer
from tests.app.tones import ToneProbe
from tests.conftest import free_port
from tests.nat.conftest import relay_port_range

LOOPBACK = CallOptions(loopback_candidates=True)


def test_short_auth_string_is_symmetric_and_sensitive() -> None:
    a, b = "sha-256 AA:BB", "sha-256 CC:DD"
    assert short_auth_string(a, b) == short_auth_string(b, a)
    assert short_auth_string(a, b) != short_auth_string(a, "sha-256 CC:DE")
    assert len(short_auth_string(a, b)) == 7
    assert short_auth_string(a, b)[3] == " "


def state_of(session: CallSession) -> CallState:
    """The state, read through a call so type narrowing does not outlive an await."""
    return session.state


class Recorder:
    def __init__(self, session: CallSession) -> None:
        self.events: list[Event] = []
        session.subscribe(self.events.append)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


async def connect_pair(caller: CallSession, callee: CallSession) -> tuple[object, object]:
    a_ch, b_ch = memory_pair()

    async def callee_side() -> None:
        offer = await callee.wait_for_offer(b_ch)
        await callee.answer(b_ch, offer)

    await asyncio.wait_for(asyncio.gather(caller.dial(a_ch), callee_side()), 20)
    return a_ch, b_ch


async def test_call_over_memory_signaling_connects_chats_and_hangs_up() -> None:
    caller, callee = CallSession(LOOPBACK), CallSession(LOOPBACK)
    rec_a, rec_b = Recorder(caller), Recorder(callee)
    await connect_pair(caller, callee)
    assert caller.state is CallState.CONNECTED
    assert callee.state is CallState.CONNECTED

    states = [e.new for e in rec_a.of(StateChanged)]
    assert states == [
        CallState.GATHERING,
        CallState.OFFERING,
        CallState.CONNECTING,
        CallState.CONNECTED,
    ]
    assert [e.new for e in rec_b.of(StateChanged)] == [
        CallState.RINGING,
        CallState.GATHERING,
        CallState.ANSWERING,
        CallState.CONNECTING,
        CallState.CONNECTED,
    ]
    # Only loopback host candidates were offered, and the selected pair is direct.
    local = [e.candidate for e in rec_a.of(CandidateGathered)]
    assert local
    assert all(c.address == "127.0.0.1" and c.type == "host" for c in local)
    assert caller.remote_candidates
    assert callee.remote_candidates
    selected = rec_a.of(SelectedPairChanged)[-1]
    assert not selected.relayed
    assert selected.pair.selected
    assert rec_a.of(PairsUpdated)
    # Both ends derive the same SAS from the two DTLS fingerprints.
    assert caller.sas is not None
    assert caller.sas == callee.sas
    assert rec_a.of(SasReady)[0].local_fingerprint == rec_b.of(SasReady)[0].remote_fingerprint

    await caller.send_chat("hello ☎")
    await callee.send_chat("hi back")
    for rec, text in ((rec_b, "hello ☎"), (rec_a, "hi back")):
        for _ in range(100):
            if rec.of(ChatReceived):
                break
            await asyncio.sleep(0.02)
        assert [e.text for e in rec.of(ChatReceived)] == [text]

    # Stats arrive once a second once connected.
    for _ in range(150):
        if rec_a.of(StatsSample):
            break
        await asyncio.sleep(0.02)
    sample = rec_a.of(StatsSample)[0]
    assert sample.rtt_ms is None or sample.rtt_ms >= 0

    await caller.hangup()
    for _ in range(100):
        if state_of(callee) is CallState.ENDED:
            break
        await asyncio.sleep(0.02)
    assert state_of(caller) is CallState.ENDED
    assert state_of(callee) is CallState.ENDED
    assert rec_b.of(StateChanged)[-1].reason == "the other person hung up"
    await callee.hangup()  # idempotent
    json.dumps(caller.export())  # export is JSON-ready


async def test_chat_before_connect_is_a_clear_error() -> None:
    session = CallSession(LOOPBACK)
    with pytest.raises(CallError, match="chat is not available until the call is connected"):
        await session.send_chat("too early")
    with pytest.raises(CallError, match="empty"):
        await session.send_chat("")
    await session.hangup()


async def test_manual_flow_without_trickle_puts_candidates_in_the_sdp() -> None:
    caller, callee = CallSession(LOOPBACK), CallSession(LOOPBACK)
    offer = await caller.create_offer()
    assert "a=candidate:" in offer.sdp
    assert "a=end-of-candidates" in offer.sdp
    answer = await callee.accept_offer(offer)
    assert "a=candidate:" in answer.sdp
    await caller.accept_answer(answer)
    for _ in range(250):
        if caller.state is callee.state is CallState.CONNECTED:
            break
        await asyncio.sleep(0.02)
    assert caller.state is CallState.CONNECTED
    assert callee.state is CallState.CONNECTED
    assert caller.sas == callee.sas
    await caller.hangup()
    await callee.hangup()


async def test_answer_out_of_order_is_rejected() -> None:
    session = CallSession(LOOPBACK)
    with pytest.raises(IllegalTransition, match="only accepted while offering"):
        await session.accept_answer(Answer("v=0\r\n"))
    await session.hangup()


async def test_unusable_offer_fails_the_session_with_one_line() -> None:
    session = CallSession(LOOPBACK)
    with pytest.raises(CallError, match="the peer's offer was not usable") as exc:
        await session.accept_offer(Offer("v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"))
    assert "\n" not in str(exc.value)
    assert session.state is CallState.FAILED


@pytest.fixture
def dead_stun_server() -> Iterator[str]:
    """A bound UDP port on loopback that never answers (like a STUN server behind a firewall)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield f"stun:127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


async def test_dead_stun_server_does_not_hold_up_the_call(dead_stun_server: str) -> None:
    options = CallOptions(
        loopback_candidates=True, ice_servers=(IceServer((dead_stun_server,)),), gather_timeout=3
    )
    caller, callee = CallSession(options), CallSession(options)
    rec = Recorder(caller)
    await connect_pair(caller, callee)
    # The call connected on host candidates while the STUN query was still pending: gathering
    # finishes (with the dead server named) only after the call is up.
    connected_at = next(e.at for e in rec.of(StateChanged) if e.new is CallState.CONNECTED)
    for _ in range(300):
        if rec.of(GatheringFinished):
            break
        await asyncio.sleep(0.02)
    finished = rec.of(GatheringFinished)[0]
    assert finished.failed_servers == (dead_stun_server,)
    assert finished.at > connected_at
    await caller.hangup()
    await callee.hangup()


async def test_declined_call_ends_both_sides() -> None:
    caller, callee = CallSession(LOOPBACK), CallSession(LOOPBACK)
    a_ch, b_ch = memory_pair()

    async def decline() -> None:
        await callee.wait_for_offer(b_ch)
        await callee.decline(b_ch)

    results = await asyncio.gather(caller.dial(a_ch), decline(), return_exceptions=True)
    assert isinstance(results[0], ConnectionFailed)
    assert "the other person declined" in str(results[0])
    assert not caller.connected_once
    assert caller.state is CallState.ENDED
    assert callee.state is CallState.ENDED


async def test_caller_giving_up_is_seen_while_ringing() -> None:
    callee = CallSession(LOOPBACK)
    a_ch, b_ch = memory_pair()
    await a_ch.close()
    with pytest.raises(ChannelClosed):
        await callee.wait_for_offer(b_ch)
    await callee.hangup()


async def test_mute_sends_silence() -> None:
    from aiortc.mediastreams import AudioStreamTrack

    class Loud(AudioStreamTrack):
        async def recv(self):
            frame = await super().recv()
            assert isinstance(frame, av.AudioFrame)
            for plane in frame.planes:
                plane.update(b"\x10\x20" * (plane.buffer_size // 2))
            return frame

    session = CallSession(LOOPBACK, audio_source=Loud())
    session._ensure_pc()  # each peer connection gets its own gate over the source
    gate = session._audio
    assert gate is not None
    assert any((await gate.recv()).to_ndarray().ravel())
    session.set_muted(True)
    assert not any((await gate.recv()).to_ndarray().ravel())
    session.set_muted(False)
    assert any((await gate.recv()).to_ndarray().ravel())
    await session.hangup()


# -- through a real TURN server ---------------------------------------------------------


@pytest.fixture
async def coturn() -> AsyncIterator[tuple[str, str, str]]:
    """coturn's own turnserver on loopback: the reference relay our engine must work with."""
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.fail("coturn's turnserver is missing: run scripts/install-system-deps.sh")
    port = free_port(socket.SOCK_DGRAM)
    # Below the ephemeral range, and wide: coturn picks relay ports at random and a narrow
    # window next to other tests' sockets could leave it none (one failure under load).
    low, high = relay_port_range()
    proc = subprocess.Popen(  # noqa: ASYNC220 (a server start, not a wait)
        [binary, "-n", "--listening-ip=127.0.0.1", f"--listening-port={port}",
         "--relay-ip=127.0.0.1", f"--min-port={low}", f"--max-port={high}",
         "--lt-cred-mech", "--user=alice:secret", "--realm=test", "--allow-loopback-peers",
         "--no-cli", "--no-tls", "--no-dtls", "--log-file=stdout", "--simple-log"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        # Start-up on a loaded machine can take seconds: wait for it (bounded), and say so
        # if it never listens rather than letting the call time out with no reason.
        for _ in range(600):
            if proc.poll() is not None:
                pytest.fail(f"turnserver exited: {proc.communicate()[0].decode()[-2000:]}")
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("turnserver did not listen within 30 s")
        yield f"turn:127.0.0.1:{port}?transport=udp", "alice", "secret"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


@pytest.mark.interop
async def test_relay_only_call_through_coturn(coturn: tuple[str, str, str]) -> None:
    uri, user, password = coturn
    relay = CallOptions(relay_only=True, ice_servers=(IceServer((uri,), user, password),))
    caller, callee = CallSession(relay), CallSession(relay)
    rec = Recorder(caller)
    await connect_pair(caller, callee)
    gathered = [e.candidate for e in rec.of(CandidateGathered)]
    assert gathered
    assert all(c.type == "relay" for c in gathered)
    assert gathered[0].server == uri
    assert rec.of(SelectedPairChanged)[-1].relayed
    await caller.send_chat("via relay")
    await caller.hangup()
    await callee.hangup()


class Outage:
    """Drop every datagram of a session's current path both ways, until ``end()``."""

    def __init__(self, session: CallSession) -> None:
        from app import rtcfixes

        assert session._pc is not None
        self.protocols = [
            p for conn in rtcfixes.ice_connections(session._pc) for p in conn._protocols
        ]
        self.saved = [(p.datagram_received, p.transport.sendto) for p in self.protocols]
        for protocol in self.protocols:
            protocol.datagram_received = lambda data, addr: None  # type: ignore[method-assign]
            protocol.transport.sendto = lambda data, addr=None: None  # type: ignore[method-assign]

    def end(self) -> None:
        for protocol, (received, sendto) in zip(self.protocols, self.saved, strict=True):
            protocol.datagram_received = received  # type: ignore[method-assign]
            protocol.transport.sendto = sendto  # type: ignore[method-assign]


def blackhole(session: CallSession) -> None:
    """Cut the session's current path both ways at its sockets, as a dead network would."""
    from app import rtcfixes

    assert session._pc is not None
    for conn in rtcfixes.ice_connections(session._pc):
        for protocol in conn._protocols:
            protocol.datagram_received = lambda data, addr: None  # type: ignore[method-assign]
            protocol.transport.sendto = lambda data, addr=None: None  # type: ignore[method-assign]


async def test_dead_path_is_detected_and_the_call_reconnects_with_media() -> None:
    from app.media.synthetic import ToneTrack

    probe_a, probe_b = ToneProbe(), ToneProbe()
    caller = CallSession(LOOPBACK, audio_source=ToneTrack(700.0), audio_sink=probe_a)
    callee = CallSession(LOOPBACK, audio_source=ToneTrack(1100.0), audio_sink=probe_b)
    rec_a, rec_b = Recorder(caller), Recorder(callee)
    await connect_pair(caller, callee)
    assert await probe_b.wait_for(700.0)
    assert await probe_a.wait_for(1100.0)
    sas = caller.sas
    old_pc = caller._pc
    blackhole(caller)
    for _ in range(1000):
        if rec_a.of(StateChanged)[-1].new is CallState.RECONNECTING:
            break
        await asyncio.sleep(0.02)
    # Reported as "disconnected" long before aioice's 30 s consent timeout, then renegotiated.
    reason = rec_a.of(StateChanged)[-1].reason or ""
    assert "no packets from the peer" in reason
    assert "reconnecting" in reason
    assert any(
        e.layer == "ice-connection" and e.state == "disconnected"
        for e in rec_a.events
        if isinstance(e, TransportStateChanged)
    )
    probe_a.clear()
    probe_b.clear()
    for _ in range(1000):
        if state_of(caller) is CallState.CONNECTED and state_of(callee) is CallState.CONNECTED:
            break
        await asyncio.sleep(0.02)
    assert state_of(caller) is CallState.CONNECTED
    assert state_of(callee) is CallState.CONNECTED
    assert caller._pc is not old_pc
    # Media again, both ways, on the new path: the sources outlived the old connection.
    assert await probe_b.wait_for(700.0)
    assert await probe_a.wait_for(1100.0)
    assert caller.sas == sas  # same certificates: the code the users compared still holds
    assert not [e for e in rec_a.of(ErrorOccurred) if "SAS" in e.message]
    await caller.send_chat("still here")
    for _ in range(200):
        if rec_b.of(ChatReceived):
            break
        await asyncio.sleep(0.02)
    assert [e.text for e in rec_b.of(ChatReceived)] == ["still here"]
    await caller.hangup()
    await callee.hangup()


async def test_a_reconnect_is_not_killed_by_an_old_connect_deadline() -> None:
    import app.call.session as session_module

    saved = session_module.CONNECT_TIMEOUT_NO_SERVERS
    # The first attempt's deadline would fall inside the reconnection below (the path is lost
    # after 2 s of silence and renegotiated after 3 s).
    session_module.CONNECT_TIMEOUT_NO_SERVERS = 4.0
    try:
        caller, callee = CallSession(LOOPBACK), CallSession(LOOPBACK)
        rec_a = Recorder(caller)
        await connect_pair(caller, callee)
        blackhole(caller)  # reconnects well after the first deadline would have fired
        for _ in range(1000):
            if [e for e in rec_a.of(StateChanged) if e.new is CallState.RECONNECTING]:
                break
            await asyncio.sleep(0.02)
        for _ in range(1000):
            if rec_a.of(StateChanged)[-1].new is CallState.CONNECTED:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.5)  # past where that deadline would have fired
        assert state_of(caller) is CallState.CONNECTED
        assert not [e for e in rec_a.of(StateChanged) if e.new is CallState.FAILED]
        assert caller._machine.timers == frozenset()
    finally:
        session_module.CONNECT_TIMEOUT_NO_SERVERS = saved
    await caller.hangup()
    await callee.hangup()


async def test_dead_path_without_renegotiation_fails_cleanly() -> None:
    import app.call.session as session_module

    caller, callee = CallSession(LOOPBACK), CallSession(LOOPBACK)
    offer = await caller.create_offer()
    await caller.accept_answer(await callee.accept_offer(offer))
    for _ in range(250):
        if state_of(caller) is CallState.CONNECTED and state_of(callee) is CallState.CONNECTED:
            break
        await asyncio.sleep(0.02)
    saved = session_module.SILENCE_FAILED
    session_module.SILENCE_FAILED = 2.5  # copy-paste signaling cannot renegotiate: give up
    try:
        blackhole(caller)
        for _ in range(500):
            if state_of(caller) is CallState.FAILED:
                break
            await asyncio.sleep(0.02)
    finally:
        session_module.SILENCE_FAILED = saved
    assert state_of(caller) is CallState.FAILED
    final = [e for e in caller.events if isinstance(e, StateChanged)][-1]
    assert "lost the connection to the peer" in (final.reason or "")
    await caller.hangup()
    await callee.hangup()


async def test_video_call_delivers_frames_and_sends_black_when_camera_is_off() -> None:
    from app.media.video import LatestFrameSink, TestPatternTrack

    options = CallOptions(loopback_candidates=True, video=True)
    sink = LatestFrameSink()
    caller = CallSession(options, video_source=TestPatternTrack(320, 240))
    callee = CallSession(options, video_sink=sink)
    await connect_pair(caller, callee)
    for _ in range(500):
        if sink.frames >= 10:
            break
        await asyncio.sleep(0.02)
    assert sink.frames >= 10
    assert sink.size == (320, 240)
    pattern = sink.latest_rgb()
    assert pattern is not None
    assert float(pattern.std()) > 20  # colour bars, not a flat picture
    caller.set_video_enabled(False)
    seen = sink.frames
    for _ in range(500):
        rgb = sink.latest_rgb()
        if sink.frames > seen + 10 and rgb is not None and float(rgb.mean()) < 30:
            break
        await asyncio.sleep(0.02)
    rgb = sink.latest_rgb()
    assert rgb is not None
    assert float(rgb.mean()) < 30  # black frames while the camera is off
    await caller.hangup()
    await callee.hangup()


async def test_no_path_without_ice_servers_fails_soon_with_a_hint() -> None:
    """Candidates that cannot meet (as across two NATs with no STUN/TURN server): one line
    saying what would help, and a deadline well inside 10 s."""
    import app.call.session as session_module

    assert session_module.CONNECT_TIMEOUT_NO_SERVERS < 10

    def unreachable(sdp: str) -> str:  # the peer's candidates never arrive
        return "".join(line for line in sdp.splitlines(True) if not line.startswith("a=cand"))

    caller, callee = CallSession(LOOPBACK), CallSession(LOOPBACK)
    offer = await caller.create_offer()
    answer = await callee.accept_offer(Offer(unreachable(offer.sdp)))
    await caller.accept_answer(Answer(unreachable(answer.sdp)))
    for _ in range(1000):
        if state_of(caller) is CallState.FAILED:
            break
        await asyncio.sleep(0.02)
    assert state_of(caller) is CallState.FAILED
    final = [e for e in caller.events if isinstance(e, StateChanged)][-1]
    assert final.reason == (
        "no network path to the other person: add a STUN/TURN server or host a relay"
    )
    await caller.hangup()
    await callee.hangup()


class HeldSends:
    """Holds what a channel sends until ``release()`` (signaling cut by the same outage)."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.send = channel.send
        self.held: list[Any] = []
        channel.send = self._hold

    async def _hold(self, message: Any) -> None:
        self.held.append(message)

    async def release(self) -> None:
        self.channel.send = self.send
        for message in self.held:
            await self.send(message)


@pytest.mark.parametrize("signaling", ["trickle", "trickle, cut too", "copy-paste"])
async def test_media_resumes_after_an_outage_on_the_old_path(signaling: str) -> None:
    """A 6 s outage: the old ICE session stays up while RECONNECTING, so media (both ways)
    and CONNECTED come back once the path does, whether a restart got through meanwhile,
    arrives late (signaling cut by the same outage) or is impossible (copy-paste)."""
    from app.media.synthetic import ToneTrack

    probe_a, probe_b = ToneProbe(), ToneProbe()
    caller = CallSession(LOOPBACK, audio_source=ToneTrack(700.0), audio_sink=probe_a)
    callee = CallSession(LOOPBACK, audio_source=ToneTrack(1100.0), audio_sink=probe_b)
    rec_a = Recorder(caller)
    held: HeldSends | None = None
    if signaling.startswith("trickle"):
        a_ch, _ = await connect_pair(caller, callee)
        if signaling == "trickle, cut too":
            held = HeldSends(a_ch)
    else:
        offer = await caller.create_offer()
        await caller.accept_answer(await callee.accept_offer(offer))
    assert await probe_b.wait_for(700.0)
    assert await probe_a.wait_for(1100.0)
    sas = caller.sas
    outage = Outage(caller)
    for _ in range(1000):
        if state_of(caller) is CallState.RECONNECTING:
            break
        await asyncio.sleep(0.02)
    assert state_of(caller) is CallState.RECONNECTING
    await asyncio.sleep(4.0)  # 6 s in all: past the restart at 3 s of silence
    probe_a.clear()
    probe_b.clear()
    outage.end()
    if held is not None:
        assert held.held  # the restart offer was sent into the cut
        assert await probe_b.wait_for(700.0)  # on the old path, before the offer arrives
        await caller.send_chat("while restarting")  # the old path's chat still works
        rec_b = Recorder(callee)
        for _ in range(250):
            if rec_b.of(ChatReceived):
                break
            await asyncio.sleep(0.02)
        assert [e.text for e in rec_b.of(ChatReceived)] == ["while restarting"]
        await held.release()
    assert await probe_b.wait_for(700.0)
    assert await probe_a.wait_for(1100.0)
    for _ in range(500):
        if state_of(caller) is CallState.CONNECTED and state_of(callee) is CallState.CONNECTED:
            break
        await asyncio.sleep(0.02)
    assert state_of(caller) is CallState.CONNECTED
    assert state_of(callee) is CallState.CONNECTED
    assert caller.sas == sas
    await asyncio.sleep(1.5)  # a late restart finishing (or dropped) must not cut media
    probe_a.clear()
    probe_b.clear()
    assert await probe_b.wait_for(700.0)
    assert await probe_a.wait_for(1100.0)
    assert not [e for e in rec_a.of(StateChanged) if e.new is CallState.FAILED]
    await caller.hangup()
    await callee.hangup()


async def test_ice_restart_over_the_data_channel_in_a_copy_paste_call() -> None:
    """No signaling channel at all: the restart's offer, answer and candidates go over the
    control data channel; the new connection takes over without the call leaving CONNECTED."""
    from app.media.synthetic import ToneTrack

    probe_b = ToneProbe()
    caller = CallSession(LOOPBACK, audio_source=ToneTrack(700.0))
    callee = CallSession(LOOPBACK, audio_sink=probe_b)
    rec_a = Recorder(caller)
    offer = await caller.create_offer()
    await caller.accept_answer(await callee.accept_offer(offer))
    for _ in range(500):
        if state_of(caller) is CallState.CONNECTED and state_of(callee) is CallState.CONNECTED:
            break
        await asyncio.sleep(0.02)
    assert await probe_b.wait_for(700.0)
    sas, old_pc = caller.sas, caller._pc
    await caller.restart_ice("test")
    for _ in range(500):
        if caller._standby is None and caller._pc is not old_pc and callee._standby is None:
            break
        await asyncio.sleep(0.02)
    assert caller._pc is not old_pc  # the new connection took over
    assert caller._standby is None
    assert [e for e in caller.events if isinstance(e, SdpExchanged)][-1].kind == "answer"
    probe_b.clear()
    assert await probe_b.wait_for(700.0)  # media on the new connection
    assert caller.sas == sas
    assert [e.new for e in rec_a.of(StateChanged)][-1] is CallState.CONNECTED
    assert CallState.RECONNECTING not in [e.new for e in rec_a.of(StateChanged)]
    await caller.hangup()
    await callee.hangup()


async def test_a_change_of_local_addresses_restarts_ice_without_leaving_connected() -> None:
    """A new network (or a lost one) restarts ICE at once through signaling; the old
    connection carries the call until the new one does."""
    from app.media.synthetic import ToneTrack

    probe_b = ToneProbe()
    caller = CallSession(LOOPBACK, audio_source=ToneTrack(700.0))
    callee = CallSession(LOOPBACK, audio_sink=probe_b)
    rec_a = Recorder(caller)
    await connect_pair(caller, callee)
    assert await probe_b.wait_for(700.0)
    old_pc = caller._pc
    # As if a second network came up beside loopback.
    caller._local_addresses = lambda: frozenset({"127.0.0.1", "192.0.2.7"})  # type: ignore[method-assign]
    for _ in range(500):
        if caller._pc is not old_pc and caller._standby is None:
            break
        await asyncio.sleep(0.02)
    assert caller._pc is not old_pc
    assert caller._standby is None  # the restarted connection took over
    probe_b.clear()
    assert await probe_b.wait_for(700.0)
    assert CallState.RECONNECTING not in [e.new for e in rec_a.of(StateChanged)]
    await caller.hangup()
    await callee.hangup()


async def test_a_failure_on_one_side_fails_the_other_with_the_same_reason() -> None:
    """Not 'the other person hung up': the Bye says the call failed, and why."""
    caller, callee = CallSession(LOOPBACK), CallSession(LOOPBACK)
    await connect_pair(caller, callee)
    await caller._fail("no network path to the other person: add a STUN/TURN server")
    for _ in range(250):
        if state_of(callee) is CallState.FAILED:
            break
        await asyncio.sleep(0.02)
    assert state_of(callee) is CallState.FAILED
    final = [e for e in callee.events if isinstance(e, StateChanged)][-1]
    assert final.reason == "no network path to the other person: add a STUN/TURN server"
    await callee.hangup()
