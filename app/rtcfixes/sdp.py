"""SDP rewrites aiortc needs around trickle ICE."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def strip_end_of_candidates(sdp: str) -> str:
    """Remove ``a=end-of-candidates`` (RFC 8840 §4.1) while candidates are still to be trickled.

    aiortc marks gathering complete as soon as our replacement returns with host candidates;
    the peer must not take that as the last word.
    """
    lines = sdp.split("\r\n")
    return "\r\n".join(line for line in lines if line != "a=end-of-candidates")
