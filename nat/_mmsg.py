"""Batched UDP receive and send for the relay's hot path, when available.

:mod:`nat._mmsg_ext` (C, built by setup.py as an optional extension) wraps recvmmsg(2) and
sendmmsg(2): one system call per burst of datagrams instead of one per datagram, which is most
of what a relayed datagram costs the kernel side (issue 14). It does I/O only; the TURN rules
stay in :mod:`nat.server`.

``recv_batch``, ``send_batch`` and ``send_routed`` are ``None`` when the extension was not
built (no compiler at install time, not Linux) or when ``PEERCALL_NO_MMSG`` is set to a
non-empty value other than ``0`` (to measure or debug the pure-Python path); :mod:`nat.service`
then reads and sends one datagram per call as before.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["recv_batch", "send_batch", "send_routed"]

_Address = tuple[str, int]
recv_batch: Callable[[int, int, int], list[tuple[bytes, _Address]]] | None = None
send_batch: Callable[[int, list[tuple[bytes, _Address]]], int] | None = None
send_routed: Callable[[dict[_Address, int], list[tuple[_Address, _Address, bytes]]], int] | None
send_routed = None

if os.environ.get("PEERCALL_NO_MMSG", "") in ("", "0"):
    try:
        from nat import _mmsg_ext
    except ImportError:
        pass
    else:
        recv_batch = _mmsg_ext.recv_batch
        send_batch = _mmsg_ext.send_batch
        send_routed = _mmsg_ext.send_routed
