"""Audio devices as PortAudio (through sounddevice) sees them: listing, lookup and format checks.

Every failure becomes an :mod:`app.errors` exception with a one-line message that names the
device, so ``peercall call --mic foo`` ends with ``peercall: error: no input device matches
'foo' (have: pulse, default)`` instead of a traceback. sounddevice is imported lazily because
importing it loads libportaudio, which may be missing (``libportaudio2`` not installed).
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any, Literal

from app.errors import DeviceConfigError, DeviceNotFound, MediaError
from app.media.base import AUDIO_CHANNELS, AUDIO_RATE

logger = logging.getLogger(__name__)

Kind = Literal["input", "output"]


@dataclass(frozen=True)
class AudioDevice:
    """One PortAudio device, with the fields ``peercall devices`` prints."""

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float
    is_default_input: bool
    is_default_output: bool

    def supports(self, kind: Kind) -> bool:
        """Whether the device can capture (``input``) or play (``output``)."""
        channels = self.max_input_channels if kind == "input" else self.max_output_channels
        return channels > 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sounddevice() -> ModuleType:
    """The sounddevice module, or a :class:`MediaError` if PortAudio cannot be loaded."""
    try:
        import sounddevice as sd
    except OSError as exc:  # sounddevice raises OSError('PortAudio library not found')
        raise MediaError(
            f"audio is unavailable: {exc} (install libportaudio2, "
            "or use a synthetic source such as a tone or a WAV file)"
        ) from None
    module: ModuleType = sd
    return module


def portaudio_message(exc: BaseException) -> str:
    """A PortAudioError's text without the ``[PaErrorCode -9997]`` suffix, on one line."""
    text = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    text = re.sub(r"\s*\[PaErrorCode -?\d+\]", "", text)
    return " ".join(text.split())


def refresh() -> None:
    """Re-scan devices by restarting PortAudio.

    PortAudio enumerates devices once, when it is initialised: a device that appears later (a
    USB headset, or a PulseAudio server started after import, which is what makes the ALSA
    ``pulse`` device usable) is invisible until this runs. No stream may be open meanwhile.
    """
    sd = sounddevice()
    try:
        sd._terminate()
    finally:
        sd._initialize()


def list_audio_devices() -> list[AudioDevice]:
    """Every device PortAudio knows, in index order."""
    sd = sounddevice()
    try:
        raw = sd.query_devices()
        hostapis = sd.query_hostapis()
    except sd.PortAudioError as exc:
        raise MediaError(f"cannot list audio devices: {portaudio_message(exc)}") from None
    default_in, default_out = _default_indices(sd)
    devices = []
    for info in raw:
        index = int(info["index"])
        devices.append(
            AudioDevice(
                index=index,
                name=str(info["name"]),
                hostapi=str(hostapis[info["hostapi"]]["name"]),
                max_input_channels=int(info["max_input_channels"]),
                max_output_channels=int(info["max_output_channels"]),
                default_samplerate=float(info["default_samplerate"]),
                is_default_input=index == default_in,
                is_default_output=index == default_out,
            )
        )
    return devices


def _default_indices(sd: ModuleType) -> tuple[int, int]:
    """PortAudio's default input and output device indices (-1 when there is none)."""
    pair = sd.default.device
    result = []
    for kind, value in zip(("input", "output"), pair, strict=True):
        if isinstance(value, int):
            result.append(value)
            continue
        try:  # a name set by someone else on sd.default: resolve it the way sounddevice does
            result.append(int(sd.query_devices(value, kind)["index"]))
        except (ValueError, sd.PortAudioError):
            result.append(-1)
    return result[0], result[1]


def _names(devices: list[AudioDevice]) -> str:
    return ", ".join(d.name for d in devices) if devices else "none"


def find_device(spec: str | int | None, kind: Kind) -> int:
    """The index of the ``kind`` device that ``spec`` names.

    ``spec`` is an index (int, or a string of digits), a case-insensitive name (an exact match
    wins, otherwise a unique substring match), or ``None`` for PortAudio's default device.
    Raises :class:`DeviceNotFound` naming what was asked for and what exists.
    """
    candidates = [d for d in list_audio_devices() if d.supports(kind)]
    if spec is None:
        for d in candidates:
            if d.is_default_input if kind == "input" else d.is_default_output:
                return d.index
        if candidates:
            return candidates[0].index
        raise DeviceNotFound(
            f"no {kind} device found (have: none); is a sound server running? "
            "A synthetic source or sink (tone, silence, WAV file) works without one"
        )
    if isinstance(spec, int) or spec.strip().isdigit():
        index = int(spec)
        for d in candidates:
            if d.index == index:
                return index
        have = ", ".join(f"{d.index} {d.name}" for d in candidates) or "none"
        raise DeviceNotFound(f"no {kind} device has index {index} (have: {have})")
    wanted = spec.strip().casefold()
    exact = [d for d in candidates if d.name.casefold() == wanted]
    if exact:
        return exact[0].index
    partial = [d for d in candidates if wanted in d.name.casefold()]
    if len(partial) == 1:
        return partial[0].index
    if len(partial) > 1:
        raise DeviceNotFound(
            f"{kind} device name '{spec}' is ambiguous (matches: {_names(partial)}); "
            "give more of the name or the index"
        )
    raise DeviceNotFound(f"no {kind} device matches '{spec}' (have: {_names(candidates)})")


def device_name(index: int) -> str:
    """The name of device ``index`` (for messages); the index itself if it cannot be queried."""
    sd = sounddevice()
    try:
        return str(sd.query_devices(index)["name"])
    except (ValueError, sd.PortAudioError):
        return str(index)


def check_format(
    index: int,
    kind: Kind,
    rate: int = AUDIO_RATE,
    channels: int = AUDIO_CHANNELS,
    dtype: str = "int16",
) -> None:
    """Raise :class:`DeviceConfigError` unless device ``index`` accepts this stream format."""
    sd = sounddevice()
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        check(device=index, channels=channels, dtype=dtype, samplerate=rate)
    except (sd.PortAudioError, ValueError) as exc:
        layout = {1: "mono", 2: "stereo"}.get(channels, f"{channels} channels")
        raise DeviceConfigError(
            f"{kind} device '{device_name(index)}' refused {rate} Hz {layout}: "
            f"{portaudio_message(exc)}"
        ) from None


def open_device(
    spec: str | int | None,
    kind: Kind,
    rate: int = AUDIO_RATE,
    channels: int = AUDIO_CHANNELS,
) -> tuple[int, int]:
    """Look a device up and agree a stream format: ``(index, channels)`` to open it with.

    Mono is what we want; a device that refuses mono but takes stereo (raw ``hw:`` ALSA
    devices often do) is opened in stereo and the streams mix down/duplicate in their
    callbacks. Any other refusal (notably the rate) is a :class:`DeviceConfigError`.
    """
    index = find_device(spec, kind)
    try:
        check_format(index, kind, rate, channels)
    except DeviceConfigError:
        if channels != 1:
            raise
        try:
            check_format(index, kind, rate, 2)
        except DeviceConfigError:
            pass
        else:
            logger.info("%s device %s refuses mono: using stereo", kind, device_name(index))
            return index, 2
        raise
    logger.debug("%s device %r -> %d (%s)", kind, spec, index, device_name(index))
    return index, channels
