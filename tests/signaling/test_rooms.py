"""The room rules (signaling.rooms.RoomTable) without sockets, against both backends.

``memory`` drives a RoomTable directly; ``redis`` drives the same rules through
:class:`signaling.cluster.RedisRooms` against a real, private redis-server (rooms loaded,
changed and stored with the compare-and-set per event). Time is a number the test moves.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signaling.messages import Answer, Candidate, Offer
from signaling.rooms import Action, Arm, Close, Limits, RoomTable, Send
from signaling.ws_protocol import (
    Ack,
    ClientFrame,
    Deliver,
    Delivered,
    ErrorCode,
    ErrorFrame,
    Join,
    Joined,
    Leave,
    PeerJoined,
    PeerLeft,
    Ping,
    Pong,
    Relay,
    ServerFrame,
    encode_frame,
    parse_server_frame,
)
from tests.signaling.conftest import RedisProcess

A, B, C = "alice-0000", "bob-11111", "carol-2222"
SDP = "v=0\r\n"
CAND = Candidate("candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host")
BIG_SDP = "v=0\r\n" + "a=x-filler:" + "y" * 3800 + "\r\n"  # a real offer's size


class Harness:
    """Feeds events to one backend and keeps what it asked for, per connection."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.frames: dict[str, list[ServerFrame]] = defaultdict(list)
        self.closed: dict[str, Close] = {}
        self.arms: list[Arm] = []
        self.table: RoomTable

    def collect(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.frames[action.conn].append(parse_server_frame(action.text))
            elif isinstance(action, Close):
                self.closed[action.conn] = action
            else:
                self.arms.append(action)

    def cid(self, name: str) -> str:
        return name

    def take(self, name: str) -> list[ServerFrame]:
        return self.frames.pop(self.cid(name), [])

    async def open(self, name: str, address: str = "192.0.2.7") -> None:
        raise NotImplementedError

    async def send(self, name: str, frame: ClientFrame | bytes) -> None:
        raise NotImplementedError

    async def drop(self, name: str) -> None:
        raise NotImplementedError

    async def fire(self, arm: Arm) -> None:
        raise NotImplementedError

    async def usage(self, address: str) -> tuple[int, int]:
        """(queued bytes, seats) ``address`` holds over every room."""
        return self.table.usage(address)

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [a for a in self.arms if a.at <= self.now]
        self.arms = [a for a in self.arms if a.at > self.now]
        for arm in due:
            await self.fire(arm)

    async def join(self, name: str, peer: str, room: str = "room", secret: str = "pw") -> Joined:
        await self.open(name)
        await self.send(name, Join(room, secret, peer, name=peer.split("-")[0]))
        frames = self.take(name)
        assert isinstance(frames[0], Joined), frames
        return frames[0]


class MemoryHarness(Harness):
    def __init__(self, limits: Limits) -> None:
        super().__init__()
        self.table = RoomTable(limits)

    async def open(self, name: str, address: str = "192.0.2.7") -> None:
        self.table.open(name, address)

    async def send(self, name: str, frame: ClientFrame | bytes) -> None:
        self.collect(self.table.handle(name, frame, self.now))

    async def drop(self, name: str) -> None:
        self.collect(self.table.disconnect(name, self.now))

    async def fire(self, arm: Arm) -> None:
        self.collect(self.table.on_timer(arm.room, arm.peer, self.now))


class _Shell:
    """What RedisRooms needs of its SignalingServer: the table, two timeouts, and a place
    to perform actions (here: the harness records them)."""

    def __init__(self, table: RoomTable, harness: Harness) -> None:
        self.table = table
        self.resume_grace = table.limits.resume_grace
        self.idle_timeout = 60.0
        self._harness = harness

    def _run(self, actions: list[Action]) -> None:
        self._harness.collect(actions)

    def deliver_local(self, action: Send | Close) -> None:
        self._harness.collect([action])


class RedisHarness(Harness):
    def __init__(self, limits: Limits, url: str) -> None:
        from signaling.cluster import RedisRooms

        super().__init__()
        self.table = RoomTable(limits)
        self.rooms = RedisRooms(_Shell(self.table, self), url)  # type: ignore[arg-type]

    def cid(self, name: str) -> str:
        return f"{self.rooms.node}/{name}"

    async def open(self, name: str, address: str = "192.0.2.7") -> None:
        self.table.open(self.cid(name), address)

    async def send(self, name: str, frame: ClientFrame | bytes) -> None:
        raw = frame if isinstance(frame, bytes) else encode_frame(frame).encode()
        self.collect(await self.rooms.handle(self.cid(name), raw, self.now))

    async def drop(self, name: str) -> None:
        self.collect(await self.rooms.disconnect(self.cid(name), self.now))

    async def fire(self, arm: Arm) -> None:
        self.collect(await self.rooms.timer(arm.room, arm.peer, self.now))

    async def usage(self, address: str) -> tuple[int, int]:
        return await self.rooms.usage(address)

    async def room_keys(self) -> list[str]:
        return [str(k) for k in await self.rooms.redis.keys("peercall:room:*")]


LIMITS = Limits(resume_grace=5.0, rate_limit=None)


@pytest.fixture(params=["memory", "redis"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    made: list[RedisHarness] = []

    async def build(limits: Limits = LIMITS) -> Harness:
        if request.param == "memory":
            return MemoryHarness(limits)
        redis: RedisProcess = request.getfixturevalue("redis_server")
        harness = RedisHarness(limits, redis.url)
        await harness.rooms.start()
        made.append(harness)
        return harness

    yield build
    for harness in made:
        await harness.rooms.stop()


async def pair(h: Harness) -> None:
    await h.join("a", A)
    await h.join("b", B)
    assert h.take("a") == [PeerJoined(B, "bob")]


def error(h: Harness, name: str) -> ErrorFrame:
    frames = h.take(name)
    assert len(frames) == 1, frames
    assert isinstance(frames[0], ErrorFrame), frames
    return frames[0]


async def test_relay_ack_and_presence(make: Any) -> None:
    h = await make()
    await pair(h)
    await h.send("a", Relay(1, Offer(BIG_SDP)))
    assert h.take("b") == [Deliver(A, 1, Offer(BIG_SDP))]
    await h.send("b", Ack(A, 1))
    assert h.take("a") == [Delivered(1)]
    await h.send("b", Relay(1, Answer(SDP)))
    assert h.take("a") == [Deliver(B, 1, Answer(SDP))]
    await h.send("a", Ping())
    assert h.take("a") == [Pong()]
    await h.send("b", Leave())
    assert h.take("a") == [PeerLeft(B, "bob", "left")]
    assert h.closed[h.cid("b")].code == 1000


async def test_room_full_and_wrong_secret(make: Any) -> None:
    h = await make()
    await pair(h)
    await h.open("c")
    await h.send("c", Join("room", "pw", C))
    assert error(h, "c").code == ErrorCode.ROOM_FULL
    await h.send("c", Join("room", "nope", C))
    assert error(h, "c") == ErrorFrame(ErrorCode.WRONG_SECRET, "wrong room secret")


async def test_wrong_secrets_lock_the_address_out_with_a_growing_delay(make: Any) -> None:
    h = await make(Limits(resume_grace=5.0, rate_limit=None, secret_free_per_address=2))
    await h.join("a", A, secret="right")
    await h.open("g")  # the guesser, one address, any number of links
    for _ in range(2):
        await h.send("g", Join("room", "guess", C))
        assert error(h, "g").code == ErrorCode.WRONG_SECRET  # typos are free
    await h.send("g", Join("room", "guess", C))
    assert error(h, "g").code == ErrorCode.WRONG_SECRET  # the third starts a 1 s lock-out
    await h.send("g", Join("room", "right", C))  # even the right secret waits it out
    assert error(h, "g") == ErrorFrame(
        ErrorCode.LOCKED_OUT, "too many wrong room secrets; try again in 1 s"
    )
    await h.advance(1.0)
    await h.send("g", Join("room", "guess", C))
    assert error(h, "g").code == ErrorCode.WRONG_SECRET  # -> 2 s
    await h.advance(1.0)
    await h.send("g", Join("room", "guess", C))
    assert error(h, "g").message == "too many wrong room secrets; try again in 1 s"
    await h.advance(1.0)
    await h.send("g", Join("room", "right", C))
    frames = h.take("g")
    assert isinstance(frames[0], Joined), frames  # a success starts over


async def test_wrong_secrets_from_many_addresses_lock_the_room_out(make: Any) -> None:
    h = await make(Limits(resume_grace=5.0, rate_limit=None, secret_free_per_room=3))
    await h.join("a", A, secret="right")
    for i in range(4):
        await h.open(f"g{i}", address=f"198.51.100.{i}")
        await h.send(f"g{i}", Join("room", "guess", C))
        assert error(h, f"g{i}").code == ErrorCode.WRONG_SECRET
    await h.open("late", address="203.0.113.9")
    await h.send("late", Join("room", "guess", C))
    assert error(h, "late").code == ErrorCode.LOCKED_OUT
    await h.send("late", Join("other-room", "x", C))  # other rooms are not affected
    assert isinstance(h.take("late")[0], Joined)


async def test_a_session_token_resumes_through_a_lock_out(make: Any) -> None:
    h = await make(Limits(resume_grace=5.0, rate_limit=None, secret_free_per_room=0))
    joined = await h.join("a", A)
    await h.open("g", address="198.51.100.1")
    await h.send("g", Join("room", "guess", C))
    error(h, "g")
    await h.drop("a")
    await h.open("a2")
    await h.send("a2", Join("room", "pw", A, session=joined.session))
    back = h.take("a2")[0]
    assert isinstance(back, Joined)
    assert back.resumed


async def test_sequence_order_is_answered_consistently(make: Any) -> None:
    h = await make()
    await pair(h)
    await h.send("a", Relay(5, Offer(SDP)))  # a first relay may start anywhere (a re-join)
    assert h.take("b") == [Deliver(A, 5, Offer(SDP))]
    for seq in (1, 3):
        await h.send("a", Relay(seq, CAND))
        frame = error(h, "a")
        assert frame.code == ErrorCode.OUT_OF_ORDER
        assert frame.message == f"relay seq {seq} is before this seat's first relay 5"
        assert frame.seq == seq
    await h.send("a", Relay(7, CAND))
    assert error(h, "a").message == "relay seq 7 out of order (expected 6)"
    await h.send("a", Relay(5, Offer(SDP)))  # a duplicate: dropped, no answer
    assert h.take("a") == []
    await h.send("a", Relay(6, CAND))
    assert h.take("b") == [Deliver(A, 6, CAND)]


async def test_every_bad_frame_is_answered(make: Any) -> None:
    h = await make()
    await h.open("x")
    await h.send("x", b"[" * 100_000)
    assert error(h, "x") == ErrorFrame(ErrorCode.BAD_JSON, "malformed JSON: nested too deeply")
    await h.send("x", b"{" * 100 + b'"a":' * 10)
    assert error(h, "x").code == ErrorCode.BAD_JSON
    await h.send("x", b"x" * 200_000)
    assert error(h, "x").code == ErrorCode.TOO_BIG
    await h.send("x", Relay(1, Offer(SDP)))
    assert error(h, "x").code == ErrorCode.NOT_JOINED


async def test_queues_are_capped_by_bytes_per_room(make: Any) -> None:
    h = await make(Limits(resume_grace=5.0, rate_limit=None, max_room_bytes=16_000))
    await h.join("a", A)  # alone: relays wait for the next joiner
    for seq in range(1, 5):
        await h.send("a", Relay(seq, Offer(BIG_SDP)))
        assert h.take("a") == []
    await h.send("a", Relay(5, Offer(BIG_SDP)))
    frame = error(h, "a")
    assert frame.code == ErrorCode.QUEUE_FULL
    assert frame.message.startswith("room holds 15")
    assert frame.message.endswith("unacknowledged bytes (limit 16000); retry later")


async def test_queues_are_capped_by_bytes_per_address_dropped_seats_included(
    make: Any,
) -> None:
    h = await make(Limits(resume_grace=5.0, rate_limit=None, max_address_bytes=10_000))
    for i in range(3):  # three rooms, each filled then dropped (the probe's pattern)
        name = f"c{i}"
        await h.join(name, f"peer-{i:05d}", room=f"r{i}")
        await h.send(name, Relay(1, Offer(BIG_SDP)))
        await h.drop(name)
    frame = error(h, "c2")
    assert frame.code == ErrorCode.QUEUE_FULL
    assert frame.message.startswith("your address holds 7")
    assert (await h.usage("192.0.2.7"))[1] == 3  # seats held
    await h.advance(5.0)  # the grace runs out: every seat and byte is released
    assert await h.usage("192.0.2.7") == (0, 0)
    if isinstance(h, RedisHarness):
        assert await h.room_keys() == []
    else:
        assert h.table.rooms == {}


async def test_a_join_flood_of_distinct_rooms_is_bounded_and_released(make: Any) -> None:
    h = await make(Limits(resume_grace=5.0, rate_limit=None, max_seats_per_ip=10))
    for i in range(10):
        await h.join(f"c{i}", f"peer-{i:05d}", room=f"flood-{i}")
        await h.drop(f"c{i}")  # dropped seats still count until their grace ends
    await h.open("more")
    await h.send("more", Join("flood-x", "pw", "peer-xxxxx"))
    frame = error(h, "more")
    assert frame.code == ErrorCode.TOO_MANY_ROOMS
    assert frame.message.startswith("at most 10 room seats per address")
    await h.open("elsewhere", address="203.0.113.5")  # other addresses are not affected
    await h.send("elsewhere", Join("flood-x", "pw", "peer-yyyyy"))
    assert isinstance(h.take("elsewhere")[0], Joined)
    await h.advance(5.0)
    assert await h.usage("192.0.2.7") == (0, 0)
    await h.send("more", Join("flood-y", "pw", "peer-xxxxx"))
    assert isinstance(h.take("more")[0], Joined)


async def test_resume_replays_the_queue_and_replaces_a_half_dead_link(make: Any) -> None:
    h = await make()
    await pair(h)
    session = await _session(h, "b")
    await h.send("a", Relay(1, Offer(SDP)))
    assert h.take("b") == [Deliver(A, 1, Offer(SDP))]
    await h.open("b2")  # b's old link looks alive but is not; b comes back on a new one
    await h.send("b2", Join("room", "pw", B, name="bob", session=session))
    assert h.take("b") == [ErrorFrame(ErrorCode.REPLACED, "replaced by a newer connection", True)]
    assert h.closed[h.cid("b")].code == 4000
    frames = h.take("b2")
    assert isinstance(frames[0], Joined)
    assert frames[0].resumed
    assert frames[1:] == [Deliver(A, 1, Offer(SDP))]
    assert h.take("a") == [PeerJoined(B, "bob", resumed=True)]
    await h.send("b", Relay(1, Answer(SDP)))  # the replaced link is no longer in the room
    assert error(h, "b").code == ErrorCode.NOT_JOINED


async def _session(h: Harness, name: str) -> str:
    """Re-join trick-free: the harness kept no Joined, so ask through a resume of a seat."""
    table_conn = h.table.conns[h.cid(name)]
    if isinstance(h, RedisHarness):
        from signaling.cluster import room_from_text

        data = await h.rooms.redis.hget("peercall:room:" + (table_conn.room or ""), "d")
        stored = room_from_text(str(data)).slot_of(table_conn.peer or "")
        assert stored is not None
        return stored.session
    room = h.table.rooms[table_conn.room or ""]
    slot = room.slot_of(table_conn.peer or "")
    assert slot is not None
    return slot.session


async def test_a_dropped_seat_expires_and_its_queue_waits_for_the_next_joiner(
    make: Any,
) -> None:
    h = await make()
    await pair(h)
    await h.drop("b")
    assert h.take("a") == [PeerLeft(B, "bob", "disconnected")]
    await h.send("a", Relay(1, Offer(SDP)))
    await h.advance(4.9)
    assert h.take("a") == []
    await h.advance(0.1)
    assert h.take("a") == [PeerLeft(B, "bob", "expired")]
    await h.open("c")
    await h.send("c", Join("room", "pw", C, name="carol"))
    frames = h.take("c")
    assert isinstance(frames[0], Joined)
    assert frames[1:] == [Deliver(A, 1, Offer(SDP))]  # the queue went to the next joiner
    assert h.take("a") == [PeerJoined(C, "carol")]


async def test_the_rate_limit_cuts_a_flooder_off(make: Any) -> None:
    h = await make(Limits(resume_grace=5.0, rate_limit=10.0, rate_burst=3))
    await h.join("a", A)  # one token
    for _ in range(2):
        await h.send("a", Ping())
    assert h.take("a") == [Pong(), Pong()]
    await h.send("a", Ping())
    frame = error(h, "a")
    assert (frame.code, frame.fatal) == (ErrorCode.RATE_LIMITED, True)
    assert h.closed[h.cid("a")] == Close(h.cid("a"), 1008, "rate limit", drain=True)
    await h.send("a", Ping())  # cut off: ignored, not even answered
    assert h.take("a") == []


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_get_exactly_one_answer_and_never_raise(raw: bytes) -> None:
    table = RoomTable(Limits(rate_limit=None))
    table.open("x", "192.0.2.1")
    actions = table.handle("x", raw, 0.0)
    if actions:  # a valid join is answered with joined; anything else with one error
        assert len(actions) == 1
        assert isinstance(actions[0], Send)


async def test_two_nodes_changing_one_room_at_once_retry_and_lose_nothing(
    redis_server: RedisProcess,
) -> None:
    """Alice's node and Bob's node store the same room at the same moment, 30 times: one
    compare-and-set loses each time and runs the rules again on the room as the other left it.
    Each side still gets every relay of the other once, in order, and the acks add up.
    (Without per-address caps: reading an address's cluster-wide figures first is one more
    round trip per relay, which spreads the two nodes' stores apart, so that not every one
    collides.)"""
    lockstep = Limits(resume_grace=5.0, rate_limit=None, max_address_bytes=None,
                      max_seats_per_ip=None)  # fmt: skip
    one, two = RedisHarness(lockstep, redis_server.url), RedisHarness(lockstep, redis_server.url)
    await one.rooms.start()
    await two.rooms.start()
    try:
        await one.join("a", A)
        await two.join("b", B)
        for seq in range(1, 31):
            await asyncio.gather(
                one.send("a", Relay(seq, CAND)), two.send("b", Relay(seq, Answer(SDP)))
            )
        async with asyncio.timeout(10):  # forwarded through pub/sub
            while len(one.frames[one.cid("a")]) < 31 or len(two.frames[two.cid("b")]) < 30:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert one.rooms.conflicts + two.rooms.conflicts >= 30
        assert one.take("a") == [PeerJoined(B, "bob")] + [
            Deliver(B, seq, Answer(SDP)) for seq in range(1, 31)
        ]
        assert two.take("b") == [Deliver(A, seq, CAND) for seq in range(1, 31)]
        await two.send("b", Ack(A, 30))
        async with asyncio.timeout(10):
            while not one.frames[one.cid("a")]:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert one.take("a") == [Delivered(30)]
    finally:
        await one.rooms.stop()
        await two.rooms.stop()


@pytest.fixture
async def two_nodes(redis_server: RedisProcess) -> AsyncIterator[Any]:
    """Two RedisRooms nodes on one redis-server, built with the limits a test asks for."""
    made: list[RedisHarness] = []

    async def build(limits: Limits) -> tuple[RedisHarness, RedisHarness]:
        pair = RedisHarness(limits, redis_server.url), RedisHarness(limits, redis_server.url)
        for h in pair:
            await h.rooms.start()
            made.append(h)
        return pair

    yield build
    for h in made:
        await h.rooms.stop()


async def test_wrong_secrets_lock_an_address_out_over_the_whole_cluster(two_nodes: Any) -> None:
    """One guesser spreads its guesses over both nodes (a load balancer does it for free):
    the free typos and the lock-out are counted once for the cluster, not once per node."""
    one, two = await two_nodes(Limits(resume_grace=5.0, rate_limit=None, secret_free_per_address=2))
    await one.join("a", A, room="r1", secret="right")
    await two.join("b", B, room="r2", secret="right")  # two rooms: the room guard stays out
    await one.open("g1")
    await two.open("g2")
    await one.send("g1", Join("r1", "guess", C))
    assert error(one, "g1").code == ErrorCode.WRONG_SECRET
    await two.send("g2", Join("r2", "guess", C))
    assert error(two, "g2").code == ErrorCode.WRONG_SECRET  # the 2nd: still free
    await one.send("g1", Join("r1", "guess", C))
    assert error(one, "g1").code == ErrorCode.WRONG_SECRET  # the 3rd starts a 1 s lock-out
    await two.send("g2", Join("r2", "right", C))  # on the other node too
    assert error(two, "g2") == ErrorFrame(
        ErrorCode.LOCKED_OUT, "too many wrong room secrets; try again in 1 s"
    )
    await two.open("other", address="203.0.113.5")  # another address is not affected
    await two.send("other", Join("r3", "pw", "dave-33333"))
    assert isinstance(two.take("other")[0], Joined)
    one.now = two.now = one.now + 1.0
    await two.send("g2", Join("r2", "right", C))  # a right secret starts over, everywhere
    assert isinstance(two.take("g2")[0], Joined)
    await one.send("g1", Join("r1", "guess", C))
    assert error(one, "g1").code == ErrorCode.WRONG_SECRET


async def test_wrong_secrets_lock_a_room_out_over_the_whole_cluster(two_nodes: Any) -> None:
    one, two = await two_nodes(Limits(resume_grace=5.0, rate_limit=None, secret_free_per_room=2))
    await one.join("a", A, secret="right")
    for i, h in enumerate((one, two)):
        await h.open(f"g{i}", address=f"198.51.100.{i}")
        await h.send(f"g{i}", Join("room", "guess", C))
        assert error(h, f"g{i}").code == ErrorCode.WRONG_SECRET
    await one.open("g2", address="198.51.100.2")
    await one.send("g2", Join("room", "guess", C))
    assert error(one, "g2").code == ErrorCode.WRONG_SECRET  # the 3rd locks the room
    await two.open("late", address="203.0.113.9")
    await two.send("late", Join("room", "right", C))
    assert error(two, "late").code == ErrorCode.LOCKED_OUT


async def test_queued_bytes_per_address_are_capped_over_the_whole_cluster(
    two_nodes: Any,
) -> None:
    one, two = await two_nodes(Limits(resume_grace=5.0, rate_limit=None, max_address_bytes=10_000))
    for i, h in enumerate((one, two)):  # ~3.9 KB held on each node
        await h.join(f"c{i}", f"peer-{i:05d}", room=f"r{i}")
        await h.send(f"c{i}", Relay(1, Offer(BIG_SDP)))
        assert h.take(f"c{i}") == []
    await one.join("c2", "peer-00002", room="r2")
    await one.send("c2", Relay(1, Offer(BIG_SDP)))  # 3 x 3.9 KB > 10,000: refused
    frame = error(one, "c2")
    assert frame.code == ErrorCode.QUEUE_FULL
    assert frame.message.startswith("your address holds 7")
    assert (await one.usage("192.0.2.7"))[1] == 3
    await two.open("d1")  # r1's queue is delivered and acked ...
    await two.send("d1", Join("r1", "pw", "peer-00011"))
    joined, *queued = two.take("d1")
    assert isinstance(joined, Joined)
    assert queued == [Deliver("peer-00001", 1, Offer(BIG_SDP))]
    await two.send("d1", Ack("peer-00001", 1))
    await one.send("c2", Relay(1, Offer(BIG_SDP)))  # ... so node one has room for it again
    assert one.take("c2") == []
    assert await one.usage("192.0.2.7") == await two.usage("192.0.2.7")


async def test_seats_per_address_are_capped_over_the_whole_cluster(two_nodes: Any) -> None:
    one, two = await two_nodes(Limits(resume_grace=5.0, rate_limit=None, max_seats_per_ip=2))
    await one.join("c0", "peer-00000", room="r0")
    await two.join("c1", "peer-00001", room="r1")
    await one.open("more")
    await one.send("more", Join("r2", "pw", "peer-00002"))
    frame = error(one, "more")
    assert frame.code == ErrorCode.TOO_MANY_ROOMS
    await two.send("c1", Leave())  # a seat given up on node two frees one for node one
    await one.send("more", Join("r2", "pw", "peer-00002"))
    assert isinstance(one.take("more")[0], Joined)
    assert await two.usage("192.0.2.7") == (0, 2)


async def test_a_redis_that_lost_the_store_script_gets_it_again(two_nodes: Any) -> None:
    """A Redis restart (or SCRIPT FLUSH) forgets the store script: the next store is answered
    NOSCRIPT, and the node loads the script again and stores, instead of closing the link."""
    one, two = await two_nodes(LIMITS)
    await one.join("a", A)
    await two.join("b", B)
    await one.rooms.redis.script_flush()
    await one.send("a", Relay(1, Offer(SDP)))
    assert not one.closed
    async with asyncio.timeout(10):  # forwarded through pub/sub
        while not two.frames[two.cid("b")]:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert two.take("b") == [Deliver(A, 1, Offer(SDP))]
