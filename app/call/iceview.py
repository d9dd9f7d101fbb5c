"""The ICE view of a call as people read it: pure functions over candidate/pair snapshots."""

from __future__ import annotations

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
