"""What `netbend live` is asked to do: ``LiveOptions``, checked when it is made.

Every field is checked in ``__post_init__`` without touching a file, a device or a model,
so a wrong option fails before the model loads, with one message naming the flag and what
it allows. "Off" is spelled None, never a magic number: ``osc_port=None`` runs without
OSC (and so without OSCQuery), ``audio_file``/``audio_device`` None with ``no_audio`` runs
without audio. The one exception is the OSCQuery port, whose 0 means off as issue 12 and
the OSCQuery tools spell it (None there means "the OSC port + 10").
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

__all__ = ["LiveOptions", "parse_host_port"]


@dataclass
class LiveOptions:
    preset: str = "default"
    model: Optional[str] = None
    device: Optional[str] = None  # torch device
    size: Optional[tuple[int, int]] = None
    audio_device: Optional[str] = None
    audio_file: Optional[Path] = None
    play: bool = False  # with --audio-file: also play it to the speakers
    channels: Optional[str] = None  # "1" or "1,2": 1-based input channels, mixed to mono
    gain_db: float = 0.0  # input gain: the source applies it and the starting ShowState reports it
    gate_db: Optional[float] = -70.0  # noise gate of a line-in (dBFS); None: no gate
    osc_host: str = "127.0.0.1"
    osc_port: Optional[int] = 9000  # None: no OSC (and no OSCQuery); 0: any free port
    osc_allow: list[str] = field(default_factory=list)
    osc_feedback: Optional[tuple[str, int]] = None
    features_hz: float = 30.0
    headless: bool = False
    duration: Optional[float] = None  # None: until stopped (or the replayed take ends)
    fullscreen: bool = False
    monitor: Optional[str] = None
    record: Optional[Path] = None
    record_audio: bool = False  # also write the input audio into the take
    replay: Optional[Path] = None
    slots: list[str] = field(default_factory=list)  # empty: live.show.app.default_slots()
    allow_pickle: bool = False
    no_audio: bool = False
    backend: str = "auto"  # how the U-Net runs (engine.pipeline_base.PIPELINE_BACKENDS)
    oscquery_port: Optional[int] = None  # None: the OSC port + 10; 0: no OSCQuery
    link: bool = False  # join an Ableton Link session
    tempo: float = 120.0  # BPM until tapped, set, or Link says otherwise
    quantize: str = "off"  # off | beat | bar: when preset loads and prompts take effect
    outputs: Optional[object] = None  # a live.outputs.options.OutputOptions: NDI, recording, output size …

    def __post_init__(self) -> None:
        """Checks that need no file, device or model: a wrong option fails at once, named."""
        self._check_audio()
        self._check_osc()
        if self.duration is not None and not _positive(self.duration):
            raise ValueError(f"--duration must be > 0 seconds, got {self.duration}")
        if not isinstance(self.preset, str) or not self.preset.strip():
            raise ValueError(f"--preset must be a preset name or .toml path, got {self.preset!r}")
        if not all(isinstance(s, str) and s.strip() for s in self.slots):
            raise ValueError(f"--slots must be preset names separated by commas, got {self.slots!r}")
        self._check_show()

    def _check_audio(self) -> None:
        from live.control.state import GAIN_DB

        if self.audio_device is not None and self.audio_file is not None:
            raise ValueError("give --audio-device or --audio-file, not both")
        if self.no_audio and (self.audio_device is not None or self.audio_file is not None):
            raise ValueError("--no-audio takes no --audio-device or --audio-file")
        if self.play and self.audio_file is None:
            raise ValueError("--play plays an --audio-file to the speakers; give one")
        if self.channels is not None:
            self.channel_list()
        if not _number(self.gain_db) or not GAIN_DB[0] <= self.gain_db <= GAIN_DB[1]:
            raise ValueError(f"--gain must be {GAIN_DB[0]:g}..{GAIN_DB[1]:g} dB, got {self.gain_db!r}")
        if self.gate_db is not None and not (_number(self.gate_db) and self.gate_db <= 0):
            raise ValueError(f"--gate must be a level in dBFS (<= 0), got {self.gate_db!r}")

    def _check_osc(self) -> None:
        if self.osc_port is not None and not _port(self.osc_port, 0):
            raise ValueError(f"--osc-port must be a UDP port 0..65535 (0: any free port), got {self.osc_port!r}; "
                             "no OSC: --no-osc")
        if self.oscquery_port is not None and not _port(self.oscquery_port, 0):
            raise ValueError(f"--oscquery-port must be a TCP port 1..65535, or 0 for no OSCQuery, "
                             f"got {self.oscquery_port!r}")
        if self.osc_feedback is not None and not (
                isinstance(self.osc_feedback, tuple) and len(self.osc_feedback) == 2
                and isinstance(self.osc_feedback[0], str) and self.osc_feedback[0] and _port(self.osc_feedback[1], 1)):
            raise ValueError(f"--osc-feedback must be (host, port 1..65535), got {self.osc_feedback!r}; "
                             "on the command line HOST:PORT")
        if not _positive(self.features_hz):
            raise ValueError(f"--features-hz must be > 0, got {self.features_hz}")

    def _check_show(self) -> None:
        from live.checks import FRAME_SIZE, check_backend
        from live.control.state import QUANTIZE
        from live.control.tempo import check_bpm

        self.size = FRAME_SIZE.check(self.size, "--size")
        check_backend(self.backend)
        check_bpm(self.tempo, "--tempo")
        if self.quantize not in QUANTIZE:
            raise ValueError(f"--quantize must be one of {', '.join(QUANTIZE)}, got {self.quantize!r}")
        from live.outputs.options import OutputOptions

        if self.outputs is not None and not isinstance(self.outputs, OutputOptions):
            raise ValueError(f"outputs must be a live.outputs.options.OutputOptions or None, got {self.outputs!r}")

    def channel_list(self) -> Optional[list[int]]:
        """--channels as 1-based channel numbers; None: the device's first."""
        if self.channels is None:
            return None
        try:
            chosen = [int(c) for c in str(self.channels).split(",")]
        except ValueError:
            chosen = []
        if not chosen or any(c < 1 for c in chosen):
            raise ValueError(f"--channels must be 1-based input channels separated by commas, e.g. 1 or 1,2; "
                             f"got {self.channels!r}")
        return chosen


def parse_host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad address {text!r}; write HOST:PORT, e.g. 127.0.0.1:9001")
    return host, int(port)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive(value) -> bool:
    return _number(value) and value > 0


def _port(value, lowest: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lowest <= value <= 65535
