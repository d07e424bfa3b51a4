"""Sound cards as PortAudio sees them: listing them, finding one by index or name, choosing
its input channels, and the error that names the ones there are.

Shared by every audio source (``live.audio.input.AudioInput`` records from one,
``live.audio.filesource.FileSource`` may play to one), so it imports none of them.
python-sounddevice is imported on first use: importing this needs no PortAudio (the
offline renderer never touches a sound card).
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence

__all__ = ["AudioDeviceError", "describe_audio_devices", "find_device", "import_sounddevice", "input_channels",
           "list_audio_devices"]


class AudioDeviceError(ValueError):
    """An audio device that cannot be used; the message lists the devices there are."""


def import_sounddevice():
    """The sounddevice module, imported on first use (see the module docstring); an
    AudioDeviceError saying what to install when it cannot be."""
    try:
        import sounddevice
    except ImportError as e:
        raise AudioDeviceError(f"python-sounddevice is not installed ({e}): pip install sounddevice") from None
    except OSError as e:  # sounddevice raises this when libportaudio is missing
        raise AudioDeviceError(f"PortAudio is not available ({e}): apt-get install libportaudio2") from None
    return sounddevice


def list_audio_devices() -> list[dict]:
    """Every PortAudio device: index, name, hostapi, inputs, outputs (max channels),
    default_samplerate, default_input, default_output (bools)."""
    sd = import_sounddevice()
    hostapis = sd.query_hostapis()
    defaults = {}
    for kind in ("input", "output"):
        try:
            defaults[kind] = sd.query_devices(kind=kind)["index"]
        except (sd.PortAudioError, ValueError, KeyError):  # no default of that kind
            defaults[kind] = None
    return [
        {
            "index": d["index"],
            "name": d["name"],
            "hostapi": hostapis[d["hostapi"]]["name"],
            "inputs": d["max_input_channels"],
            "outputs": d["max_output_channels"],
            "default_samplerate": d["default_samplerate"],
            "default_input": d["index"] == defaults["input"],
            "default_output": d["index"] == defaults["output"],
        }
        for d in sd.query_devices()
    ]


def describe_audio_devices() -> str:
    """A readable table of input and output devices for `netbend devices` (* = default)."""
    devices = list_audio_devices()
    lines = []
    for title, channels, default in (("Audio inputs", "inputs", "default_input"),
                                     ("Audio outputs", "outputs", "default_output")):
        lines.append(f"{title}:")
        found = [d for d in devices if d[channels] > 0]
        width = max((len(d["name"]) for d in found), default=0)
        for d in found:
            mark = "*" if d[default] else " "
            lines.append(f"  {mark} {d['index']:3d}  {d['name']:<{width}}  {d[channels]:3d} ch  "
                         f"{d['default_samplerate']:7.0f} Hz  {d['hostapi']}")
        if not found:
            lines.append("    (none: PortAudio sees no such device; is the sound server running?)")
    lines.append("(* = default)")
    return "\n".join(lines)


def _device_table(devices: list[dict], channels: str) -> str:
    if not devices:
        return "none (PortAudio sees no such device; is the sound server running?)"
    return "; ".join(f"{d['index']}: {d['name']} ({d[channels]} ch)" for d in devices)


def find_device(device: int | str | None, kind: str) -> dict:
    """The input or output device meant by None (default), an index or a name substring."""
    channels = "inputs" if kind == "input" else "outputs"
    devices = [d for d in list_audio_devices() if d[channels] > 0]
    allowed = f"available {kind}s: {_device_table(devices, channels)}"
    if device is None:
        for d in devices:
            if d[f"default_{kind}"]:
                return d
        raise AudioDeviceError(f"there is no default audio {kind} device; name one, {allowed}")
    if isinstance(device, str) and device.strip().isdigit():
        device = int(device)
    if isinstance(device, int) and not isinstance(device, bool):
        for d in devices:
            if d["index"] == device:
                return d
        raise AudioDeviceError(f"no audio {kind} device has index {device}; {allowed}")
    if not isinstance(device, str) or not device.strip():
        raise AudioDeviceError(f"an audio device is None, an index or a name, got {device!r}; {allowed}")
    wanted = device.strip().casefold()
    exact = [d for d in devices if d["name"].casefold() == wanted]
    matches = exact or [d for d in devices if wanted in d["name"].casefold()]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise AudioDeviceError(f"audio {kind} device {device!r} is ambiguous, it matches "
                               f"{_device_table(matches, channels)}; give the index or more of the name")
    raise AudioDeviceError(f"unknown audio {kind} device {device!r}; {allowed}")


def input_channels(channels: int | Sequence[int], info: dict) -> tuple[int, ...]:
    """A count n (channels 1..n) or explicit 1-based channels -> sorted 1-based tuple."""
    have = info["inputs"]
    where = f"{info['name']!r} has input channels 1..{have}"
    if isinstance(channels, numbers.Integral) and not isinstance(channels, bool):
        if not 1 <= channels <= have:
            raise AudioDeviceError(f"channels={channels}: {where}")
        return tuple(range(1, int(channels) + 1))
    try:
        chosen = [int(c) for c in channels]
    except (TypeError, ValueError):
        raise AudioDeviceError(f"channels must be a count or a list of 1-based channels, "
                               f"got {channels!r}; {where}") from None
    if not chosen or len(set(chosen)) != len(chosen) or any(not 1 <= c <= have for c in chosen):
        raise AudioDeviceError(f"channels={list(channels)}: need distinct channels, at least one; {where}")
    return tuple(sorted(chosen))
