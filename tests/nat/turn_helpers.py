"""A tiny TURN client for driving nat.server.TurnServer with plain bytes in tests.

It builds requests with the codec under test's Message class but signs them itself (HMAC over
the adjusted header, as RFC 8489 §14.5 words it), so a bug in the codec's own signing would
not hide a bug in the server's checking.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import struct
from collections.abc import Sequence
from typing import Any

from nat import stun
from nat.five_tuple import Address, FiveTuple, Transport
from nat.server import Action, CloseRelay, OpenRelay, SendToClient, TurnServer

UDP = Transport("udp", ("127.0.0.1", 3478))
TCP = Transport("tcp", ("127.0.0.1", 3478))

_tids = itertools.count(1)


def new_tid() -> bytes:
    return next(_tids).to_bytes(12, "big")


def sign(data: bytes, key: bytes) -> bytes:
    """Append MESSAGE-INTEGRITY computed independently of nat.stun."""
    body_len = len(data) - 20 + 24
    head = data[:2] + struct.pack(">H", body_len) + data[4:]
    mac = hmac.new(key, head, hashlib.sha1).digest()
    return head + struct.pack(">HH", 0x0008, 20) + mac


def key_for(username: str, realm: str, password: str) -> bytes:
    return hashlib.md5(f"{username}:{realm}:{password}".encode()).digest()


def request_bytes(
    method: int,
    attrs: Sequence[tuple[stun.Attr[Any], Any]],
    *,
    username: str,
    realm: str,
    key: bytes,
    nonce: bytes,
    tid: bytes | None = None,
    cls: int = stun.MsgClass.REQUEST,
) -> bytes:
    """A request with ``attrs``; with a ``nonce``, also USERNAME, REALM and NONCE and signed
    with ``key`` (RFC 8656 §9.2 long-term credentials); without one, unsigned."""
    msg = stun.Message(method, cls, tid or new_tid())
    for attr, value in attrs:
        msg.add(attr, value)
    if not nonce:
        return msg.encode()
    msg.add(stun.USERNAME, username)
    msg.add(stun.REALM, realm)
    msg.add(stun.NONCE, nonce)
    return sign(msg.encode(), key)


def only_response(actions: list[Action]) -> stun.Message:
    """The single STUN message sent back to the client among ``actions``."""
    sends = [a for a in actions if isinstance(a, SendToClient)]
    assert len(sends) == 1, actions
    return stun.parse_message(sends[0].data)


def error_code(msg: stun.Message) -> int | None:
    err = msg.get(stun.ERROR_CODE)
    return None if err is None else err.code


class Client:
    """One client five-tuple talking to a TurnServer core."""

    def __init__(
        self,
        server: TurnServer,
        source: Address = ("198.51.100.7", 40000),
        transport: Transport = UDP,
        username: str = "alice",
        password: str = "secret",
        realm: str | None = None,
    ) -> None:
        self.server = server
        self.source = source
        self.transport = transport
        self.username = username
        self.realm = realm or server.config.realm
        self.key = key_for(username, self.realm, password)
        self.nonce: bytes | None = None
        self.relay: Address = ("", 0)  # set by allocate()

    @property
    def five_tuple(self) -> FiveTuple:
        return FiveTuple.of(self.source, self.transport)

    def build(
        self,
        method: int,
        attrs: Sequence[tuple[stun.Attr[Any], Any]] = (),
        *,
        auth: bool = True,
        tid: bytes | None = None,
        cls: int = stun.MsgClass.REQUEST,
    ) -> bytes:
        return request_bytes(
            method,
            attrs,
            username=self.username,
            realm=self.realm,
            key=self.key,
            nonce=(self.nonce or b"none") if auth else b"",
            tid=tid,
            cls=cls,
        )

    def learn_nonce(self, now: float = 1000.0) -> bytes:
        """Send an unauthenticated Allocate and keep the NONCE of the 401."""
        raw = self.build(stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17)], auth=False)
        nonce = only_response(self.send(raw, now)).get(stun.NONCE)
        assert nonce is not None
        self.nonce = nonce
        return nonce

    def send(self, data: bytes, now: float) -> list[Action]:
        return self.server.handle(data, self.source, self.transport, now)

    def request(
        self,
        method: int,
        attrs: Sequence[tuple[stun.Attr[Any], Any]] = (),
        now: float = 1000.0,
        *,
        auth: bool = True,
        tid: bytes | None = None,
    ) -> list[Action]:
        """Send a request; on 401/438 pick up the nonce and retry once, like real clients."""
        actions = self.send(self.build(method, attrs, auth=auth, tid=tid), now)
        if auth:
            sends = [a for a in actions if isinstance(a, SendToClient)]
            if len(sends) == 1:
                msg = stun.parse_message(sends[0].data)
                if error_code(msg) in (401, 438) and msg.get(stun.NONCE) is not None:
                    self.nonce = msg.get(stun.NONCE)
                    actions = self.send(self.build(method, attrs, tid=tid), now)
        return actions

    def call(
        self,
        method: int,
        attrs: Sequence[tuple[stun.Attr[Any], Any]] = (),
        now: float = 1000.0,
    ) -> stun.Message:
        return only_response(self.request(method, attrs, now))

    def allocate(
        self,
        now: float = 1000.0,
        relay: Address = ("127.0.0.1", 50000),
        attrs: list[tuple[stun.Attr[Any], Any]] | None = None,
    ) -> stun.Message:
        """Allocate and complete the relay opening with ``relay``; returns the response."""
        actions = self.request(
            stun.Method.ALLOCATE,
            attrs if attrs is not None else [(stun.REQUESTED_TRANSPORT, 17)],
            now,
        )
        opens = [a for a in actions if isinstance(a, OpenRelay)]
        if not opens:
            return only_response(actions)
        response = only_response(self.server.relay_opened(opens[0].five_tuple, relay, None, now))
        self.relay = relay
        return response

    def permit(self, peer: Address, now: float = 1000.0) -> stun.Message:
        return self.call(stun.Method.CREATE_PERMISSION, [(stun.XOR_PEER_ADDRESS, peer)], now)

    def bind(self, number: int, peer: Address, now: float = 1000.0) -> stun.Message:
        return self.call(
            stun.Method.CHANNEL_BIND,
            [(stun.CHANNEL_NUMBER, number), (stun.XOR_PEER_ADDRESS, peer)],
            now,
        )

    def send_indication(self, peer: Address, data: bytes, now: float = 1000.0) -> list[Action]:
        raw = self.build(
            stun.Method.SEND,
            [(stun.XOR_PEER_ADDRESS, peer), (stun.DATA, data)],
            auth=False,
            cls=stun.MsgClass.INDICATION,
        )
        return self.send(raw, now)


def closes(actions: list[Action]) -> list[Address]:
    return [a.relay for a in actions if isinstance(a, CloseRelay)]
