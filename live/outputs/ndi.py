"""NDI out through cyndilib (it ships the NDI runtime in its wheels): ``--ndi NAME``.

The picture goes out as an NDI source named NAME (receivers list it as "HOST (NAME)")
at the output size, with the show's output frame rate in its header and, with
``--ndi-audio``, the input audio alongside. Frames are sent as the render thread makes
them (``clock_video`` off: the show is the clock, NDI must not pace it). NDI compresses
every frame (SpeedHQ), so a receiver gets the picture within a few levels, not bit-exact.

Discovery goes by the NDI config (``$NDI_CONFIG_DIR/ndi-config.v1.json``, else ~/.ndi):
on a machine whose multicast is filtered, list the receivers' addresses there.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Optional

import numpy as np

from live.outputs.audio_tap import AudioTap
from live.outputs.output import Output, OutputError, import_for

__all__ = ["NdiOutput"]

AUDIO_CHUNK = 4800  # samples per NDI audio frame at most (0.1 s at 48 kHz)


class NdiOutput(Output):
    name = "ndi"

    def __init__(self, source_name: str, *, audio=None, groups: str = ""):
        source_name = str(source_name).strip()
        if not source_name or any(c in source_name for c in "()\n\\"):
            raise OutputError(f"--ndi {source_name!r}: an NDI source name must be non-empty, without "
                              "parentheses, backslashes or newlines (receivers show it as 'HOST (NAME)')")
        self.source_name, self.groups = source_name, groups
        self.audio = AudioTap(audio) if audio is not None else None
        self._sender = None
        self._rgbx: Optional[np.ndarray] = None

    def describe(self) -> str:
        return f"NDI source {self.source_name!r}" + (" with the input audio" if self.audio else "")

    def open(self, size: tuple[int, int], fps: float) -> None:
        ndi = import_for("--ndi", "cyndilib", brings=", which brings the NDI runtime")
        w, h = size
        sender = ndi.Sender(self.source_name, ndi_groups=self.groups, clock_video=False, clock_audio=False)
        video = ndi.VideoSendFrame()
        video.set_resolution(w, h)
        video.set_frame_rate(Fraction(fps).limit_denominator(1001))
        video.set_fourcc(ndi.FourCC.RGBX)
        sender.set_video_frame(video)
        if self.audio is not None:
            audio = ndi.AudioSendFrame(AUDIO_CHUNK)
            audio.sample_rate = self.audio.sample_rate
            audio.num_channels = 1
            sender.set_audio_frame(audio)
        try:
            sender.open()
        except Exception as e:  # noqa: BLE001 - cyndilib raises plain exceptions from the runtime
            raise OutputError(f"--ndi {self.source_name!r}: the NDI sender did not start ({type(e).__name__}: {e})") \
                from None
        self._sender = sender
        self._rgbx = np.full((h, w, 4), 255, np.uint8)  # (H, W, RGBX); X stays opaque
        if self.audio is not None:
            self.audio.start()

    def send(self, picture: np.ndarray, frame) -> None:
        self._rgbx[..., :3] = picture
        if not self._sender.write_video(self._rgbx.reshape(-1)):
            raise RuntimeError("the NDI sender is not running")
        self._send_audio()

    def tick(self, now: float) -> None:
        if self._sender is not None:
            self._send_audio()

    def _send_audio(self) -> None:
        if self.audio is None:
            return
        samples = self.audio.read()
        for i in range(0, len(samples), AUDIO_CHUNK):
            self._sender.write_audio(np.ascontiguousarray(samples[None, i:i + AUDIO_CHUNK]))  # (1, n) planar

    @property
    def connections(self) -> int:
        """Receivers connected right now."""
        return 0 if self._sender is None else int(self._sender.get_num_connections(0))

    def close(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.close()
