"""NAT-PMP (RFC 6886) and PCP (RFC 6887) messages, byte for byte, with no sockets."""

from __future__ import annotations

import struct

import pytest

from nat.portmap import codec
from nat.portmap.errors import PortMapCodecError

NONCE = bytes(range(12))


def test_pmp_external_address_request_is_two_bytes():
    assert codec.pmp_external_address_request() == b"\x00\x00"  # RFC 6886 §3.2


def test_pmp_map_request_layout():
    # RFC 6886 §3.3: version, opcode (1 UDP / 2 TCP), reserved, internal, suggested, lifetime.
    assert codec.pmp_map_request("UDP", 3478, 3478, 7200) == struct.pack(
        "!BBHHHI", 0, 1, 0, 3478, 3478, 7200
    )
    assert codec.pmp_map_request("TCP", 8765, 0, 0)[1] == 2


def test_pmp_external_address_reply():
    reply = codec.parse_pmp(struct.pack("!BBHI", 0, 128, 0, 99) + bytes([198, 18, 0, 2]))
    assert reply == codec.PmpExternalAddress(0, 99, "198.18.0.2")


def test_pmp_map_reply():
    data = struct.pack("!BBHIHHI", 0, 129, 0, 5, 3478, 40000, 3600)
    assert codec.parse_pmp(data) == codec.PmpMapping("UDP", 0, 5, 3478, 40000, 3600)


def test_pmp_short_error_reply_is_understood():
    # §3.5: an error reply may carry only the first 8 bytes.
    reply = codec.parse_pmp(struct.pack("!BBHI", 0, 130, 2, 0))
    assert reply == codec.PmpMapping("TCP", 2, 0, 0, 0, 0)
    assert codec.pmp_reason(reply.result) == "refused: port mapping is turned off on the router"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x80", "NAT-PMP reply of 2 bytes is shorter than 8"),
        (struct.pack("!BBHI", 2, 128, 0, 0), "not a NAT-PMP reply: version 2"),
        (struct.pack("!BBHI", 0, 131, 0, 0), "unexpected NAT-PMP reply opcode 131"),
        (struct.pack("!BBHI", 0, 129, 0, 0), "NAT-PMP mapping reply is shorter than 16 bytes"),
    ],
)
def test_pmp_malformed_replies(data, message):
    with pytest.raises(PortMapCodecError) as info:
        codec.parse_pmp(data)
    assert str(info.value) == message


def test_pcp_map_request_layout():
    data = codec.pcp_map_request(
        nonce=NONCE,
        protocol="UDP",
        internal_port=3478,
        external_port=3478,
        client_ip="198.19.1.2",
        lifetime=3600,
    )
    assert len(data) == 60  # 24-byte header (§7.1) + 36-byte MAP payload (§11.1)
    assert data[:8] == struct.pack("!BBHI", 2, 1, 0, 3600)
    assert data[8:24] == bytes(10) + b"\xff\xff" + bytes([198, 19, 1, 2])  # IPv4-mapped
    assert data[24:36] == NONCE
    assert data[36:44] == struct.pack("!B3xHH", 17, 3478, 3478)
    assert data[44:60] == bytes(10) + b"\xff\xff" + bytes(4)  # "any IPv4" external address


def _pcp_response(result: int, *, payload: bool = True, nonce: bytes = NONCE) -> bytes:
    header = struct.pack("!BBBBII", 2, 0x81, 0, result, 120, 7) + bytes(12)
    if not payload:
        return header
    body = nonce + struct.pack("!B3xHH", 6, 8765, 8765) + bytes(10) + b"\xff\xff"
    return header + body + bytes([198, 18, 0, 2])


def test_pcp_map_response():
    reply = codec.parse_pcp(_pcp_response(0))
    assert reply == codec.PcpMapping(0, 120, 7, NONCE, "TCP", 8765, 8765, "198.18.0.2")


def test_pcp_error_without_payload():
    reply = codec.parse_pcp(_pcp_response(2, payload=False))
    assert reply.result == codec.PcpResult.NOT_AUTHORIZED
    assert codec.pcp_reason(reply.result).startswith("refused: port mapping is turned off")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (bytes(20), "PCP response of 20 bytes is shorter than 24"),
        (bytes(26), "PCP response length is not a multiple of 4 (RFC 6887 §7)"),
        (
            struct.pack("!BBBBII", 1, 0x81, 0, 0, 0, 0) + bytes(12),
            "not a PCP version 2 response: version 1",
        ),
        (
            struct.pack("!BBBBII", 2, 0x01, 0, 0, 0, 0) + bytes(12),
            "PCP message is a request, not a response (R bit clear)",
        ),
        (
            struct.pack("!BBBBII", 2, 0x82, 0, 0, 0, 0) + bytes(12),
            "unexpected PCP opcode 2 in a MAP response",
        ),
        (_pcp_response(0, payload=False), "PCP MAP response is shorter than 60 bytes"),
    ],
)
def test_pcp_malformed_responses(data, message):
    with pytest.raises(PortMapCodecError) as info:
        codec.parse_pcp(data)
    assert str(info.value) == message


def test_unknown_result_codes_are_named():
    assert codec.pcp_reason(99) == "answered with unknown PCP result code 99"
    assert codec.pmp_reason(42) == "answered with unknown NAT-PMP result code 42"


def test_version_byte_tells_pcp_from_natpmp():
    # RFC 6887 §9: a NAT-PMP-only server answers a PCP request with version 0.
    assert codec.reply_version(b"\x00\x81\x00\x01") == 0
    assert codec.reply_version(_pcp_response(0)) == 2
    assert codec.reply_version(b"") is None


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="12 bytes"):
        codec.pcp_map_request(
            nonce=b"x",
            protocol="UDP",
            internal_port=1,
            external_port=0,
            client_ip="::1",
            lifetime=0,
        )
    with pytest.raises(ValueError, match="out of range"):
        codec.pmp_map_request("UDP", 0, 0, 0)
