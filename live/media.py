"""Audio files in, MP4 video out: the offline render's two ends, on PyAV (FFmpeg).

``load_audio`` decodes anything FFmpeg reads into float32 samples; ``VideoWriter`` encodes
RGB frames to H.264/yuv420p MP4 with an optional AAC track, and only puts the file in place
once it is complete; ``probe`` reads a file back (tests use it to check renders).

    samples, rate = load_audio("song.flac", start=10.0, end=40.0)
    with VideoWriter("out.mp4", 512, 512, fps=20, audio=(samples, rate)) as video:
        for frame in frames:            # (H, W, 3) uint8
            video.write(frame)
"""

from __future__ import annotations

import os
import wave
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["MediaError", "MediaInfo", "VideoWriter", "load_audio", "probe", "write_audio_wav"]

ACCEPTED = "any audio file FFmpeg reads: wav, flac, mp3, ogg, m4a/aac, opus, aiff …"

# Rates the AAC encoder takes; anything else is resampled to 48 kHz before encoding.
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000,
              7350)  # fmt: skip
_LAYOUTS = {1: "mono", 2: "stereo"}
_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
            "veryslow")  # fmt: skip
_RESAMPLE_CHUNK = 1 << 16  # samples per frame handed to the resampler / encoder
_MAX_PADDING = 2048  # at most this many decoded samples past the declared duration are padding


class MediaError(ValueError):
    """A media file that cannot be used: the message names the file, what was wrong, and what
    is accepted."""


# --------------------------------------------------------------------------------------
# audio in


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise MediaError(f"{path}: no such file ({ACCEPTED})")
    if not path.is_file():
        raise MediaError(f"{path}: is not a file ({ACCEPTED})")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: the file is empty (0 bytes) ({ACCEPTED})")


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), "r")
    except av.FFmpegError as e:
        raise MediaError(
            f"{path}: not a media file FFmpeg can read ({e}); expected {ACCEPTED}"
        ) from e


def _to_float(frame: av.AudioFrame, path: Path) -> np.ndarray:
    """One decoded frame as float32 (samples, channels), whatever its sample format."""
    channels = frame.layout.nb_channels
    raw = frame.to_ndarray()  # planar: (channels, samples); packed: (1, samples * channels)
    if frame.format.is_planar:
        data = raw[:, : frame.samples].T
    else:
        data = raw.reshape(-1)[: frame.samples * channels].reshape(-1, channels)
    kind = raw.dtype
    if kind == np.uint8:  # u8 is offset binary, silence at 128
        return (data.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(kind, np.signedinteger):
        return (data.astype(np.float64) / float(2 ** (8 * kind.itemsize - 1))).astype(np.float32)
    if np.issubdtype(kind, np.floating):
        return data.astype(np.float32, copy=False)
    raise MediaError(f"{path}: unsupported sample format {frame.format.name!r}")


def _resample(samples: np.ndarray, rate: int, new_rate: int, layout: str) -> np.ndarray:
    """(n, channels) float32 at `rate` -> (m, channels) float32 at `new_rate`, m ≈ n·new/rate."""
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=new_rate)
    out: list[np.ndarray] = []

    def collect(frames: list[av.AudioFrame]) -> None:
        out.extend(f.to_ndarray()[:, : f.samples].T for f in frames)

    for offset in range(0, len(samples), _RESAMPLE_CHUNK):
        chunk = np.ascontiguousarray(samples[offset : offset + _RESAMPLE_CHUNK].T)  # (ch, n)
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
        frame.sample_rate = rate
        frame.pts = offset
        frame.time_base = Fraction(1, rate)
        collect(resampler.resample(frame))
    collect(resampler.resample(None))  # flush the filter's tail
    if not out:
        return np.zeros((0, samples.shape[1]), np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


def _check_wav_length(path: Path) -> None:
    """A WAV whose header promises more audio than the file holds is cut off (or its header
    is bogus): FFmpeg would quietly decode the part that is there, and a render would make a
    video of a fraction of a second. MediaError naming both lengths; other files pass."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return  # _open reports it
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    index = 12
    while index + 8 <= len(head):
        chunk, length = head[index:index + 4], int.from_bytes(head[index + 4:index + 8], "little")
        if chunk == b"data":
            have = size - (index + 8)
            if length not in (0, 0xFFFFFFFF) and have < length * 0.99:  # 0 / 0xFFFFFFFF: a stream's placeholder
                raise MediaError(f"{path}: truncated or damaged WAV: its header says {length} bytes of audio, "
                                 f"the file holds {max(0, have)}")
            return
        index += 8 + length + (length & 1)


def load_audio(
    path: str | os.PathLike,
    *,
    sample_rate: int | None = None,
    mono: bool = False,
    start: float = 0.0,
    end: float | None = None,
) -> tuple[np.ndarray, int]:
    """Decode an audio file (or the audio track of a video) to float32 samples in [-1, 1].

    Returns ``(samples, rate)``: samples are (n, channels), or (n,) with ``mono=True`` (the
    mean of the channels). ``start``/``end`` in seconds select a span of the file; the span
    must satisfy 0 <= start < end <= duration. ``sample_rate`` resamples (the span is cut at
    the file's own rate first), otherwise the file's rate is kept.
    Raises MediaError for a missing, unreadable, empty or audio-less file.
    """
    path = Path(path)
    if start < 0 or (end is not None and end <= start):
        raise MediaError(f"{path}: bad span start={start} end={end}: need 0 <= start < end")
    if sample_rate is not None and (int(sample_rate) != sample_rate or sample_rate <= 0):
        raise MediaError(f"{path}: sample_rate must be a positive integer, got {sample_rate!r}")
    _check_readable(path)
    _check_wav_length(path)

    with _open(path) as container:
        if not container.streams.audio:
            kinds = ", ".join(s.type for s in container.streams) or "none"
            raise MediaError(f"{path}: has no audio stream (streams: {kinds}); expected {ACCEPTED}")
        stream = container.streams.audio[0]
        declared = None  # seconds, from the container (edit lists and granules applied)
        if stream.duration and stream.time_base:
            declared = stream.duration * stream.time_base
        chunks: list[np.ndarray] = []
        rate = layout = None
        total = 0
        try:
            for frame in container.decode(stream):
                if frame.samples == 0:
                    continue
                if rate is None:
                    rate, layout = frame.sample_rate, frame.layout.name
                    channels = frame.layout.nb_channels
                elif frame.sample_rate != rate or frame.layout.nb_channels != channels:
                    raise MediaError(
                        f"{path}: unsupported: the sample rate or channel count changes "
                        f"mid-stream ({rate} Hz/{channels} ch -> "
                        f"{frame.sample_rate} Hz/{frame.layout.nb_channels} ch)"
                    )
                chunks.append(_to_float(frame, path))
                total += frame.samples
                if end is not None and total >= end * rate:
                    break  # the span is covered; no need to decode the rest
            else:
                # Decoders emit whole codec frames, so AAC and Vorbis end with up to a frame of
                # padding that the container's (edit-list) duration excludes: drop it.
                if declared is not None and rate is not None:
                    excess = total - int(round(declared * rate))
                    if 0 < excess <= _MAX_PADDING:
                        total -= excess
        except av.FFmpegError as e:
            raise MediaError(f"{path}: the audio could not be decoded ({e})") from e

    if total == 0:
        raise MediaError(f"{path}: the audio stream contains no samples (zero-length audio)")
    samples = np.concatenate(chunks)[:total]  # (n, channels)
    duration = total / rate
    if start >= duration or (end is not None and end > duration + 0.5 / rate):
        raise MediaError(
            f"{path}: span start={start} end={end} is outside the audio, which lasts "
            f"{duration:.3f} s; need 0 <= start < end <= {duration:.3f}"
        )
    first = int(round(start * rate))
    last = total if end is None else min(total, int(round(end * rate)))
    if last <= first:
        raise MediaError(f"{path}: span start={start} end={end} is shorter than one sample")
    samples = samples[first:last]

    if sample_rate is not None and sample_rate != rate:
        samples = _resample(samples, rate, int(sample_rate), layout)
        rate = int(sample_rate)
    np.clip(samples, -1.0, 1.0, out=samples)  # lossy decoders overshoot slightly
    if mono:
        samples = samples.mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(samples), int(rate)


# --------------------------------------------------------------------------------------
# audio out


def _partial_path(path: Path, suffix: str) -> Path:
    """The hidden temp file next to `path` that is renamed into place when complete."""
    return path.with_name(f".{path.stem}.partial{suffix}")


def write_audio_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int) -> None:
    """Write (n,) or (n, channels) samples as a 16-bit PCM WAV, atomically.

    Float samples are taken in [-1, 1] (clipped); int16 samples are written as they are.
    """
    path = Path(path)
    samples = np.asarray(samples)
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2 or samples.shape[1] < 1:
        raise ValueError(f"samples must be (n,) or (n, channels), got shape {samples.shape}")
    if samples.dtype == np.int16:
        pcm = samples
    elif np.issubdtype(samples.dtype, np.floating):
        pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
    else:
        raise ValueError(f"samples must be float (in [-1, 1]) or int16, got {samples.dtype}")
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")

    partial = _partial_path(path, ".wav")
    try:
        with wave.open(str(partial), "wb") as w:
            w.setnchannels(pcm.shape[1])
            w.setsampwidth(2)
            w.setframerate(int(sample_rate))
            w.writeframes(np.ascontiguousarray(pcm, dtype="<i2").tobytes())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------
# video out


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

    The file is written to a hidden ``.NAME.partial.mp4`` next to `path` and moved into place
    only by a clean ``close()`` (or leaving the ``with`` block without an exception); on an
    exception the partial file is deleted, so a failed render never leaves a broken OUT.mp4.

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

        self._partial = _partial_path(self.path, ".mp4")
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
            samples = _resample(samples, rate, 48000, _LAYOUTS[samples.shape[1]])
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
            stop = min(until, self._audio_sent + _RESAMPLE_CHUNK)
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


# --------------------------------------------------------------------------------------
# reading back


@dataclass(frozen=True)
class MediaInfo:
    """What a media file holds, as decoded (None where the file has no such stream)."""

    frames: int | None = None  # decoded video frames
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    video_codec: str | None = None
    pix_fmt: str | None = None
    video_duration: float | None = None  # frames / fps
    audio_codec: str | None = None
    audio_duration: float | None = None  # the container's duration (edit lists applied), seconds
    audio_samples: int | None = None  # decoded, per channel (AAC adds up to a frame of padding)
    audio_sample_rate: int | None = None
    audio_channels: int | None = None


def probe(path: str | os.PathLike) -> MediaInfo:
    """Read a file back by decoding its first video and first audio stream."""
    path = Path(path)
    _check_readable(path)
    info: dict = {}
    with _open(path) as container:
        streams = []
        if container.streams.video:
            video = container.streams.video[0]
            rate = video.average_rate or video.base_rate
            info.update(
                frames=0,
                fps=float(rate) if rate else None,
                width=video.codec_context.width,
                height=video.codec_context.height,
                video_codec=video.codec_context.name,
                pix_fmt=video.codec_context.pix_fmt,
            )
            streams.append(video)
        if container.streams.audio:
            audio = container.streams.audio[0]
            if audio.duration and audio.time_base:
                info["audio_duration"] = float(audio.duration * audio.time_base)
            info.update(
                audio_codec=audio.codec_context.name,
                audio_sample_rate=audio.codec_context.sample_rate,
                audio_channels=audio.codec_context.layout.nb_channels,
            )
            streams.append(audio)
        samples = 0
        try:
            for packet in container.demux(*streams):
                for frame in packet.decode():
                    if isinstance(frame, av.VideoFrame):
                        info["frames"] += 1
                    else:
                        samples += frame.samples
        except av.FFmpegError as e:
            raise MediaError(f"{path}: could not be decoded ({e})") from e
    if info.get("fps"):
        info["video_duration"] = info["frames"] / info["fps"]
    if "audio_codec" in info:
        info["audio_samples"] = samples
        if info.get("audio_duration") is None and info["audio_sample_rate"]:
            info["audio_duration"] = samples / info["audio_sample_rate"]
    return MediaInfo(**info)
