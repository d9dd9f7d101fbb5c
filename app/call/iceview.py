"""The ICE view of a call as people read it: pure functions over candidate/pair snapshots."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from aioice import Candidate as IceCandidate

from app.events import CandidateInfo, SelectedPairChanged


def relay_transport(server: str | None) -> str:
    """How we reach a TURN server, from its URI (RFC 7065 §3.1): TLS, TCP or UDP."""
    if server is None:
        return "UDP"
    uri = server.lower()
    if uri.startswith("turns:"):
        return "TLS"
    if "transport=tcp" in uri:
        return "TCP"
    return "UDP"


def _end(c: CandidateInfo) -> str:
    host = f"[{c.address}]" if ":" in c.address else c.address
    return f"{host}:{c.port}"


def describe_path(selected: SelectedPairChanged) -> str:
    """One line: direct or whose relay (the TURN URI for ours), and over UDP/TCP/TLS."""
    local, remote = selected.pair.local, selected.pair.remote
    ends = f"{_end(local)} <-> {_end(remote)}"
    if local.type == "relay":
        via = local.server or "our TURN server"
        return f"via relay {via} (ours) over {relay_transport(local.server)}: {ends}"
    if remote.type == "relay":
        return f"via the other person's relay over {remote.protocol.upper()}: {ends}"
    return f"direct ({local.type} <-> {remote.type}) over {local.protocol.upper()}: {ends}"


class CandidateBook:
    """Every candidate of a call as the debug panel lists it, local and remote.

    Keyed by :attr:`CandidateInfo.key` (type, transport, address, port): on a public host the
    server-reflexive candidate has the host candidate's address and port, and keying by
    address:port alone made the srflx entry replace the host one.
    """

    def __init__(self) -> None:
        self._local: dict[tuple[str, str, str, int], CandidateInfo] = {}
        self._remote: dict[tuple[str, str, str, int], CandidateInfo] = {}

    def add(self, info: CandidateInfo) -> None:
        book = self._local if info.side == "local" else self._remote
        book[info.key] = info

    @property
    def local(self) -> list[CandidateInfo]:
        return list(self._local.values())

    @property
    def remote(self) -> list[CandidateInfo]:
        return list(self._remote.values())

    def known(self, info: CandidateInfo) -> CandidateInfo:
        """The recorded version of ``info`` (with its server, time, ...) if there is one."""
        book = self._local if info.side == "local" else self._remote
        return book.get(info.key, info)


def sdp_candidates(sdp: str) -> list[str]:
    """The ``a=candidate`` values of an SDP (without ``a=``), in order."""
    return [line[2:].strip() for line in sdp.splitlines() if line.startswith("a=candidate:")]


def candidate_info(
    c: IceCandidate, side: str, at: float, server: str | None = None
) -> CandidateInfo:
    """An aioice candidate as the debug panel lists it."""
    return CandidateInfo(
        side=side,  # type: ignore[arg-type]
        component=c.component,
        type=c.type,  # type: ignore[arg-type]
        foundation=c.foundation,
        protocol=c.transport.lower(),
        address=c.host,
        port=c.port,
        priority=c.priority,
        related_address=c.related_address,
        related_port=c.related_port,
        tcp_type=c.tcptype,
        at=at,
        server=server,
    )


def jsonable(value: Any) -> Any:
    """Events, candidates and options as JSON-ready data (for the debug export)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        out["event"] = type(value).__name__
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value
