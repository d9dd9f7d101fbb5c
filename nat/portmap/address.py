"""Where the gateway is, which local address faces it, and whether an address is public."""

from __future__ import annotations

import ipaddress
import socket
import struct
from pathlib import Path

# RFC 6598 §7: 100.64.0.0/10 is the shared address space of carrier-grade NATs.
CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
# RFC 1918 private space: a router whose external address is here sits behind another NAT.
RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


def default_gateway(route_file: Path = Path("/proc/net/route")) -> str | None:
    """The IPv4 default gateway from the kernel's routing table (Linux), or None."""
    try:
        lines = route_file.read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 4 or fields[1] != "00000000":
            continue
        flags = int(fields[3], 16)
        if not flags & 0x2:  # RTF_GATEWAY
            continue
        return socket.inet_ntoa(struct.pack("<L", int(fields[2], 16)))
    return None


def local_address_towards(host: str) -> str:
    """The local address the kernel would use to reach ``host`` (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((host, 9))
        address: str = sock.getsockname()[0]
        return address


def not_public_reason(address: str) -> str | None:
    """Why friends on the internet could not reach ``address``, or None if they could.

    Only the ranges a home router's WAN side really gets behind another NAT are flagged
    (carrier-grade NAT, RFC 1918, link-local, loopback, unspecified). Other special-purpose
    ranges are not: the NAT lab's "internet" is 198.18.0.0/24 (RFC 2544 benchmarking space).
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"the router's external address {address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in CGNAT:
        return (
            f"behind carrier-grade NAT: the router's external address {ip} is not public "
            "(ask your provider for a public IPv4 address, or use a relay on a public server)"
        )
    if isinstance(ip, ipaddress.IPv4Address) and any(ip in n for n in RFC1918):
        return (
            f"behind a second router: this router's external address {ip} is private "
            "(map the ports on the outer router too, or use a relay on a public server)"
        )
    if ip.is_unspecified or ip.is_loopback or ip.is_link_local:
        return f"the router reports no usable external address ({ip})"
    return None
