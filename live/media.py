"""Media files on PyAV (FFmpeg): audio in, WAV out, and reading any file back.

``load_audio`` decodes anything FFmpeg reads into float32 samples; ``write_audio_wav``
writes a 16-bit WAV atomically; ``probe`` reads a file back (tests use it to check
renders). The MP4 writer of the offline render is ``live.cli.video.VideoWriter``.

    samples, rate = load_audio("song.flac", start=10.0, end=40.0)
    write_audio_wav("cut.wav", samples, rate)
"""

from __future__ import annotations

import os
import wave
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from engine.atomic import replacing

__all__ = ["AUDIO_CHUNK", "MediaError", "MediaInfo", "load_audio", "probe", "resample", "write_audio_wav"]

ACCEPTED = "any audio file FFmpeg reads: wav, flac, mp3, ogg, m4a/aac, opus, aiff …"

AUDIO_CHUNK = 1 << 16  # samples per frame handed to the resampler / an encoder
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


def resample(samples: np.ndarray, rate: int, new_rate: int, layout: str) -> np.ndarray:
    """(n, channels) float32 at `rate` -> (m, channels) float32 at `new_rate`, m ≈ n·new/rate."""
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=new_rate)
    out: list[np.ndarray] = []

    def collect(frames: list[av.AudioFrame]) -> None:
        out.extend(f.to_ndarray()[:, : f.samples].T for f in frames)

    for offset in range(0, len(samples), AUDIO_CHUNK):
        chunk = np.ascontiguousarray(samples[offset : offset + AUDIO_CHUNK].T)  # (ch, n)
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
    samples, rate, layout = _decode(path, end)
    samples = _cut_span(samples, rate, start, end, path)
    if sample_rate is not None and sample_rate != rate:
        samples = resample(samples, rate, int(sample_rate), layout)
        rate = int(sample_rate)
    np.clip(samples, -1.0, 1.0, out=samples)  # lossy decoders overshoot slightly
    if mono:
        samples = samples.mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(samples), int(rate)


def _decode(path: Path, end: float | None) -> tuple[np.ndarray, int, str]:
    """The first audio stream as (samples (n, channels) float32, rate, layout name),
    decoded up to ``end`` seconds (None: all of it)."""
    with _open(path) as container:
        if not container.streams.audio:
            kinds = ", ".join(s.type for s in container.streams) or "none"
            raise MediaError(f"{path}: has no audio stream (streams: {kinds}); expected {ACCEPTED}")
        stream = container.streams.audio[0]
        declared = None  # seconds, from the container (edit lists and granules applied)
        if stream.duration and stream.time_base:
            declared = stream.duration * stream.time_base
        chunks: list[np.ndarray] = []
        rate = layout = channels = None
        total = 0
        try:
            for frame in container.decode(stream):
                if frame.samples == 0:
                    continue
                if rate is None:
                    rate, layout, channels = frame.sample_rate, frame.layout.name, frame.layout.nb_channels
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
    return np.concatenate(chunks)[:total], rate, layout


def _cut_span(samples: np.ndarray, rate: int, start: float, end: float | None, path: Path) -> np.ndarray:
    """samples[start s : end s], refused with the file's length when the span lies outside it."""
    total = len(samples)
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
    return samples[first:last]


# --------------------------------------------------------------------------------------
# audio out


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

    with replacing(path) as partial:  # a reader never sees half a WAV; a failed write leaves none
        with wave.open(str(partial), "wb") as w:
            w.setnchannels(pcm.shape[1])
            w.setsampwidth(2)
            w.setframerate(int(sample_rate))
            w.writeframes(np.ascontiguousarray(pcm, dtype="<i2").tobytes())


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
