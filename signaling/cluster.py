"""Shared rooms on Redis/Valkey: several ``peercall signal --redis URL`` processes, one room set.

Each room is one Redis hash (``peercall:room:<name>``: a version and the room as text,
:func:`room_text`) with a TTL. For each frame a node loads the room, runs
the very same :class:`signaling.rooms.RoomTable` rules on it, and stores it back with a
compare-and-set on the version (a Lua script, atomic in Redis); on a conflict it reloads and
runs the rules again. So the rules (secrets, two seats, resume, seq order, acks, queue caps,
expiry) are those of one process, and the queues of unacked relays live in Redis: a node that
dies loses only its sockets. Its clients reconnect to any node and resume their seat with the
session token; the resume/ack protocol re-sends what is unacked, and receivers drop the
``(from, seq)`` pairs they have already delivered, so each message is delivered once.

A frame for a connection held by another node goes through Redis pub/sub: every node
subscribes to ``peercall:node:<id>``. Nodes announce themselves in the sorted set
``peercall:nodes`` (score: last heartbeat, ms); a seat whose connection sits on a node that
stopped beating is treated as dropped (its resume grace starts). Connections per address are
counted per node in ``peercall:ip:<address>`` and summed over live nodes, so the cap holds
across the cluster; the per-connection rate limit holds because a connection lives on one
node. What each address holds over every room (queued bytes, seats) is ``peercall:use:<address>``
and its wrong-secret record ``peercall:guess:<address>``: read before a join or relay, changed
by the same script that stores the room (so only when the room is stored, never twice after a
conflict), with a TTL. So the byte and seat caps and the per-address back-off hold over the
cluster; the per-room caps and back-off are in the room itself.

Client: redis-py's ``redis.asyncio`` (the reference client, kept by Redis Inc., speaks to
Valkey unchanged, typed) with its hiredis reply parser. The two paths every frame takes (the
store script, the node's channel) use one redis-py connection each directly, batched and
without per-read timeouts; everything else goes through the client's own commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import random
import secrets
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

import redis.asyncio as aioredis
from hiredis import pack_command
from redis.exceptions import NoScriptError, RedisError, ResponseError

from signaling.errors import SignalingError
from signaling.ratelimit import Backoff
from signaling.rooms import (
    Action,
    Close,
    Room,
    Send,
    room_from_dict,
    room_to_dict,
)
from signaling.ws_protocol import Join, Ping, Pong, Relay, encode_frame

if TYPE_CHECKING:
    from signaling.server import SignalingServer

logger = logging.getLogger(__name__)

PREFIX: Final = "peercall:"
BEAT: Final = 1.0  # seconds between a node's heartbeats
# A node silent this long has died; its seats start their grace. Generous: a busy node's beat
# may be late, and a false "dead" costs the peer a peer-left; a resume never waits for it.
DEAD_AFTER: Final = 10.0
_RETRIES: Final = 16
POOL_SIZE: Final = 16
_PONG: Final = encode_frame(Pong())
_VERSIONS: Final = random.Random()  # a version's tie-breaker (not a secret)
# What an address holds is kept this long after its last change. Longer than any room lives
# unchanged (a call's seat stays while its peers only ping); a count a dead cluster never took
# back (its rooms expired in Redis) heals after it.
_USAGE_TTL_MS: Final = 3600_000

# Compare-and-set of one room, and the frames it sends to other nodes, in one round trip.
# KEYS[1]: the room hash. ARGV: [1] the version this node's copy has ('0': no room), [2] the new
# text (room_text; '' deletes the room, '=' leaves it as it is), [3] TTL in ms, [4] the new
# version (random: a deleted and re-created room never matches a stale copy), [5] the
# per-address changes this event makes, as JSON ('' for none; applied only when the room is
# stored, so a rule run again after a conflict never counts twice), [6] the room's name, then
# a triple per node to tell: its channel, '1' if its copy of the room must be refreshed, and
# the frames for it (records joined by _RS). Each node gets ONE message once the room is
# stored: the new room first (the peer's answer to the frames must find the copy fresh), then
# the frames in the order the room made them. Returns {1} when stored, else
# {0, version, text} of the room as it is now, to run the rules again on.
# The per-address changes: ['u', key, bytes, seats, ttl_ms] adds to what an address holds over
# every room of the cluster; ['f', key, now, free, base, cap, forget] is a wrong secret from an
# address (signaling.ratelimit.Backoff.fail, in Lua so that two nodes' failures both count);
# ['ok', key] a right one, which starts the address's back-off over.
_STORE: Final = """
local cur = redis.call('HMGET', KEYS[1], 'v', 'd')
local v = cur[1] or '0'
if v ~= ARGV[1] then return {0, v, cur[2] or ''} end
if ARGV[2] == '' then
  if cur[1] then redis.call('DEL', KEYS[1]) end
elseif ARGV[2] ~= '=' then
  redis.call('HSET', KEYS[1], 'v', ARGV[4], 'd', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
if ARGV[5] ~= '' then
  for _, op in ipairs(cjson.decode(ARGV[5])) do
    local k = op[2]
    if op[1] == 'u' then
      local b = redis.call('HINCRBY', k, 'b', op[3])
      local n = redis.call('HINCRBY', k, 'n', op[4])
      if b <= 0 and n <= 0 then
        redis.call('DEL', k)
      else
        if b < 0 then redis.call('HSET', k, 'b', 0) end
        if n < 0 then redis.call('HSET', k, 'n', 0) end
        redis.call('PEXPIRE', k, op[5])
      end
    elseif op[1] == 'f' then
      local now, free, base, cap, forget = op[3], op[4], op[5], op[6], op[7]
      local rec = redis.call('HMGET', k, 'f', 'l')
      local f = tonumber(rec[1]) or 0
      if f > 0 and now - (tonumber(rec[2]) or 0) > forget then
        f = 0
        redis.call('HSET', k, 'u', '0')
      end
      f = f + 1
      redis.call('HSET', k, 'f', f, 'l', string.format('%.6f', now))
      if f > free then
        local delay = math.min(cap, base * 2 ^ math.min(f - free - 1, 30))
        redis.call('HSET', k, 'u', string.format('%.6f', now + delay))
      end
      redis.call('PEXPIRE', k, math.ceil((forget + cap) * 1000))
    else
      redis.call('DEL', k)
    end
  end
end
for i = 7, #ARGV, 3 do
  local message = ARGV[i + 2]
  if ARGV[i + 1] == '1' then
    local fresh = 'R' .. ARGV[6] .. '\\n' .. ARGV[4] .. '\\n' .. ARGV[2]
    if message == '' then message = fresh else message = fresh .. '\\30' .. message end
  end
  redis.call('PUBLISH', ARGV[i], message)
end
return {1}
"""


# A batch of store calls waits this long for Redis before its callers see a failure (one
# deadline per batch, not one per command: redis-py's per-read timeouts cost more than the read).
_BATCH_TIMEOUT: Final = 10.0


class _Batcher:
    """Automatic pipelining of the store script, on a connection of its own: every call made
    while a batch is in flight goes out with the next batch, in one write, and the replies are
    read in order (Redis answers a connection's commands in the order it sent them). redis-py's
    per-command path (pool checkout, retry wrapper, one write and one read wait per command)
    cost more CPU than the room rules and Redis together at a few hundred events/s, so the batch
    is packed by hiredis in C (redis-py's packer encodes each argument in Python) and read
    without a timeout per reply."""

    def __init__(self, pool: Any, script: str) -> None:
        self._pool = pool
        self._script = script
        self._sha = hashlib.sha1(script.encode()).hexdigest()
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._inflight: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._conn: Any = None

    async def call(self, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA of the script, batched with the calls around it."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((("EVALSHA", self._sha, len(keys), *keys, *args), future))
        self._wake.set()
        return await future

    async def run(self) -> None:
        self._conn = await self._pool.get_connection()
        self._conn.socket_timeout = None  # the batch has one deadline (_BATCH_TIMEOUT)
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                batch, self._pending = self._pending, []
                self._inflight = batch
                if batch:
                    await self._send(batch)
                self._inflight = []
        finally:
            for _, future in self._inflight + self._pending:
                if not future.done():
                    future.set_exception(RedisError("room store stopped"))
            await self._pool.release(self._conn)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        conn = self._conn
        again = []
        try:
            async with asyncio.timeout(_BATCH_TIMEOUT):
                await conn.send_packed_command(
                    b"".join([pack_command(command) for command, _ in batch]), check_health=False
                )
                for command, future in batch:
                    try:
                        reply = await conn.read_response(timeout=math.inf)
                    except ResponseError as exc:
                        # Redis restarted or its script cache was flushed: load it again.
                        # (redis-py raises NOSCRIPT replies as NoScriptError, its text without
                        # the "NOSCRIPT" prefix.)
                        if isinstance(exc, NoScriptError):
                            again.append((command, future))
                        elif not future.done():
                            future.set_exception(exc)
                        continue
                    if not future.done():
                        future.set_result(reply)
                if again:
                    await conn.send_command("SCRIPT", "LOAD", self._script)
                    await conn.read_response(timeout=math.inf)
                    self._pending[:0] = again
                    self._wake.set()
        except (RedisError, OSError, TimeoutError) as exc:
            # the connection is dropped (redis-py reconnects on the next send); every caller
            # of this batch sees the failure (its frame's connection is closed with 1011 and
            # the client resumes, so nothing is lost)
            with contextlib.suppress(Exception):
                await conn.disconnect()
            failure = exc if not isinstance(exc, TimeoutError) else RedisError("Redis timed out")
            for _, future in batch:
                if not future.done():
                    future.set_exception(failure)


# What a room looks like in Redis, and what nodes tell each other, are texts cut by control
# characters: JSON escapes every character below 0x20, so neither can occur in JSON text.
_COMPACT: Final = json.JSONEncoder(separators=(",", ":"))  # (json.dumps would build one per call)
_QS: Final = "\x1f"  # room_text: before each queued relay's frame text
_RS: Final = "\x1e"  # between the records of one pub/sub message


def room_text(room: Room) -> str:
    """``room`` as stored in Redis: its JSON (:func:`room_to_dict`) with each queued relay's
    text replaced by its index, then those texts, each after ``_QS``. A relay's text is JSON
    already (an encoded frame, kilobytes of SDP): kept out of the JSON string, it is neither
    escaped on every store nor unescaped on every load."""
    data = room_to_dict(room)
    texts: list[str] = []
    for queue in (data["orphans"], *(slot["inbox"] for slot in data["slots"])):
        for item in queue:
            texts.append(item[2])
            item[2] = len(texts) - 1
    return _COMPACT.encode(data) + "".join(_QS + t for t in texts)


def room_from_text(text: str) -> Room:
    """The inverse of :func:`room_text`."""
    head, *texts = text.split(_QS)
    data = json.loads(head)
    for queue in (data["orphans"], *(slot["inbox"] for slot in data["slots"])):
        for item in queue:
            item[2] = texts[item[2]]
    return room_from_dict(data)


@dataclass(slots=True)
class _Copy:
    """This node's last known copy of a room: its version, its JSON and the parsed room."""

    version: str
    text: str
    room: Room | None
    parsed: bool = True  # False: pushed by another node, ``room`` not built from ``text`` yet


def _counter(version: str) -> int:
    """The write counter in a version ``"<counter>:<random>"`` (``"0"``: no room)."""
    head = version.partition(":")[0]
    return int(head) if head.isdigit() else 0


class _RoomLock:
    """``async with``: the room's event lock on this node, then the frames other nodes sent to
    the room's connections meanwhile (deferred by the reader), then the lock is forgotten if
    nobody waits for it. A class, not a generator-based context manager: it is taken for every
    frame."""

    __slots__ = ("_lock", "_name", "_rooms")

    def __init__(self, rooms: RedisRooms, name: str) -> None:
        self._rooms = rooms
        self._name = name
        lock = rooms._locks.get(name)
        if lock is None:
            lock = rooms._locks[name] = asyncio.Lock()
        self._lock = lock

    async def __aenter__(self) -> None:
        try:
            await self._lock.acquire()
        except BaseException:
            self._forget()
            raise

    async def __aexit__(self, *exc: object) -> None:
        rooms = self._rooms
        try:
            for action in rooms._deferred.pop(self._name, ()):  # frames that came meanwhile
                rooms.server.deliver_local(action)
        finally:
            self._lock.release()
            self._forget()

    def _forget(self) -> None:
        lock = self._lock
        if not lock.locked() and not lock._waiters:
            self._rooms._locks.pop(self._name, None)


class RedisRooms:
    """The Redis backend of one :class:`SignalingServer` node (see the module docstring)."""

    def __init__(self, server: SignalingServer, url: str) -> None:
        self.server = server
        self.table = server.table
        self.url = url
        self.node = secrets.token_hex(5)
        try:
            # A bounded pool that makes callers wait: redis-py opens one connection per command
            # in flight, so a burst of events would open thousands (and hit "Too many
            # connections") where a few busy connections serve them faster.
            pool = aioredis.BlockingConnectionPool.from_url(
                url, max_connections=POOL_SIZE, timeout=30, decode_responses=True
            )
            self.redis: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        except ValueError as exc:
            raise SignalingError(f"invalid Redis URL {url!r}: {exc}") from None
        # A room stays while its peers ping (every heartbeat) and for the grace after that.
        self.room_ttl_ms = int((server.resume_grace + 2 * server.idle_timeout) * 1000)
        self._store: _Batcher | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._copies: dict[str, _Copy] = {}
        self._deferred: dict[str, list[Send | Close]] = {}  # frames held behind a room event
        self._touched: dict[str, float] = {}  # room -> when this node last refreshed its TTL
        self._me = self.node + "/"
        self._alive: set[str] = set()
        self._outbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._subscriber: Any = None  # the connection subscribed to this node's channel
        self.round_trips = 0  # Redis commands sent (for the benchmark's cost per message)
        self._stopping = False
        self.conflicts = 0  # compare-and-set failures (another node changed the room first)

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.redis.ping()
            await self.redis.script_load(_STORE)
            self._store = _Batcher(self.redis.connection_pool, _STORE)
            await self._beat()
            pool: Any = self.redis.connection_pool
            self._subscriber = await pool.get_connection()
            await self._subscriber.send_command("SUBSCRIBE", self._channel(self.node))
            # subscribed once this is read: frames for us arrive from now (RESP3 push replies)
            await self._subscriber.read_response(push_request=True)
        except (RedisError, OSError) as exc:
            await self.redis.aclose(close_connection_pool=True)
            raise SignalingError(f"cannot use Redis at {self.url}: {exc}") from None
        self._tasks = [
            asyncio.create_task(self._beat_loop(), name="redis heartbeat"),
            asyncio.create_task(self._read_loop(), name="redis subscriber"),
            asyncio.create_task(self._publish_loop(), name="redis publisher"),
            asyncio.create_task(self._store.run(), name="redis room store"),
        ]
        logger.info("shared rooms on %s as node %s", self.url, self.node)

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # redis-py may swallow a cancellation that lands inside a command; the loops then
            # see _stopping, and a loop that still hangs is not waited for beyond 2 s.
            await asyncio.wait(self._tasks, timeout=2.0)
        self._tasks = []
        with contextlib.suppress(RedisError, OSError):
            if self._subscriber is not None:
                await self._subscriber.disconnect()  # (a subscribed link is no pool's any more)
            await self.redis.zrem(PREFIX + "nodes", self.node)
        await self.redis.aclose(close_connection_pool=True)

    @staticmethod
    def _channel(node: str) -> str:
        return f"{PREFIX}node:{node}"

    async def _beat(self) -> None:
        now_ms = int(time.time() * 1000)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(PREFIX + "nodes", {self.node: now_ms})
        pipe.zremrangebyscore(PREFIX + "nodes", 0, now_ms - 3600_000)  # long-dead nodes
        pipe.zrangebyscore(PREFIX + "nodes", now_ms - int(DEAD_AFTER * 1000), "+inf")
        counts: dict[str, int] = {}
        for conn in self.table.conns.values():
            counts[conn.address] = counts.get(conn.address, 0) + 1
        for address, count in counts.items():  # re-assert ours: a missed decrement heals
            pipe.hset(f"{PREFIX}ip:{address}", self.node, count)
            pipe.expire(f"{PREFIX}ip:{address}", 3600)
        result = await pipe.execute()
        self._alive = set(result[2])

    async def _beat_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(BEAT)
            try:
                await self._beat()
            except (RedisError, OSError) as exc:
                logger.warning("Redis heartbeat failed: %s", exc)

    async def _alive_nodes(self, nodes: set[str]) -> set[str]:
        """Which of ``nodes`` still beat (asks Redis about those the cache does not know)."""
        unknown = nodes - self._alive - {self.node}
        if unknown:
            order = sorted(unknown)
            scores = await self.redis.zmscore(PREFIX + "nodes", order)
            self.round_trips += 1
            limit = (time.time() - DEAD_AFTER) * 1000
            for node, score in zip(order, scores, strict=True):
                if score is not None and score >= limit:
                    self._alive.add(node)
        return (nodes & self._alive) | (nodes & {self.node})

    # --- per-address connections across the cluster --------------------------------------

    async def connections_from(self, address: str, local: int) -> int:
        """Connections from ``address`` on every live node, ``local`` being ours."""
        counts = await self.redis.hgetall(f"{PREFIX}ip:{address}")
        self.round_trips += 1
        others = {str(node): int(n) for node, n in counts.items() if node != self.node}
        alive = await self._alive_nodes(set(others))
        return local + sum(n for node, n in others.items() if node in alive)

    async def connected(self, address: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(f"{PREFIX}ip:{address}", self.node, 1)
        pipe.expire(f"{PREFIX}ip:{address}", 3600)
        await pipe.execute()
        self.round_trips += 1

    async def released(self, address: str) -> None:
        await self.redis.hincrby(f"{PREFIX}ip:{address}", self.node, -1)
        self.round_trips += 1

    # --- rooms --------------------------------------------------------------------------

    def _room_lock(self, name: str) -> _RoomLock:
        """One event per room at a time on this node (other nodes are kept out by the CAS)."""
        return _RoomLock(self, name)

    def _detach_dead(self, room: Room, now: float, out: list[Action]) -> None:
        """Seats whose connection sits on a node that stopped beating have dropped."""
        for slot in room.slots:
            if slot.conn is not None:
                node = slot.conn.split("/", 1)[0]
                if node != self.node and node not in self._alive:
                    logger.info("node of %s in room %s is gone", slot.peer, room.name)
                    out += self.table.detach(room, slot, now)

    async def _address_state(
        self, address: str, guesses: bool
    ) -> tuple[tuple[int, int], Backoff | None]:
        """What ``address`` holds over the cluster (queued bytes, seats) and, with
        ``guesses``, its wrong-secret record: one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(PREFIX + "use:" + address, ["b", "n"])
        if guesses:
            pipe.hmget(PREFIX + "guess:" + address, ["f", "l", "u"])
        result = await pipe.execute()
        self.round_trips += 1
        b, n = result[0]
        record = None
        if guesses and result[1][0] is not None:
            f, last, until = result[1]
            record = Backoff(int(f), float(until or 0), float(last or 0))
        return (int(b or 0), int(n or 0)), record

    async def usage(self, address: str) -> tuple[int, int]:
        """(queued bytes, seats) that ``address`` holds over every room of the cluster."""
        return (await self._address_state(address, False))[0]

    def _address_ops(
        self,
        name: str,
        before: dict[str, tuple[int, int]],
        now: float,
        address: str | None,
        guesses: Backoff | None,
        wrong_before: int,
    ) -> str:
        """The per-address changes of the event just run (the store script's ARGV[5])."""
        table = self.table
        ops: list[list[Any]] = []
        if table.accounting:
            after = table.held_in(name)
            for a in before.keys() | after.keys():
                b0, n0 = before.get(a, (0, 0))
                b1, n1 = after.get(a, (0, 0))
                if b1 != b0 or n1 != n0:
                    ops.append(["u", PREFIX + "use:" + a, b1 - b0, n1 - n0, _USAGE_TTL_MS])
        if address is not None:
            lim = table.limits
            key = PREFIX + "guess:" + address
            if table.stats.wrong_secrets > wrong_before:
                base = lim.secret_backoff_base
                cap = lim.secret_backoff_cap_address
                ops.append(
                    ["f", key, now, lim.secret_free_per_address, base, cap, lim.secret_forget]
                )
            elif guesses is not None and table.guesses_of(address) is None:
                ops.append(["ok", key])
        return json.dumps(ops) if ops else ""

    async def _run_on_room(
        self,
        name: str,
        now: float,
        rule: Any,
        acting: str | None = None,
        address: str | None = None,
        totals: tuple[int, int] | None = None,
        guesses: Backoff | None = None,
    ) -> list[Action]:
        """Apply ``rule()`` (a RoomTable call) to room ``name`` and store the result with a
        compare-and-set; on a conflict (another node changed the room) run it again on the room
        as it is now. Starts from this node's cached copy, so an event usually costs one round
        trip. Returns the actions for this node's connections."""
        conns = self.table.conns
        copy = self._copies.get(name)
        if copy is not None and not copy.parsed:
            copy = self._copies[name] = self._parse(copy.version, copy.text)
        if copy is None:
            version, data = await self.redis.hmget(PREFIX + "room:" + name, ["v", "d"])
            self.round_trips += 1
            copy = self._parse(str(version or "0"), str(data or ""))
        for _ in range(_RETRIES):
            # The connections a rule may move in or out of the room: the acting one and the
            # local ones seated in it (a resume clears a replaced link). Restored on a conflict.
            involved = {acting} if acting is not None else set()
            if copy.room is not None:
                involved.update(
                    s.conn for s in copy.room.slots if s.conn and s.conn.startswith(self._me)
                )
            saved = {
                cid: (conns[cid], conns[cid].room, conns[cid].peer)
                for cid in involved
                if cid in conns
            }
            out: list[Action] = []
            room = copy.room
            if room is not None:
                unknown = {s.conn.split("/", 1)[0] for s in room.slots if s.conn is not None}
                if unknown - self._alive - {self.node}:
                    await self._alive_nodes(unknown)
                self._detach_dead(room, now, out)
                self.table.rooms[name] = room
            # the cluster-wide per-address figures this rule checks and changes
            table = self.table
            table.adopt(room, address, totals, replace(guesses) if guesses else None)
            held_before = dict(table.held_in(name))
            wrong_before = table.stats.wrong_secrets
            try:
                out += rule()
                after_room = self.table.rooms.get(name)
                ops = self._address_ops(name, held_before, now, address, guesses, wrong_before)
            except BaseException:
                self._copies.pop(name, None)  # the copy may be half-changed
                raise
            finally:
                self.table.forget_room(name)
            after = "" if after_room is None else room_text(after_room)
            local: list[Action] = []
            remote: dict[str, list[str]] = {}  # node -> records of the frames for it
            for action in out:
                if isinstance(action, Send | Close) and not action.conn.startswith(self._me):
                    node, record = self._record(action)
                    remote.setdefault(node, []).append(record)
                else:
                    local.append(action)
            changed = after != copy.text
            # (the random part tells a deleted and re-created room from the old one; no secret)
            new_version = f"{_counter(copy.version) + 1}:{_VERSIONS.getrandbits(32):08x}"
            stale: set[str] = set()
            if changed:  # keep the other nodes' copies fresh: their next event needs no read
                stale = {
                    s.conn.split("/", 1)[0]
                    for r in (room, after_room)
                    if r is not None
                    for s in r.slots
                    if s.conn is not None and not s.conn.startswith(self._me)
                }
            pushes: list[str] = []
            for node in stale | remote.keys():
                pushes += (
                    self._channel(node),
                    "1" if node in stale else "0",
                    _RS.join(remote.get(node, ())),
                )
            try:
                assert self._store is not None
                result = await self._store.call(
                    [PREFIX + "room:" + name],
                    [
                        copy.version,
                        after if changed else "=",
                        self.room_ttl_ms,
                        new_version,
                        ops,
                        name,
                        *pushes,
                    ],
                )
            except BaseException:
                self._copies.pop(name, None)  # changed in place but maybe not stored
                raise
            self.round_trips += 1
            if int(result[0]) == 1:
                if changed:
                    self._touched[name] = time.monotonic()
                if after_room is None:
                    self._copies.pop(name, None)
                elif (
                    _counter(self._copies[name].version if name in self._copies else "0")
                    < (_counter(new_version) if changed else _counter(copy.version))
                    or name not in self._copies
                ):
                    # (unless a newer push from the other node arrived meanwhile)
                    self._copies[name] = _Copy(new_version, after, after_room) if changed else copy
                return local
            self.conflicts += 1
            copy = self._parse(str(result[1]), str(result[2]))  # another node won: again
            for cid, (conn, room_name, peer) in saved.items():
                conns[cid] = conn  # (a disconnect removed it)
                conn.room, conn.peer = room_name, peer
        raise SignalingError(f"room {name} is too busy (gave up after {_RETRIES} tries)")

    def _refresh_copy(self, name: str, version: str, text: str) -> None:
        """Another node changed room ``name``: adopt its state unless ours is newer."""
        copy = self._copies.get(name)
        if copy is not None and _counter(copy.version) >= _counter(version):
            return
        if copy is None:
            return  # no copy: nobody here is in that room (or the next event reads it anyway)
        if not text:
            self._copies.pop(name, None)
        else:
            # parsed when an event needs it: of two pushes in a row (the peer's ack, then its
            # answer) only the last is ever read
            self._copies[name] = _Copy(version, text, None, parsed=False)

    @staticmethod
    def _parse(version: str, text: str) -> _Copy:
        return _Copy(version, text, room_from_text(text) if text else None)

    @staticmethod
    def _record(action: Send | Close) -> tuple[str, str]:
        """(the node holding the action's connection, the action as a pub/sub record)."""
        node = action.conn.split("/", 1)[0]
        if isinstance(action, Send):
            return node, f"S{action.conn}\n{action.text}"
        reason = "".join(c if c >= " " else " " for c in action.reason)  # (no record separator)
        return node, f"C{action.conn}\n{action.code}\n{reason}"

    def _forget_copy(self, name: str) -> None:
        """No connection of ours is in room ``name`` any more: drop the cached copy."""
        copy = self._copies.get(name)
        if copy is not None and not copy.parsed:
            copy = self._copies[name] = self._parse(copy.version, copy.text)
        if (
            copy is None
            or copy.room is None
            or not any(s.conn and s.conn.startswith(self._me) for s in copy.room.slots)
        ):
            self._copies.pop(name, None)
            self._touched.pop(name, None)

    async def handle(self, conn_id: str, raw: bytes, now: float) -> list[Action]:
        """One frame: parsed here, its room's rules run against Redis; the actions are
        performed before the room lock is released (so forwarded frames keep their order)."""
        table = self.table
        cut = table.take_token(conn_id, now)
        if cut is not None:
            return cut
        frame = table.parse(conn_id, raw)
        if isinstance(frame, list):
            return frame
        conn = table.conns.get(conn_id)
        if conn is None:
            return []
        name = table.room_for(conn_id, frame)
        if name is None:
            return table.dispatch(conn, frame, now)  # not joined: the core answers
        if isinstance(frame, Ping):  # keep the room alive; no need to load it
            # A ping every heartbeat from every client would cost a round trip each: refresh
            # the room's TTL only when a third of it has passed since this node last did.
            if time.monotonic() - self._touched.get(name, 0.0) > self.room_ttl_ms / 3000:
                self._touched[name] = time.monotonic()
                with contextlib.suppress(RedisError, OSError):
                    await self.redis.pexpire(PREFIX + "room:" + name, self.room_ttl_ms)
                    self.round_trips += 1
            return [Send(conn_id, _PONG)]
        address: str | None = None
        totals: tuple[int, int] | None = None
        guesses: Backoff | None = None
        try:
            if isinstance(frame, Join) or (isinstance(frame, Relay) and table.accounting):
                # the caps and back-off per address hold over the cluster: read them from Redis
                address = conn.address
                totals, guesses = await self._address_state(address, isinstance(frame, Join))
            async with self._room_lock(name):
                actions = await self._run_on_room(
                    name,
                    now,
                    lambda: table.dispatch(conn, frame, now),
                    conn_id,
                    address,
                    totals,
                    guesses,
                )
                self.server._run(actions)
        except (RedisError, OSError, SignalingError) as exc:
            logger.warning("room %s: %s", name, exc)
            return [Close(conn_id, 1011, "room store unavailable")]
        return []

    async def disconnect(self, conn_id: str, now: float) -> list[Action]:
        conn = self.table.conns.get(conn_id)
        if conn is None or conn.room is None:
            self.table.conns.pop(conn_id, None)
            return []
        name = conn.room
        async with self._room_lock(name):
            actions = await self._run_on_room(
                name, now, lambda: self.table.disconnect(conn_id, now), conn_id
            )
            self.server._run(actions)
            self._forget_copy(name)
        return []

    async def timer(self, room: str, peer: str, now: float) -> list[Action]:
        async with self._room_lock(room):
            actions = await self._run_on_room(
                room, now, lambda: self.table.on_timer(room, peer, now)
            )
            self.server._run(actions)
            self._forget_copy(room)
        return []

    # --- frames for other nodes ---------------------------------------------------------

    def forward(self, action: Send | Close) -> None:
        """Queue ``action`` for the node holding its connection (published in order)."""
        node, record = self._record(action)
        self._outbox.put_nowait((self._channel(node), record))

    async def _publish_loop(self) -> None:
        while not self._stopping:
            batch = [await self._outbox.get()]
            while not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            per_channel: dict[str, list[str]] = {}  # one message per node, records in order
            for channel, record in batch:
                per_channel.setdefault(channel, []).append(record)
            pipe = self.redis.pipeline(transaction=False)
            for channel, records in per_channel.items():
                pipe.publish(channel, _RS.join(records))
            try:
                await pipe.execute()
                self.round_trips += 1
            except (RedisError, OSError) as exc:
                logger.warning(
                    "Redis publish failed (%d frames; resumes re-send): %s", len(batch), exc
                )

    async def _read_loop(self) -> None:
        """The node's channel, read straight off its connection: redis-py's PubSub wraps each
        read in a retry, a health check and a timeout, which cost more than the message."""
        conn = self._subscriber
        assert conn is not None
        while not self._stopping:
            try:
                if not conn.is_connected:  # (lost: what was published meanwhile is gone;
                    await conn.connect()  # the resume/ack protocol re-sends it)
                    await conn.send_command("SUBSCRIBE", self._channel(self.node))
                reply = await conn.read_response(timeout=math.inf, push_request=True)
            except (RedisError, OSError) as exc:
                logger.warning("Redis subscription failed: %s; retrying", exc)
                with contextlib.suppress(Exception):
                    await conn.disconnect()
                await asyncio.sleep(BEAT)
                continue
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == "message":
                for record in str(reply[2]).split(_RS):
                    self._on_record(record)

    def _on_record(self, record: str) -> None:
        """One record another node sent: a fresh copy of a room, or a frame to deliver."""
        head, _, rest = record.partition("\n")
        kind, conn_id = head[:1], head[1:]
        if kind == "R":  # conn_id is a room name here
            # At once, even with an event of that room in flight here: waiting would hold up
            # every other room's frames behind it; the write counter keeps the newest.
            version, _, text = rest.partition("\n")
            self._refresh_copy(conn_id, version, text)
            return
        conn = self.table.conns.get(conn_id)
        action: Send | Close
        if kind == "S":
            action = Send(conn_id, rest)
        else:
            code, _, reason = rest.partition("\n")
            action = Close(conn_id, int(code), reason)
        room = conn.room if conn is not None else None
        lock = self._locks.get(room) if room else None
        if room and (room in self._deferred or (lock is not None and lock.locked())):
            # A local event of that room is in flight: deliver after it (it may send to
            # this connection first), without holding up the other rooms' frames.
            self._deferred.setdefault(room, []).append(action)
        else:
            self.server.deliver_local(action)
