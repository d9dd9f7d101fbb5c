"""Video sources (test pattern, camera) and a sink that keeps the latest frame for a view.

The camera is read through PyAV's V4L2 input on a worker thread (decoding blocks), which hands
frames to the event loop through a two-frame queue that drops the oldest: a slow encoder or
view sees the newest picture, never a growing backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, VideoStreamTrack
from av import VideoFrame
from av.frame import Frame
from av.packet import Packet

from app.errors import DeviceNotFound, MediaError
from app.media.consumer import TrackConsumer

logger = logging.getLogger(__name__)

VIDEO_CLOCK_RATE = 90_000  # RTP video clock (RFC 3551 §5)
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)


# --- test pattern ---------------------------------------------------------------------------

# 75 % colour bars (white, yellow, cyan, green, magenta, red, blue, black) in BT.601 Y'CbCr.
_BARS_YUV = np.array(
    [
        (180, 128, 128),
        (162, 44, 142),
        (131, 156, 44),
        (112, 72, 58),
        (84, 184, 198),
        (65, 100, 212),
        (35, 212, 114),
        (16, 128, 128),
    ],
    dtype=np.uint8,
)

# 3x5 pixel glyphs for the clock, one string of 15 bits (row by row) per character.
_GLYPHS = {
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001001001001",
    "8": "111101111101111",
    "9": "111101111001111",
    ":": "000010000010000",
    ".": "000000000000010",
    " ": "000000000000000",
}


def _glyph_masks(scale: int) -> dict[str, npt.NDArray[np.bool_]]:
    masks = {}
    block = np.ones((scale, scale), dtype=np.uint8)
    for char, bits in _GLYPHS.items():
        small = np.array([int(b) for b in bits], dtype=np.uint8).reshape(5, 3)
        masks[char] = np.kron(small, block).astype(bool)
    return masks


class TestPatternTrack(VideoStreamTrack):
    """Moving colour bars with a wall clock (HH:MM:SS.mmm) and a frame counter, in yuv420p.

    Cheap enough for any machine: a frame is a rolled row of bars broadcast down the picture
    plus a few hundred glyph pixels, all numpy. The clock makes end-to-end video delay visible
    by eye (photograph both windows), the motion makes frozen video obvious.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        width: int = 640,
        height: int = 480,
        fps: float = 15.0,
        *,
        realtime: bool = True,
    ) -> None:
        super().__init__()
        if width < 64 or height < 48 or width % 2 or height % 2:
            raise MediaError(
                f"test pattern size must be even and at least 64x48, got {width}x{height}"
            )
        if not 1 <= fps <= 60:
            raise MediaError(f"test pattern rate must be 1..60 fps, got {fps}")
        self.width = width
        self.height = height
        self.fps = fps
        self.realtime = realtime
        self.frames = 0
        bar_index = np.arange(width) * len(_BARS_YUV) // width
        self._row_y = _BARS_YUV[bar_index, 0]
        self._row_u = _BARS_YUV[bar_index[::2], 1]
        self._row_v = _BARS_YUV[bar_index[::2], 2]
        self._scale = max(2, height // 80)
        self._glyphs = _glyph_masks(self._scale)
        self._t0: float | None = None

    def _text(self, y_plane: npt.NDArray[np.uint8], u: Any, v: Any, text: str, top: int) -> None:
        s = self._scale
        cell = 4 * s
        left = 2 * s
        width = min(len(text) * cell + 2 * s, self.width - left)
        height = 7 * s
        # Dark, colourless box behind the digits so they read on every bar.
        y_plane[top : top + height, left : left + width] = 16
        u[top // 2 : (top + height) // 2, left // 2 : (left + width) // 2] = 128
        v[top // 2 : (top + height) // 2, left // 2 : (left + width) // 2] = 128
        x = left + s
        for char in text:
            mask = self._glyphs.get(char)
            if mask is not None and x + 3 * s <= self.width:
                region = y_plane[top + s : top + 6 * s, x : x + 3 * s]
                region[mask] = 235
            x += cell

    def render(self, index: int, now: float) -> VideoFrame:
        """Frame number ``index`` showing wall-clock time ``now`` (``time.time()``)."""
        w, h = self.width, self.height
        shift = (index * 4) % w
        data = np.empty((h * 3 // 2, w), dtype=np.uint8)
        y_plane = data[:h]
        y_plane[:] = np.roll(self._row_y, shift)
        chroma = data[h:].reshape(h, w // 2)  # U then V, each h/2 rows of w/2
        u, v = chroma[: h // 2], chroma[h // 2 :]
        u[:] = np.roll(self._row_u, shift // 2)
        v[:] = np.roll(self._row_v, shift // 2)
        clock = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
        self._text(y_plane, u, v, clock, top=h // 2 - 8 * self._scale)
        self._text(y_plane, u, v, f"{index:08d}", top=h // 2 + self._scale)
        frame = VideoFrame.from_ndarray(data, format="yuv420p")
        return frame

    async def recv(self) -> Frame:
        if self.readyState != "live":
            raise MediaStreamError
        index = self.frames
        if self._t0 is None:
            self._t0 = time.monotonic()
        elif self.realtime:
            wait = self._t0 + index / self.fps - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        frame = self.render(index, time.time())
        frame.pts = round(index * VIDEO_CLOCK_RATE / self.fps)
        frame.time_base = VIDEO_TIME_BASE
        self.frames += 1
        return frame


# --- camera ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CameraInfo:
    """A V4L2 capture device node and the name the driver gives it."""

    index: int
    path: str
    name: str


def list_cameras(dev_dir: str | Path = "/dev") -> list[CameraInfo]:
    """Video4Linux devices present (``/dev/videoN``), with their driver names from sysfs."""
    cameras = []
    for node in sorted(Path(dev_dir).glob("video*")):
        suffix = node.name.removeprefix("video")
        if not suffix.isdigit():
            continue
        try:
            name = Path(f"/sys/class/video4linux/{node.name}/name").read_text().strip()
        except OSError:
            name = node.name
        cameras.append(CameraInfo(index=int(suffix), path=str(node), name=name))
    cameras.sort(key=lambda c: c.index)
    return cameras


def find_camera(spec: str | int | None) -> str:
    """The device path ``spec`` names: an index, a ``/dev/videoN`` path, or part of a name."""
    cameras = list_cameras()
    have = ", ".join(f"{c.path} ({c.name})" for c in cameras) or "none"
    if spec is None:
        if not cameras:
            raise DeviceNotFound("no camera found (have: none); the test pattern works without one")
        return cameras[0].path
    text = str(spec).strip()
    if text.isdigit():
        text = f"/dev/video{text}"
    for c in cameras:
        if text == c.path:
            return c.path
    matches = [c for c in cameras if text.casefold() in c.name.casefold()]
    if len(matches) == 1:
        return matches[0].path
    raise DeviceNotFound(f"no camera matches '{spec}' (have: {have})")


class CameraTrack(VideoStreamTrack):
    """Live video from a V4L2 camera through PyAV, re-timestamped on the 90 kHz RTP clock.

    ``device`` is an index, a path or part of the camera's name (see :func:`find_camera`); it
    is resolved in the constructor so a missing camera fails before a call starts. The device
    opens on :meth:`start` or the first :meth:`recv`. ``input_format`` and ``source`` exist for
    other FFmpeg inputs (``lavfi`` in tests); normally leave them alone.
    """

    def __init__(
        self,
        device: str | int | None = None,
        *,
        width: int = 640,
        height: int = 480,
        fps: int = 30,
        input_format: str = "v4l2",
        source: str | None = None,
    ) -> None:
        super().__init__()
        self.path = source if source is not None else find_camera(device)
        self.input_format = input_format
        self.options = {"video_size": f"{width}x{height}", "framerate": str(fps)}
        if input_format != "v4l2":
            self.options = {}
        self.frames = 0
        self.dropped = 0
        self._queue: asyncio.Queue[VideoFrame | BaseException | None] = asyncio.Queue(maxsize=2)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._container: Any = None
        self._thread: threading.Thread | None = None
        self._quit = threading.Event()
        self._t0: float | None = None
        self._opening: asyncio.Lock | None = None

    def is_open(self) -> bool:
        return self._thread is not None

    async def start(self) -> None:
        """Open the device and start the reader thread (idempotent)."""
        if self.is_open() or self.readyState != "live":
            return
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self.is_open():
                return
            self._loop = asyncio.get_running_loop()
            self._container = await asyncio.to_thread(self._open)
            self._thread = threading.Thread(
                target=self._read, name=f"camera {self.path}", daemon=True
            )
            self._thread.start()

    def _open(self) -> Any:
        try:
            return av.open(self.path, format=self.input_format, options=self.options)
        except (av.FFmpegError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise MediaError(f"cannot open camera '{self.path}': {reason}") from None

    def _read(self) -> None:
        """Reader thread: decode frames and pass them to the loop until told to quit."""
        container = self._container
        outcome: BaseException | None = None
        try:
            for frame in container.decode(video=0):
                if self._quit.is_set():
                    break
                self._post(frame)
        except Exception as exc:
            if not self._quit.is_set():
                logger.warning("camera %s: %s", self.path, exc)
                outcome = MediaError(f"camera '{self.path}' stopped: {exc}")
        finally:
            container.close()
            self._post(outcome)

    def _post(self, item: VideoFrame | BaseException | None) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(self._deliver, item)

    def _deliver(self, item: VideoFrame | BaseException | None) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(item)

    async def recv(self) -> Frame:
        if self.readyState != "live":
            raise MediaStreamError
        await self.start()
        item = await self._queue.get()
        if item is None or self.readyState != "live":
            raise MediaStreamError
        if isinstance(item, BaseException):
            raise item
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        item.pts = round((now - self._t0) * VIDEO_CLOCK_RATE)
        item.time_base = VIDEO_TIME_BASE
        self.frames += 1
        return item

    def stop(self) -> None:
        super().stop()
        self._quit.set()  # the reader thread exits after its current frame
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)  # wake a pending recv()


# --- sink -----------------------------------------------------------------------------------


class LatestFrameSink(TrackConsumer):
    """Keeps the newest frame of a video track for a view to paint, and counts frames.

    Conversion to RGB happens only when :meth:`latest_rgb` is asked (a view painting at 30 Hz
    need not pay for frames it never shows). ``on_frame`` is called on the event loop with
    every frame, e.g. to schedule a repaint.
    """

    def __init__(self, on_frame: Callable[[VideoFrame], None] | None = None) -> None:
        super().__init__()
        self.on_frame = on_frame
        self._latest: VideoFrame | None = None
        self._rgb: npt.NDArray[np.uint8] | None = None

    def handle(self, frame: Frame | Packet[Any]) -> None:
        if not isinstance(frame, VideoFrame):
            raise MediaError(f"LatestFrameSink shows video, got {type(frame).__name__}")
        self._latest = frame
        self._rgb = None
        if self.on_frame is not None:
            self.on_frame(frame)

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) of the latest frame."""
        f = self._latest
        return None if f is None else (f.width, f.height)

    def latest_rgb(self) -> npt.NDArray[np.uint8] | None:
        """The newest frame as a (height, width, 3) uint8 RGB array, or None before the first."""
        if self._latest is None:
            return None
        if self._rgb is None:
            self._rgb = np.asarray(self._latest.to_ndarray(format="rgb24"), dtype=np.uint8)
        return self._rgb
