"""Give freed heap back to the system after a call (glibc only; elsewhere a no-op).

A call allocates and frees tens of MB natively (codecs, DTLS/SRTP, frame buffers). glibc keeps
freed chunks in its arenas, so the window's RSS crept up call after call although nothing
was kept (tests/ui/test_memory.py checks that). ``malloc_trim(0)`` (glibc malloc(3)) returns
free pages at the top of the heap and, since glibc 2.8, free whole pages inside it too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

logger = logging.getLogger(__name__)

_trim: object = None  # the resolved malloc_trim, False when unavailable


def release_free_memory() -> bool:
    """True if freed memory was offered back to the system."""
    global _trim
    if _trim is None:
        _trim = False
        if sys.platform.startswith("linux"):
            try:
                _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
            except (OSError, AttributeError):  # musl and others have no malloc_trim
                logger.debug("malloc_trim not available")
    if _trim is False:
        return False
    _trim(0)  # type: ignore[operator]
    return True
