"""Device lookup and format checks against real PortAudio devices on the virtual sound card."""

from __future__ import annotations

import pytest

from app.errors import DeviceConfigError, DeviceNotFound
from app.media import devices
from app.media.audio import MicrophoneTrack, SpeakerSink
from tests.audio import VirtualAudio


def index_of(name: str) -> int:
    return next(d.index for d in devices.list_audio_devices() if d.name == name)


@pytest.mark.audio
def test_the_pulse_device_is_listed_with_its_capabilities(virtual_audio: VirtualAudio) -> None:
    pulse = next(d for d in devices.list_audio_devices() if d.name == "pulse")
    assert pulse.hostapi == "ALSA"
    assert pulse.supports("input")
    assert pulse.supports("output")
    assert pulse.default_samplerate > 0
    assert sum(d.is_default_input for d in devices.list_audio_devices()) == 1


@pytest.mark.parametrize("spec", ["pulse", "PULSE", " Pulse ", "puls"])
@pytest.mark.audio
def test_names_match_case_insensitively_and_by_substring(
    virtual_audio: VirtualAudio, spec: str
) -> None:
    assert devices.find_device(spec, "input") == index_of("pulse")
    assert devices.find_device(spec, "output") == index_of("pulse")


@pytest.mark.audio
def test_indices_match_as_int_or_digits(virtual_audio: VirtualAudio) -> None:
    pulse = index_of("pulse")
    assert devices.find_device(pulse, "input") == pulse
    assert devices.find_device(str(pulse), "output") == pulse


@pytest.mark.audio
def test_none_is_the_default_device(virtual_audio: VirtualAudio) -> None:
    default = next(d for d in devices.list_audio_devices() if d.is_default_output)
    assert devices.find_device(None, "output") == default.index


@pytest.mark.audio
def test_unknown_name_is_one_line_naming_what_exists(virtual_audio: VirtualAudio) -> None:
    with pytest.raises(DeviceNotFound) as exc:
        devices.find_device("foo", "input")
    assert str(exc.value) == "no input device matches 'foo' (have: pulse, default)"


@pytest.mark.audio
def test_unknown_index_is_one_line(virtual_audio: VirtualAudio) -> None:
    with pytest.raises(DeviceNotFound) as exc:
        devices.find_device(99, "output")
    message = str(exc.value)
    assert message.startswith("no output device has index 99 (have: ")
    assert "pulse" in message
    assert "\n" not in message


@pytest.mark.audio
def test_ambiguous_substring_asks_for_more(virtual_audio: VirtualAudio) -> None:
    with pytest.raises(DeviceNotFound) as exc:
        devices.find_device("u", "input")  # in both "pulse" and "default"
    assert str(exc.value) == (
        "input device name 'u' is ambiguous (matches: pulse, default); "
        "give more of the name or the index"
    )


@pytest.mark.audio
def test_our_format_is_accepted(virtual_audio: VirtualAudio) -> None:
    devices.check_format(index_of("pulse"), "input")
    devices.check_format(index_of("pulse"), "output")


@pytest.mark.parametrize("kind", ["input", "output"])
@pytest.mark.audio
def test_an_impossible_rate_is_refused_in_one_line(
    virtual_audio: VirtualAudio, kind: devices.Kind
) -> None:
    with pytest.raises(DeviceConfigError) as exc:
        devices.check_format(index_of("pulse"), kind, rate=1_234_567)
    message = str(exc.value)
    assert message.startswith(f"{kind} device 'pulse' refused 1234567 Hz mono: ")
    assert "Invalid sample rate" in message
    assert "PaErrorCode" not in message
    assert "\n" not in message


@pytest.mark.audio
def test_tracks_check_the_device_in_their_constructor(virtual_audio: VirtualAudio) -> None:
    with pytest.raises(DeviceNotFound, match="no output device matches 'hdmi'"):
        SpeakerSink("hdmi")
    with pytest.raises(DeviceNotFound, match="no input device has index 42"):
        MicrophoneTrack(42)


def test_no_device_at_all_says_what_to_use_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with no sound card and no sound server (pure lookup logic, devices stubbed)."""
    monkeypatch.setattr(devices, "list_audio_devices", list)
    with pytest.raises(DeviceNotFound) as exc:
        devices.find_device(None, "input")
    assert str(exc.value) == (
        "no input device found (have: none); is a sound server running? "
        "A synthetic source or sink (tone, silence, WAV file) works without one"
    )
