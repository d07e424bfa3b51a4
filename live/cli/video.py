"""MP4 video out for the offline render: ``VideoWriter``, on PyAV (FFmpeg).

RGB frames go to H.264/yuv420p at a constant frame rate, with an optional AAC track under
them; the file is written beside the target under a temporary name and only moved into
place once it is complete, so a failed render never leaves a half-written OUT.mp4 (and an
earlier file at that name survives it).

    samples, rate = load_audio("song.flac", start=10.0, end=40.0)
    with VideoWriter("out.mp4", 512, 512, fps=20, audio=(samples, rate)) as video:
        for frame in frames:            # (H, W, 3) uint8
            video.write(frame)
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from engine.atomic import temp_beside
from live.media import AUDIO_CHUNK, load_audio, resample

__all__ = ["VideoWriter"]

# Rates the AAC encoder takes; anything else is resampled to 48 kHz before encoding.
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000,
              7350)  # fmt: skip
_LAYOUTS = {1: "mono", 2: "stereo"}
_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
            "veryslow")  # fmt: skip


def _frame_rate(fps: float | Fraction | str) -> Fraction:
    """fps as an exact Fraction; 29.97, 23.976, 59.94 … mean the NTSC n·1000/1001 rates."""
    try:
        value = Fraction(fps) if isinstance(fps, (int, Fraction, str)) else Fraction(float(fps))
    except (TypeError, ValueError, ZeroDivisionError):
        raise ValueError(
            f"fps must be a positive number such as 20, 29.97 or '30000/1001', got {fps!r}"
        ) from None
    if not isinstance(fps, (int, Fraction)):  # a decimal: snap to NTSC or a short fraction
        for base in (24, 30, 48, 60, 120):
            if abs(value - Fraction(base * 1000, 1001)) < Fraction(1, 1000):
                value = Fraction(base * 1000, 1001)
                break
        else:
            value = value.limit_denominator(1001)
    if value <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    return value


class VideoWriter:
    """Writes RGB frames to an MP4 (H.264, yuv420p, constant frame rate), optionally with an
    AAC audio track, as a context manager.

    The file is written to a hidden temporary name next to `path` (engine.atomic.temp_beside)
    and moved into place only by a clean ``close()`` (or leaving the ``with`` block without
    an exception); on an exception the partial file is deleted, so a failed render never
    leaves a broken OUT.mp4. The writer keeps the file open across many calls, which is why
    it does not use ``engine.atomic.replacing``'s one block.

    yuv420p needs even dimensions: an odd `width`/`height` is padded by one pixel (the last
    column/row repeated), and ``encoded_size`` says what was encoded. ``write`` still takes
    frames of exactly (height, width, 3) uint8.

    Audio comes from ``audio=(samples (n, ch) or (n,) float32, sample_rate)`` or from
    ``audio_path`` (read with ``load_audio``), 1 or 2 channels, and is encoded whole (AAC,
    `audio_bitrate`), interleaved with the frames; it is not trimmed to the video's length.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        fps: float | Fraction | str,
        *,
        audio: tuple[np.ndarray, int] | None = None,
        audio_path: str | os.PathLike | None = None,
        crf: int = 18,  # visually near-lossless; 23 is x264's default, lower is bigger
        preset: str = "medium",
        audio_bitrate: int = 192_000,
    ):
        self.path = Path(path)
        if int(width) != width or int(height) != height or width < 2 or height < 2:
            raise ValueError(f"width and height must be integers >= 2, got {width}x{height}")
        self.width, self.height = int(width), int(height)
        self.fps = _frame_rate(fps)
        if not 0 <= crf <= 51:
            raise ValueError(f"crf must be in 0..51 (lower is better quality), got {crf}")
        if preset not in _PRESETS:
            raise ValueError(
                f"preset must be one of {', '.join(_PRESETS)} (x264's), got {preset!r}"
            )
        if not self.path.parent.is_dir():
            raise ValueError(f"{self.path}: the folder {self.path.parent} does not exist")
        self.encoded_size = (self.width + self.width % 2, self.height + self.height % 2)
        self.frames_written = 0
        self._audio, self._audio_rate = self._prepare_audio(audio, audio_path)
        self._audio_sent = 0
        self._closed = False

        self._partial = temp_beside(self.path)
        self._container = av.open(
            str(self._partial), "w", format="mp4", container_options={"movflags": "+faststart"}
        )
        try:
            self._video = self._container.add_stream("libx264", rate=self.fps)
            self._video.width, self._video.height = self.encoded_size
            self._video.pix_fmt = "yuv420p"
            self._video.codec_context.time_base = 1 / self.fps
            self._video.options = {"crf": str(crf), "preset": preset}
            self._audio_stream = None
            if self._audio is not None:
                layout = _LAYOUTS[self._audio.shape[1]]
                self._audio_stream = self._container.add_stream("aac", rate=self._audio_rate)
                self._audio_stream.layout = layout
                self._audio_stream.bit_rate = int(audio_bitrate)
                self._audio_stream.codec_context.time_base = Fraction(1, self._audio_rate)
        except BaseException:
            self.abort()
            raise

    @staticmethod
    def _prepare_audio(audio, audio_path) -> tuple[np.ndarray | None, int]:
        if audio is not None and audio_path is not None:
            raise ValueError("give either audio=(samples, rate) or audio_path, not both")
        if audio_path is not None:
            samples, rate = load_audio(audio_path)
            where = str(audio_path)
        elif audio is not None:
            try:
                samples, rate = audio
            except (TypeError, ValueError):
                raise ValueError("audio must be a (samples, sample_rate) pair") from None
            samples = np.asarray(samples, dtype=np.float32)
            where = "audio"
        else:
            return None, 0
        if samples.ndim == 1:
            samples = samples[:, None]
        if samples.ndim != 2 or samples.shape[1] not in _LAYOUTS or len(samples) == 0:
            raise ValueError(
                f"{where}: audio must be (n,) or (n, channels) with n > 0 and 1 or 2 channels, "
                f"got shape {samples.shape} (mix down with load_audio(..., mono=True))"
            )
        if int(rate) != rate or rate <= 0:
            raise ValueError(f"{where}: sample rate must be a positive integer, got {rate!r}")
        rate = int(rate)
        if rate not in _AAC_RATES:
            samples = resample(samples, rate, 48000, _LAYOUTS[samples.shape[1]])
            rate = 48000
        return np.ascontiguousarray(samples, dtype=np.float32), rate

    # -- writing

    def write(self, frame: np.ndarray) -> None:
        """Append one (height, width, 3) uint8 RGB frame."""
        if self._closed:
            raise ValueError(f"{self.path}: write() after close()")
        frame = np.asarray(frame)
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"frames must be ({self.height}, {self.width}, 3) uint8 RGB, "
                f"got {frame.shape} {frame.dtype}"
            )
        if self.encoded_size != (self.width, self.height):
            frame = np.pad(frame, ((0, self.height % 2), (0, self.width % 2), (0, 0)), mode="edge")
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame.pts = self.frames_written
        video_frame.time_base = self._video.codec_context.time_base
        self._container.mux(self._video.encode(video_frame))
        self.frames_written += 1
        # keep the audio abreast of the video so the two streams interleave in the file
        self._send_audio(int(round(self.frames_written / self.fps * self._audio_rate)))

    def _send_audio(self, until: int) -> None:
        if self._audio_stream is None:
            return
        until = min(until, len(self._audio))
        while self._audio_sent < until:
            stop = min(until, self._audio_sent + AUDIO_CHUNK)
            chunk = np.ascontiguousarray(self._audio[self._audio_sent : stop].T)  # (ch, n)
            layout = self._audio_stream.layout.name
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = self._audio_rate
            frame.pts = self._audio_sent
            frame.time_base = Fraction(1, self._audio_rate)
            self._container.mux(self._audio_stream.encode(frame))
            self._audio_sent = stop

    # -- finishing

    def close(self) -> None:
        """Finish both streams and move the file into place. Idempotent."""
        if self._closed:
            return
        try:
            if self.frames_written == 0:
                raise ValueError(f"{self.path}: no frames were written; nothing to save")
            self._container.mux(self._video.encode(None))
            if self._audio_stream is not None:
                self._send_audio(len(self._audio))
                self._container.mux(self._audio_stream.encode(None))
            self._container.close()
            self._closed = True
            os.replace(self._partial, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Stop without saving: the partial file is removed and `path` is left untouched."""
        self._closed = True
        try:
            self._container.close()
        except Exception:  # a half-written container may refuse to finalise; it is deleted anyway
            pass
        self._partial.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
