"""describe_path: the one-line path a person reads (no sockets)."""

from __future__ import annotations

import pytest

from app.call.iceview import describe_path, relay_transport
from app.events import CandidateInfo, CandidatePairInfo, SelectedPairChanged


def candidate(side: str, kind: str, address: str, port: int, **extra: object) -> CandidateInfo:
    return CandidateInfo(side, 1, kind, "1", "udp", address, port, 1, **extra)  # type: ignore[arg-type]


def selected(local: CandidateInfo, remote: CandidateInfo) -> SelectedPairChanged:
    relayed = "relay" in (local.type, remote.type)
    return SelectedPairChanged(CandidatePairInfo(local, remote, "succeeded"), relayed, 0.0)


@pytest.mark.parametrize(
    ("uri", "transport"),
    [
        ("turn:r.example:3478?transport=udp", "UDP"),
        ("turn:r.example:3478", "UDP"),
        ("turn:r.example:3478?transport=tcp", "TCP"),
        ("turns:r.example:5349?transport=tcp", "TLS"),
    ],
)
def test_relay_transport_comes_from_the_uri(uri: str, transport: str) -> None:
    assert relay_transport(uri) == transport


def test_our_relay_is_named_with_its_uri_and_transport() -> None:
    uri = "turn:198.18.0.3:3478?transport=tcp"
    line = describe_path(
        selected(
            candidate("local", "relay", "198.18.0.3", 50000, server=uri),
            candidate("remote", "srflx", "198.18.0.9", 4000),
        )
    )
    assert line == f"via relay {uri} (ours) over TCP: 198.18.0.3:50000 <-> 198.18.0.9:4000"


def test_their_relay_and_direct_paths() -> None:
    theirs = describe_path(
        selected(candidate("local", "host", "10.0.0.2", 1), candidate("remote", "relay", "::1", 2))
    )
    assert theirs == "via the other person's relay over UDP: 10.0.0.2:1 <-> [::1]:2"
    direct = describe_path(
        selected(
            candidate("local", "host", "127.0.0.1", 1), candidate("remote", "host", "127.0.0.1", 2)
        )
    )
    assert direct == "direct (host <-> host) over UDP: 127.0.0.1:1 <-> 127.0.0.1:2"


def test_a_public_hosts_srflx_does_not_replace_its_host_candidate() -> None:
    from app.call.iceview import CandidateBook

    book = CandidateBook()
    host = candidate("local", "host", "198.18.0.5", 4000)
    srflx = candidate("local", "srflx", "198.18.0.5", 4000, server="stun:198.18.0.1:3478")
    book.add(host)
    book.add(srflx)
    assert [c.type for c in book.local] == ["host", "srflx"]
    # A pair's bare host candidate is shown with what was recorded for it.
    assert book.known(candidate("local", "srflx", "198.18.0.5", 4000)).server == (
        "stun:198.18.0.1:3478"
    )
    assert book.known(candidate("remote", "host", "198.18.0.9", 1)).address == "198.18.0.9"
