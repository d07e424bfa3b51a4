"""The show recorded as it was seen: H.264 of what the outputs get, with the input audio.

``VideoRecording`` is an Output, so it runs on its own thread behind its own hand-off and
the encoder never slows the show. The file is a fragmented MP4 (an empty ``moov`` up
front, then a self-contained fragment per keyframe, a keyframe every second, each flushed
to the file as it completes): a ``kill -9`` or a power cut leaves a file that plays up to
the last second or so. A clean stop finishes it like any MP4.

Time: each frame's presentation time is when the render thread finished it, from the
first frame the recording got (variable frame rate: a 12 fps passage stays 12 fps, with no
duplicated or dropped frames in the file). The audio is every input sample from that same
moment to the stop, read from the audio source's ring on this thread; lost samples become silence, so
picture and sound stay in sync for the whole show.

An existing file is never overwritten unless ``overwrite=True`` (``--overwrite``).
"""
from __future__ import annotations

import logging
import os
import time
from fractions import Fraction
from pathlib import Path
from typing import Callable, Optional

import av
import numpy as np

from live.outputs.audio_tap import AudioTap
from live.outputs.output import Output, OutputError

log = logging.getLogger("netbend.outputs")

__all__ = ["VideoRecording", "check_recording_path"]

KEYFRAME_S = 1.0  # a keyframe, hence a fragment on disk, this often: what a crash can lose
TIME_BASE = Fraction(1, 1000)  # video timestamps in milliseconds
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"


def check_recording_path(path, overwrite: bool = False) -> Path:
    """The path to record to, or OutputError saying why not (before anything is written)."""
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise OutputError(f"--record-video {str(path)!r}: the recording is an MP4; give a path ending in .mp4")
    if not path.parent.is_dir():
        raise OutputError(f"--record-video {str(path)!r}: the folder {str(path.parent)!r} does not exist")
    if path.is_dir():
        raise OutputError(f"--record-video {str(path)!r} is a folder; give a file path ending in .mp4")
    if path.exists() and not overwrite:
        raise OutputError(f"--record-video {str(path)!r} already exists; recordings never overwrite a file "
                          "unless --overwrite is given (or choose a new name)")
    return path


class VideoRecording(Output):
    name = "record"
    capacity = 8  # a file should not skip: up to 8 frames wait through a slow encode

    def __init__(self, path, *, audio=None, overwrite: bool = False, crf: int = 20, preset: str = "veryfast",
                 threads: int = 1, clock: Callable[[], float] = time.monotonic):
        self.path = check_recording_path(path, overwrite)
        self.overwrite = bool(overwrite)
        self.audio = AudioTap(audio) if audio is not None else None
        if not 0 <= crf <= 51:
            raise OutputError(f"crf must be 0..51 (lower is better quality), got {crf}")
        self.crf, self.preset, self.threads = int(crf), preset, int(threads)
        self._clock = clock
        self._container = None
        self.frames = 0
        self._last_pts = -1
        self._last_key: Optional[float] = None
        self._resampler = None

    def describe(self) -> str:
        return f"H.264 to {self.path}" + (f" with the input audio ({self.audio.sample_rate} Hz)" if self.audio else "")

    def open(self, size: tuple[int, int], fps: float) -> None:
        w, h = size
        self._size = (w + w % 2, h + h % 2)  # yuv420p needs even sides: an odd one gets its edge repeated
        try:
            if not self.overwrite:  # claim the name: a file that appeared since the check is not ours to replace
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            self._container = av.open(str(self.path), "w", format="mp4",
                                      container_options={"movflags": MOVFLAGS, "flush_packets": "1"})
        except FileExistsError:
            raise OutputError(f"--record-video {str(self.path)!r} already exists; recordings never overwrite a file "
                              "unless --overwrite is given (or choose a new name)") from None
        except (av.FFmpegError, OSError) as e:
            raise OutputError(f"--record-video {str(self.path)!r}: cannot write it ({e})") from None
        try:
            self._add_streams(fps)
        except BaseException:
            self._container.close()
            self.path.unlink(missing_ok=True)  # nothing of it was ours yet
            raise
        self._start: Optional[float] = None  # the first picture's time: the file's time zero

    def _add_streams(self, fps: float) -> None:
        video = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        video.width, video.height = self._size
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = TIME_BASE
        # zerolatency: no lookahead or B-frames, so each frame is in the file a moment after it
        # was rendered (what a crash can lose is the last fragment, not the encoder's queue)
        video.options = {"crf": str(self.crf), "preset": self.preset, "tune": "zerolatency",
                         "threads": str(self.threads)}
        self._video = video
        self._audio_stream = None
        if self.audio is not None:
            rate = self.audio.sample_rate if self.audio.sample_rate in AAC_RATES else 48000
            self._audio_stream = self._container.add_stream("aac", rate=rate)
            self._audio_stream.layout = "mono"
            self._audio_stream.codec_context.time_base = Fraction(1, rate)
            if rate != self.audio.sample_rate:
                self._resampler = av.AudioResampler(format="fltp", layout="mono", rate=rate)

    # -- on the output's thread

    def send(self, picture: np.ndarray, frame) -> None:
        if picture.shape[1::-1] != self._size:
            picture = np.pad(picture, ((0, self._size[1] - picture.shape[0]), (0, self._size[0] - picture.shape[1]),
                                       (0, 0)), mode="edge")
        rendered = getattr(frame, "rendered_time", self._clock())
        if self._start is None:  # picture and sound begin together, with the show's first frame
            self._start = rendered
            if self.audio is not None:  # from the sample that was arriving as the frame was finished
                self.audio.start(back_s=max(0.0, self._clock() - rendered))
        t = max(0.0, rendered - self._start)
        pts = max(self._last_pts + 1, int(round(t / TIME_BASE)))
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
        video_frame.pts, video_frame.time_base = pts, TIME_BASE
        if self._last_key is None or t - self._last_key >= KEYFRAME_S:
            video_frame.pict_type = av.video.frame.PictureType.I  # starts the next fragment
            self._last_key = t
        self._container.mux(self._video.encode(video_frame))
        self._last_pts = pts
        self.frames += 1
        self._pull_audio()

    def tick(self, now: float) -> None:
        if self._container is not None and self._start is not None:
            self._pull_audio()

    def _pull_audio(self, final: bool = False) -> None:
        """Encode every input sample that arrived since the last call (and, at the end, the
        resampler's tail)."""
        if self._audio_stream is None or self._start is None:
            return
        samples = self.audio.read()
        frames = []
        if len(samples):
            frame = av.AudioFrame.from_ndarray(samples[None, :], format="fltp", layout="mono")
            frame.sample_rate = self.audio.sample_rate
            frame.time_base = Fraction(1, self.audio.sample_rate)
            frame.pts = self.audio.samples_read - len(samples)
            frames = self._resampler.resample(frame) if self._resampler is not None else [frame]
        if final and self._resampler is not None:
            frames = [*frames, *self._resampler.resample(None)]
        for f in frames:
            self._container.mux(self._audio_stream.encode(f))

    def close(self) -> None:
        if self._container is None:
            return
        try:
            self._pull_audio(final=True)  # the audio up to the moment of stopping
            self._container.mux(self._video.encode(None))
            if self._audio_stream is not None:
                self._container.mux(self._audio_stream.encode(None))
        finally:
            container, self._container = self._container, None
            container.close()
        log.info("recorded %d frames to %s", self.frames, self.path)
