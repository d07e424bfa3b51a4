"""Audio features: the numbers that drive a bend's parameter, frame by frame.

One module, used the same way live and offline:

* live: a feature thread keeps a rolling 50 ms window and calls
  ``FeatureExtractor.process(window, time)`` every hop;
* offline: the renderer calls ``analyze(samples, sr, fps=...)`` once per file.

Both paths run the same code on the same windows, so they give identical values (the
offline path only batches the stateless spectral part over many windows at once).

The features, per window of ``window`` seconds (50 ms in the paper):

* the paper's (Dzwonczyk, Cella, Ban, DAFx 2024): ``rms``; the amplitude-weighted
  moments of the magnitude spectrum ``centroid`` (Hz), ``spread`` (Hz), ``skewness``,
  ``kurtosis``; ``flux``, the L1 distance between successive magnitude spectra. The FFT
  is zero-padded to the next power of two, as in the authors' code;
* what VJ tools expose: band levels ``bass`` / ``mid`` / ``high`` (RMS of the band, so
  a sine of amplitude A reads A/sqrt(2) in its band); ``onset`` (1.0 on a hit frame,
  else 0.0); ``*_ratio``, a level over its own slow average (about 1.0 at steady
  loudness whatever the input gain, so a mapping needs no per-venue range); ``tempo``
  in BPM from the autocorrelation of onset strength (0 while not confident).

One deliberate difference from the authors' code: the window is tapered (periodic Hann)
before the FFT by default. Their rectangular window leaks so much that a steady 1 kHz
tone reads a centroid of 1300 to 2500 Hz depending on its phase in the window, which
makes the spectral features jitter from frame to frame; ``taper="none"`` gives their
numbers exactly (a preset's ``[features] taper = "none"``, as the paper presets have, or
``netbend features --taper none``). ``rms`` is computed on the untapered samples either way.

Every output is finite: silence gives 0 (ratios 0, moments 0), never NaN.

This file holds the names, the frame and table types, and the two entry points; the
stateless spectral part is ``engine.spectrum``, the part that remembers earlier frames
(ratios, onsets, tempo) is ``engine.feature_history``.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import replacing
from .feature_history import FeatureHistory
from .spectrum import Spectrum

FEATURE_NAMES: tuple[str, ...] = (
    "rms", "centroid", "spread", "skewness", "kurtosis", "flux",
    "bass", "mid", "high", "onset",
    "bass_ratio", "mid_ratio", "high_ratio", "rms_ratio", "tempo",
)
TAPERS: tuple[str, ...] = ("hann", "none")

# Samples are clipped here so that fourth moments of absurd input stay finite; real
# audio lies within +-1 (integer input is scaled there).
SAMPLE_LIMIT = 1e6

_BLOCK_FRAMES = 256         # analyze() batches this many windows per FFT (~8 MB per spectrum array)


class UnknownFeatureError(KeyError, ValueError):
    """A feature name that is not in FEATURE_NAMES (catchable as KeyError or ValueError)."""

    def __str__(self) -> str:  # KeyError would print the message quoted, as a repr
        return str(self.args[0]) if self.args else ""


def feature_index(name: str) -> int:
    """Position of ``name`` in FEATURE_NAMES; raises UnknownFeatureError listing them."""
    try:
        return FEATURE_NAMES.index(name)
    except ValueError:
        raise UnknownFeatureError(
            f"unknown audio feature {name!r}; allowed: {', '.join(FEATURE_NAMES)}") from None


def window_size(sample_rate: float, window: float = 0.05) -> int:
    """Window length in samples: round(window * sample_rate), at least 1 (2205 at 44.1 kHz)."""
    return max(1, int(round(window * sample_rate)))


def _check_positive(name: str, value: float, allowed: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {allowed}, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return v


def _to_mono(samples: np.ndarray) -> np.ndarray:
    """Float64 mono copy of (n,) or (n, channels) audio.

    Integer PCM is scaled to +-1 (as soundfile reads it); NaN/inf become 0 per channel
    before the channels are averaged, so one bad channel does not silence the others.
    """
    x = np.asarray(samples)
    if x.ndim not in (1, 2):
        raise ValueError(f"audio must be (samples,) or (samples, channels), got shape {x.shape}")
    if np.issubdtype(x.dtype, np.unsignedinteger):          # 8-bit WAV: silence at 128
        half = float(2 ** (np.iinfo(x.dtype).bits - 1))
        x = (x.astype(np.float64) - half) / half
    elif np.issubdtype(x.dtype, np.integer):
        x = x / -float(np.iinfo(x.dtype).min)
    x = np.nan_to_num(x.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if x.ndim == 2:
        x = x.mean(axis=1) if x.shape[1] > 0 else np.zeros(x.shape[0])
    return np.clip(x, -SAMPLE_LIMIT, SAMPLE_LIMIT)


@dataclass(frozen=True)
class FeatureFrame:
    """The features of one window. ``frame["rms"]`` reads one; ``time`` is in seconds."""

    time: float
    values: dict[str, float]

    def __getitem__(self, name: str) -> float:
        try:
            return self.values[name]
        except KeyError:
            feature_index(name)  # raises the error that lists the allowed names
            raise

    def vector(self) -> np.ndarray:
        """The values as a float64 vector in FEATURE_NAMES order."""
        return np.array([self.values[n] for n in FEATURE_NAMES], dtype=np.float64)


class FeatureExtractor:
    """Features of one audio stream, one window at a time (the live path).

    Holds what depends on earlier windows: the previous spectrum (flux, onset), slow
    averages (ratios), onset and tempo history. Feed windows in order, one per ``hop``
    seconds; ``hop`` sets the time constants, so it must match how often you call
    ``process``. By default hop = window (non-overlapping windows, the paper's framing
    and what ``analyze`` does at its default 20 fps); the live app passes its own hop.
    """

    def __init__(self, sample_rate: float, window: float = 0.05, hop: float | None = None,
                 *, taper: str = "hann"):
        self.sample_rate = _check_positive("sample_rate", sample_rate, "a positive rate in Hz, e.g. 44100")
        self.window = _check_positive("window", window, "a positive duration in seconds, e.g. 0.05")
        self.hop = self.window if hop is None else _check_positive(
            "hop", hop, "a positive duration in seconds, e.g. 0.01")
        if taper not in TAPERS:
            raise ValueError(f"unknown taper {taper!r}; allowed: {', '.join(TAPERS)}")
        self.taper = taper
        self.window_length = window_size(self.sample_rate, self.window)
        self._spectrum = Spectrum(self.sample_rate, self.window_length, hann=taper == "hann")
        self._frame = np.zeros((1, self.window_length))  # (1, L), reused by every process()
        self.reset()

    def reset(self) -> None:
        """Forget the stream so far (as if newly made)."""
        self._prev_mag: np.ndarray | None = None
        self._history = FeatureHistory(self.hop)

    def process(self, window_samples: np.ndarray, time: float) -> FeatureFrame:
        """Features of the newest window: (n,) or (n, channels) samples, n <= window length.

        A short window (the stream's first moments, a file's end) is zero-padded at the
        end, as offline. ``time`` is only stamped on the frame.
        """
        x = _to_mono(window_samples)
        if len(x) > self.window_length:
            raise ValueError(f"a window holds at most {self.window_length} samples "
                             f"({self.window} s at {self.sample_rate:g} Hz), got {len(x)}")
        self._frame[0, : len(x)] = x
        self._frame[0, len(x):] = 0.0
        row = self._process_block(self._frame)[0]
        return FeatureFrame(float(time), dict(zip(FEATURE_NAMES, row.tolist())))

    def _process_block(self, frames: np.ndarray) -> np.ndarray:
        """(F, L) consecutive windows -> (F, len(FEATURE_NAMES)) values, state advanced.

        The spectral part is batched; the stateful part then walks the frames in order.
        ``process`` is this with F = 1, so both paths share every line of arithmetic.
        """
        stateless, self._prev_mag = self._spectrum.analyze(frames, self._prev_mag)
        out = np.empty((frames.shape[0], len(FEATURE_NAMES)))
        out[:, :9] = stateless[:, :9]                       # rms .. high
        for i, row in enumerate(stateless):
            levels = row[[6, 7, 8, 0]]                      # bass, mid, high, rms
            out[i, 9:] = self._history.update(levels, float(row[9]))
        return out


@dataclass(frozen=True, eq=False)
class FeatureTable:
    """Features of a whole file: one row per video frame.

    times: (n,) seconds, frame i at i / fps (where its window starts).
    names: the column names (FEATURE_NAMES). values: (n, len(names)) float64.
    """

    times: np.ndarray
    names: tuple[str, ...]
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.times)

    def __iter__(self) -> Iterator[FeatureFrame]:
        """The frames in order, as FeatureFrames (``for frame in table: frame["rms"]``)."""
        return (self.frame(i) for i in range(len(self)))

    def column(self, name: str) -> np.ndarray:
        """All frames' values of one feature, (n,)."""
        if name not in self.names:
            feature_index(name)  # raises, listing FEATURE_NAMES
            raise UnknownFeatureError(
                f"feature {name!r} is not in this table; it has: {', '.join(self.names)}")
        return self.values[:, self.names.index(name)]

    def frame(self, i: int) -> FeatureFrame:
        """Row i as a FeatureFrame, the same type the live path produces."""
        return FeatureFrame(float(self.times[i]), dict(zip(self.names, self.values[i].tolist())))

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write ``time,<names>`` rows, atomically (``engine.atomic.replacing``)."""
        path = Path(path)
        with replacing(path) as tmp, open(tmp, "w", newline="") as fh:
            rows = np.column_stack([self.times, self.values]).reshape(len(self), 1 + len(self.names))
            header = ",".join(("time", *self.names))
            np.savetxt(fh, rows, fmt="%.10g", delimiter=",", header=header, comments="")
        return path


def analyze(samples: np.ndarray, sample_rate: float, *, fps: float = 20.0, window: float = 0.05,
            taper: str = "hann") -> FeatureTable:
    """Features of a whole recording, one frame per 1/fps seconds (the offline path).

    samples: (n,) or (n, channels). Frame i analyses the ``round(window * sr)`` samples
    starting at ``round(i * sr / fps)`` (zero-padded past the end); there are
    ``ceil(duration * fps)`` frames. Values equal feeding those windows, in order, to
    ``FeatureExtractor(sample_rate, window, hop=1/fps).process``.
    """
    sr = _check_positive("sample_rate", sample_rate, "a positive rate in Hz, e.g. 44100")
    fps = _check_positive("fps", fps, "a positive frame rate, e.g. 20")
    extractor = FeatureExtractor(sr, window, hop=1.0 / fps, taper=taper)
    x = _to_mono(samples)
    length = extractor.window_length

    # round() guards ceil against float noise such as 60.000000000001 frames.
    n = math.ceil(round(len(x) * fps / sr, 9))
    starts = np.round(np.arange(n) * sr / fps).astype(np.int64)       # (n,)
    padded = np.zeros(max(len(x), int(starts[-1]) + length if n else 0))
    padded[: len(x)] = x
    offsets = np.arange(length)

    values = np.empty((n, len(FEATURE_NAMES)))
    for b in range(0, n, _BLOCK_FRAMES):
        frames = padded[starts[b: b + _BLOCK_FRAMES, None] + offsets]  # (B, L)
        values[b: b + _BLOCK_FRAMES] = extractor._process_block(frames)
    return FeatureTable(np.arange(n) / fps, FEATURE_NAMES, values)
