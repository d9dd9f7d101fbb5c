"""NAT-PMP (RFC 6886) and PCP (RFC 6887) messages as bytes in, dataclasses out: no sockets.

No maintained Python library speaks NAT-PMP/PCP on asyncio (``nat-pmp``/``py-natpmp`` are
blocking and unmaintained), and both protocols are a few fixed-layout UDP messages, so this
module is the codec and :mod:`nat.portmap.pmp` the thin asyncio shell around it (the split of
``nat/stun.py`` and ``nat/service.py``). Malformed replies raise :class:`PortMapCodecError`.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from nat.portmap.errors import PortMapCodecError

SERVER_PORT: Final = 5351  # RFC 6886 §3.1 and RFC 6887 §19.1: the gateway listens here
PMP_VERSION: Final = 0  # RFC 6886 §3.2
PCP_VERSION: Final = 2  # RFC 6887 §7 (version 1 was never deployed)
PCP_OPCODE_MAP: Final = 1  # RFC 6887 §19.2
PROTOCOL_NUMBERS: Final = {"UDP": 17, "TCP": 6}  # IANA protocol numbers (PCP MAP, §11.1)
PMP_OPCODES: Final = {"UDP": 1, "TCP": 2}  # RFC 6886 §3.3


class PmpResult(IntEnum):
    """NAT-PMP result codes (RFC 6886 §3.5)."""

    SUCCESS = 0
    UNSUPPORTED_VERSION = 1
    NOT_AUTHORIZED = 2  # "Not Authorized/Refused (e.g., box supports mapping, but user has
    # turned feature off)"
    NETWORK_FAILURE = 3  # e.g. the NAT has not obtained a DHCP lease yet
    OUT_OF_RESOURCES = 4
    UNSUPPORTED_OPCODE = 5


class PcpResult(IntEnum):
    """PCP result codes (RFC 6887 §7.4)."""

    SUCCESS = 0
    UNSUPP_VERSION = 1
    NOT_AUTHORIZED = 2
    MALFORMED_REQUEST = 3
    UNSUPP_OPCODE = 4
    UNSUPP_OPTION = 5
    MALFORMED_OPTION = 6
    NETWORK_FAILURE = 7
    NO_RESOURCES = 8
    UNSUPP_PROTOCOL = 9
    USER_EX_QUOTA = 10
    CANNOT_PROVIDE_EXTERNAL = 11
    ADDRESS_MISMATCH = 12
    EXCESSIVE_REMOTE_PEERS = 13


_PMP_REASONS: Final = {
    PmpResult.UNSUPPORTED_VERSION: "does not speak this NAT-PMP version",
    PmpResult.NOT_AUTHORIZED: "refused: port mapping is turned off on the router",
    PmpResult.NETWORK_FAILURE: "has no working internet connection (network failure)",
    PmpResult.OUT_OF_RESOURCES: "is out of mappings (out of resources)",
    PmpResult.UNSUPPORTED_OPCODE: "does not support this request",
}
_PCP_REASONS: Final = {
    PcpResult.UNSUPP_VERSION: "does not speak PCP version 2",
    PcpResult.NOT_AUTHORIZED: "refused: port mapping is turned off or not allowed for this address",
    PcpResult.MALFORMED_REQUEST: "rejected the request as malformed",
    PcpResult.UNSUPP_OPCODE: "does not support MAP",
    PcpResult.UNSUPP_OPTION: "does not support an option we sent",
    PcpResult.MALFORMED_OPTION: "rejected an option as malformed",
    PcpResult.NETWORK_FAILURE: "has no working internet connection (network failure)",
    PcpResult.NO_RESOURCES: "is out of mappings (no resources)",
    PcpResult.UNSUPP_PROTOCOL: "does not map this protocol",
    PcpResult.USER_EX_QUOTA: "refused: this computer's mapping quota is used up",
    PcpResult.CANNOT_PROVIDE_EXTERNAL: "cannot give the requested external port",
    PcpResult.ADDRESS_MISMATCH: "sees another source address (another NAT in between?)",
    PcpResult.EXCESSIVE_REMOTE_PEERS: "refused: too many remote peers",
}


def pmp_reason(code: int) -> str:
    """What a NAT-PMP result code means, as the end of "the router …"."""
    try:
        return _PMP_REASONS[PmpResult(code)]
    except (ValueError, KeyError):
        return f"answered with unknown NAT-PMP result code {code}"


def pcp_reason(code: int) -> str:
    """What a PCP result code means, as the end of "the router …"."""
    try:
        return _PCP_REASONS[PcpResult(code)]
    except (ValueError, KeyError):
        return f"answered with unknown PCP result code {code}"


# --- NAT-PMP (RFC 6886) -------------------------------------------------------------------


def pmp_external_address_request() -> bytes:
    """RFC 6886 §3.2: version 0, opcode 0, nothing else."""
    return struct.pack("!BB", PMP_VERSION, 0)


def pmp_map_request(protocol: str, internal_port: int, external_port: int, lifetime: int) -> bytes:
    """RFC 6886 §3.3: map ``internal_port``; lifetime 0 with external port 0 deletes (§3.4)."""
    _check_port(internal_port, allow_zero=False)
    _check_port(external_port, allow_zero=True)
    return struct.pack(
        "!BBHHHI",
        PMP_VERSION,
        PMP_OPCODES[protocol],
        0,  # reserved, MUST be zero
        internal_port,
        external_port,
        lifetime,
    )


@dataclass(frozen=True)
class PmpExternalAddress:
    """RFC 6886 §3.2 reply: the gateway's external IPv4 address."""

    result: int
    epoch: int
    external_ip: str


@dataclass(frozen=True)
class PmpMapping:
    """RFC 6886 §3.3 reply: the mapping the gateway made (or the error in ``result``)."""

    protocol: str
    result: int
    epoch: int
    internal_port: int
    external_port: int
    lifetime: int


def parse_pmp(data: bytes) -> PmpExternalAddress | PmpMapping:
    """Decode a NAT-PMP reply (opcode 128 + request opcode, RFC 6886 §3.2-3.3).

    An error reply may stop after the epoch (8 bytes, §3.5: "the first 8 bytes of the
    response"); its address or ports are then reported as empty/zero.
    """
    if len(data) < 8:
        raise PortMapCodecError(f"NAT-PMP reply of {len(data)} bytes is shorter than 8")
    version, opcode, result, epoch = struct.unpack_from("!BBHI", data)
    if version != PMP_VERSION:
        raise PortMapCodecError(f"not a NAT-PMP reply: version {version}")
    if opcode == 128:
        if result != PmpResult.SUCCESS and len(data) < 12:
            return PmpExternalAddress(result, epoch, "")
        if len(data) < 12:
            raise PortMapCodecError("NAT-PMP external address reply is shorter than 12 bytes")
        return PmpExternalAddress(result, epoch, str(ipaddress.IPv4Address(data[8:12])))
    protocols = {128 + op: name for name, op in PMP_OPCODES.items()}
    if opcode not in protocols:
        raise PortMapCodecError(f"unexpected NAT-PMP reply opcode {opcode}")
    if len(data) < 16:
        if result != PmpResult.SUCCESS:
            return PmpMapping(protocols[opcode], result, epoch, 0, 0, 0)
        raise PortMapCodecError("NAT-PMP mapping reply is shorter than 16 bytes")
    internal, external, lifetime = struct.unpack_from("!HHI", data, 8)
    return PmpMapping(protocols[opcode], result, epoch, internal, external, lifetime)


# --- PCP (RFC 6887) -----------------------------------------------------------------------


def _ip16(address: str) -> bytes:
    """RFC 6887 §5: addresses are 128 bits; IPv4 goes as an IPv4-mapped IPv6 address."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(f"::ffff:{ip}").packed
    return ip.packed


def _from_ip16(raw: bytes) -> str:
    ip = ipaddress.IPv6Address(raw)
    return str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip)


def pcp_map_request(
    *,
    nonce: bytes,
    protocol: str,
    internal_port: int,
    external_port: int,
    client_ip: str,
    lifetime: int,
    external_ip: str = "0.0.0.0",
) -> bytes:
    """A PCP MAP request (RFC 6887 §7.1 header + §11.1 opcode payload).

    ``nonce`` (12 random bytes) must be the same on renewals and the delete of one mapping
    (§11.1: the server uses it to tell the mapping's owner). Lifetime 0 deletes (§15). The
    suggested external address 0.0.0.0 (as ::ffff:0.0.0.0) means "any IPv4" (§11.1).
    """
    if len(nonce) != 12:
        raise ValueError("a PCP mapping nonce is 12 bytes")
    _check_port(internal_port, allow_zero=False)
    _check_port(external_port, allow_zero=True)
    header = struct.pack("!BBHI", PCP_VERSION, PCP_OPCODE_MAP, 0, lifetime) + _ip16(client_ip)
    payload = (
        nonce
        + struct.pack("!B3xHH", PROTOCOL_NUMBERS[protocol], internal_port, external_port)
        + _ip16(external_ip)
    )
    return header + payload


@dataclass(frozen=True)
class PcpMapping:
    """A PCP MAP response (RFC 6887 §7.2 + §11.1), or the error in ``result``."""

    result: int
    lifetime: int
    epoch: int
    nonce: bytes = b""
    protocol: str = ""
    internal_port: int = 0
    external_port: int = 0
    external_ip: str = ""


_PCP_HEADER: Final = 24
_PCP_MAP_PAYLOAD: Final = 36


def parse_pcp(data: bytes) -> PcpMapping:
    """Decode a PCP response to MAP. Error responses may carry no payload (§7.2)."""
    if len(data) < _PCP_HEADER:
        raise PortMapCodecError(f"PCP response of {len(data)} bytes is shorter than 24")
    if len(data) % 4:
        raise PortMapCodecError("PCP response length is not a multiple of 4 (RFC 6887 §7)")
    version, r_opcode, _reserved, result, lifetime, epoch = struct.unpack_from("!BBBBII", data)
    if version != PCP_VERSION:
        raise PortMapCodecError(f"not a PCP version 2 response: version {version}")
    if not r_opcode & 0x80:
        raise PortMapCodecError("PCP message is a request, not a response (R bit clear)")
    if r_opcode & 0x7F != PCP_OPCODE_MAP:
        raise PortMapCodecError(f"unexpected PCP opcode {r_opcode & 0x7F} in a MAP response")
    if len(data) < _PCP_HEADER + _PCP_MAP_PAYLOAD:
        if result != PcpResult.SUCCESS:
            return PcpMapping(result, lifetime, epoch)
        raise PortMapCodecError("PCP MAP response is shorter than 60 bytes")
    body = data[_PCP_HEADER : _PCP_HEADER + _PCP_MAP_PAYLOAD]
    nonce = body[:12]
    number, internal, external = struct.unpack_from("!B3xHH", body, 12)
    names = {v: k for k, v in PROTOCOL_NUMBERS.items()}
    return PcpMapping(
        result,
        lifetime,
        epoch,
        nonce=nonce,
        protocol=names.get(number, str(number)),
        internal_port=internal,
        external_port=external,
        external_ip=_from_ip16(body[20:36]),
    )


def reply_version(data: bytes) -> int | None:
    """The version byte of a reply from port 5351: 0 is NAT-PMP, 2 is PCP (RFC 6887 §9)."""
    return data[0] if data else None


def _check_port(port: int, *, allow_zero: bool) -> None:
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise ValueError(f"port {port} is out of range")
