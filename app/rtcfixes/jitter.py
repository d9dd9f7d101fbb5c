"""An audio jitter buffer that never ratchets latency up (package docstring, item 2)."""

from __future__ import annotations

import logging

from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add

logger = logging.getLogger(__name__)


class AudioJitterBuffer(JitterBuffer):
    """A jitter buffer for single-packet audio frames (Opus) that never ratchets latency up.

    Each packet is one frame, so a frame is ready as soon as it is next in sequence. A missing
    packet is given up on once ``skip_after`` packets are waiting behind it (it is lost, or too
    late to matter). aiortc hands one frame to the decoder per packet received, so frames queued
    behind a hole would otherwise stay queued for the rest of the call: when the backlog never fell
    below ``slack + 1`` frames during the last ``shed_after`` packets, its oldest frames are
    dropped down to ``slack``, and more than ``max_depth`` waiting frames are never kept.
    ``slack`` frames are kept only while packets are actually being reordered (one filled a
    hole in this window or the one before), so steady reordering of neighbours costs nothing;
    after plain loss the backlog is shed to zero, or latency would stay ``slack`` frames above
    its steady value for the rest of the call. A 20 ms glitch now and then is far better than
    extra delay for good.
    """

    def __init__(
        self,
        capacity: int = 16,
        skip_after: int = 3,
        max_depth: int = 6,
        shed_after: int = 25,
        slack: int = 1,
    ) -> None:
        super().__init__(capacity=capacity, prefetch=0)
        self._skip_after = skip_after
        self._max_depth = max_depth
        self._shed_after = shed_after
        self._slack = slack
        self._window_len = 0
        self._window_min = capacity
        self._newest: int | None = None  # highest sequence number received
        self._reordered = False  # a packet filled a hole during this window
        self._reordered_before = False  # … or during the previous one
        self.skipped = 0  # holes given up on
        self.dropped = 0  # frames discarded to cut delay

    def _count(self) -> int:
        return sum(1 for p in self._packets if p is not None)

    def _head(self) -> RtpPacket | None:
        assert self._origin is not None
        return self._packets[self._origin % self._capacity]

    def _advance_to_next_present(self) -> None:
        for _ in range(self._capacity):
            if self._head() is not None:
                return
            self.remove(1)

    def _drop_oldest(self) -> None:
        self._advance_to_next_present()
        self.remove(1)
        self.dropped += 1

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        seq = packet.sequence_number
        if self._origin is None:
            self._origin = seq
        delta = uint16_add(seq, -self._origin)
        if delta >= 0x8000:  # behind what was already played
            if uint16_add(self._origin, -seq) <= 100:
                return False, None  # a late packet: its moment has passed
            self.remove(self._capacity)  # far behind: the sender restarted its sequence
            self._origin = seq
            self._newest = None
        elif delta >= self._capacity:
            self.remove(self._capacity)  # far ahead: everything buffered is stale
            self._origin = seq
            self._newest = None
        if self._newest is None or 0 < uint16_add(seq, -self._newest) < 0x8000:
            self._newest = seq
        elif seq != self._newest:
            self._reordered = True  # older than the newest yet still in time: it filled a hole
        self._packets[seq % self._capacity] = packet

        count = self._count()
        if self._head() is None and (count >= self._skip_after or count > self._max_depth):
            self._advance_to_next_present()
            self.skipped += 1
        while count > self._max_depth:
            self._drop_oldest()
            count -= 1
        head = self._head()
        if head is None:
            return False, None
        self.remove(1)
        count -= 1
        self._window_min = min(self._window_min, count)
        self._window_len += 1
        if self._window_len >= self._shed_after:
            keep = self._slack if (self._reordered or self._reordered_before) else 0
            for _ in range(self._window_min - keep):  # the backlog that stood all window
                self._drop_oldest()
            self._window_len, self._window_min = 0, self._capacity
            self._reordered_before, self._reordered = self._reordered, False
        return False, JitterFrame(data=head._data, timestamp=head.timestamp)  # type: ignore[attr-defined]


def install_audio_jitter_buffers(pc: RTCPeerConnection) -> int:
    """Swap aiortc's audio jitter buffer for :class:`AudioJitterBuffer` on every audio receiver."""
    count = 0
    for transceiver in pc.getTransceivers():
        receiver: RTCRtpReceiver = transceiver.receiver
        if transceiver.kind != "audio":
            continue
        current = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
        if not isinstance(current, AudioJitterBuffer):
            receiver._RTCRtpReceiver__jitter_buffer = AudioJitterBuffer()  # type: ignore[attr-defined]
            count += 1
    return count
