"""The short authentication string (SAS) both people read aloud to rule out a man in the middle."""

from __future__ import annotations

import hashlib


def short_auth_string(fingerprint_a: str, fingerprint_b: str) -> str:
    """Six digits both ends derive from the two DTLS fingerprints, in either order.

    A man in the middle must present his own certificate to each side, so the fingerprints
    (and the digits) differ between the two ends; reading them aloud exposes him (the idea of
    ZRTP's SAS, RFC 6189 §7).
    """
    a, b = sorted(f.strip().upper() for f in (fingerprint_a, fingerprint_b))
    digest = hashlib.sha256(f"peercall-sas|{a}|{b}".encode()).digest()
    number = int.from_bytes(digest[:4], "big") % 1_000_000
    return f"{number // 1000:03d} {number % 1000:03d}"


def sdp_fingerprint(sdp: str) -> str | None:
    """The first ``a=fingerprint`` value (RFC 8122 §5) of an SDP, as ``algorithm value``."""
    for line in sdp.splitlines():
        if line.startswith("a=fingerprint:"):
            return line[len("a=fingerprint:") :].strip()
    return None
