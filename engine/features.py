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
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FEATURE_NAMES: tuple[str, ...] = (
    "rms", "centroid", "spread", "skewness", "kurtosis", "flux",
    "bass", "mid", "high", "onset",
    "bass_ratio", "mid_ratio", "high_ratio", "rms_ratio", "tempo",
)
TAPERS: tuple[str, ...] = ("hann", "none")

# Band edges in Hz; the top band runs to Nyquist. Bass up to 250 Hz is the usual
# kick-and-bass split in VJ tools; 4 kHz separates hats and air from voice and synths.
BANDS: dict[str, tuple[float, float]] = {
    "bass": (20.0, 250.0), "mid": (250.0, 4000.0), "high": (4000.0, math.inf),
}

# Below -90 dBFS (under 16-bit dither) a level counts as silence: ratios read 0, slow
# averages hold still (so loudness after a pause is judged against the music before it),
# and no onset fires on noise floor.
SILENCE_LEVEL = 10.0 ** (-90.0 / 20.0)
# Samples are clipped here so that fourth moments of absurd input stay finite; real
# audio lies within +-1 (integer input is scaled there).
SAMPLE_LIMIT = 1e6

RATIO_TIME_S = 3.0          # slow average behind *_ratio: long enough to span a few bars
ONSET_HISTORY_S = 1.0       # the adaptive threshold follows the last second of novelty
ONSET_FACTOR = 1.5          # a hit must stand this far above the recent median ...
ONSET_FLOOR = 0.1           # ... plus this much (novelty is a 0..1 fraction)
ONSET_REFRACTORY_S = 0.1    # at most one hit per 100 ms (a 16th note at 150 BPM)
TEMPO_HISTORY_S = 8.0       # autocorrelate this much onset strength
TEMPO_MIN_HISTORY_S = 4.0   # say nothing before this much has been heard
TEMPO_RANGE_BPM = (60.0, 200.0)
TEMPO_CONFIDENCE = 0.3      # normalised autocorrelation at the beat lag must reach this
TEMPO_MIN_VARIANCE = 1e-3   # onset strength must vary at least this much (std ~0.03)
TEMPO_HALF_PREFERENCE = 0.7  # half the best lag wins when it scores this fraction of it

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


def fft_size(length: int) -> int:
    """Next power of two >= length: the paper zero-pads each window to it."""
    return 1 << max(0, int(length) - 1).bit_length()


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


class _Spectrum:
    """Per-(rate, window) constants and the stateless batched analysis of windows."""

    def __init__(self, sample_rate: float, length: int, taper: str):
        if taper not in TAPERS:
            raise ValueError(f"unknown taper {taper!r}; allowed: {', '.join(TAPERS)}")
        self.n_fft = fft_size(length)
        self.freqs = np.fft.rfftfreq(self.n_fft, 1.0 / sample_rate)  # (K,)
        n = np.arange(length)
        # Periodic Hann: the analysis convention (scipy/librosa "hann").
        self.taper = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)) if taper == "hann" else None
        window_energy = float(np.sum(self.taper**2)) if self.taper is not None else float(length)
        # Parseval for a one-sided spectrum: interior bins count twice (their negative
        # twin), DC and Nyquist once; dividing by n_fft and the window energy turns a
        # band's summed power into the mean square of that band of the signal.
        weight = np.full(self.freqs.shape, 2.0)
        weight[0] = 1.0
        if self.n_fft % 2 == 0:
            weight[-1] = 1.0
        self.power_weight = weight / (self.n_fft * max(window_energy, 1e-300))
        self.band_bins = [
            (int(np.searchsorted(self.freqs, lo, "left")), int(np.searchsorted(self.freqs, hi, "left"))
             if math.isfinite(hi) else len(self.freqs))
            for lo, hi in BANDS.values()
        ]

    def analyze(self, frames: np.ndarray, prev_mag: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Stateless features of a batch of windows, plus flux against the window before.

        frames: (F, L) mono float64, F >= 1. prev_mag: (K,) spectrum of the window before
        frames[0], or None at the start of a stream (flux 0 there).
        Returns (F, 10) columns rms, centroid, spread, skewness, kurtosis, flux, bass, mid,
        high, novelty; and the last window's magnitude spectrum (K,) for the next call.
        Each row is reduced on its own, so a batch of one gives the same bits as a batch
        of many (this is what makes live and offline values identical).
        """
        rms = np.sqrt(np.mean(frames * frames, axis=1))                     # (F,)
        tapered = frames * self.taper if self.taper is not None else frames
        mag = np.abs(np.fft.rfft(tapered, n=self.n_fft, axis=1))            # (F, K)

        out = np.zeros((frames.shape[0], 10))
        out[:, 0] = rms
        out[:, 1:5] = self._moments(mag)

        prev = np.empty_like(mag)                                           # (F, K)
        prev[0] = mag[0] if prev_mag is None else prev_mag
        prev[1:] = mag[:-1]
        diff = mag - prev
        out[:, 5] = np.abs(diff).sum(axis=1)

        power = mag * mag * self.power_weight                               # (F, K)
        for j, (k0, k1) in enumerate(self.band_bins):
            out[:, 6 + j] = np.sqrt(power[:, k0:k1].sum(axis=1))

        # Novelty: the share of this spectrum that is new (rising flux over total
        # magnitude), 0..1 and independent of gain, so one onset threshold fits any input.
        rising = np.maximum(diff, 0.0).sum(axis=1)
        total = mag.sum(axis=1)
        audible = (total > 0) & (rms > SILENCE_LEVEL)
        out[:, 9] = np.divide(rising, total, out=np.zeros_like(total), where=audible)
        return out, mag[-1].copy()

    def _moments(self, mag: np.ndarray) -> np.ndarray:
        """(F, K) magnitudes -> (F, 4) centroid, spread, skewness, kurtosis; 0 where undefined."""
        f = self.freqs
        total = mag.sum(axis=1)
        ok = total > 0
        with np.errstate(all="ignore"):
            centroid = np.where(ok, (mag * f).sum(axis=1) / total, 0.0)
            d = f[None, :] - centroid[:, None]                              # (F, K)
            d2 = d * d
            spread = np.where(ok, np.sqrt((mag * d2).sum(axis=1) / total), 0.0)
            ok &= spread > 0
            m3 = (mag * d2 * d).sum(axis=1) / total
            m4 = (mag * d2 * d2).sum(axis=1) / total
            skewness = np.where(ok, m3 / spread**3, 0.0)
            kurtosis = np.where(ok, m4 / spread**4, 0.0)
        moments = np.stack([centroid, spread, skewness, kurtosis], axis=1)
        # Denormal spectra can still overflow a quotient; report those as undefined too.
        return np.where(np.isfinite(moments), moments, 0.0)


class _Tracker:
    """The stateful per-frame features: ratios, onset, tempo. Scalars in, scalars out.

    Both paths feed it one frame at a time in order, so offline equals live by
    construction. Time constants are converted to frames with the hop.
    """

    def __init__(self, hop: float):
        self.hop = hop
        self._ratio_keep = math.exp(-hop / RATIO_TIME_S)
        self._level_sum = np.zeros(4)      # bass, mid, high, rms: exponentially weighted sums
        self._level_weight = np.zeros(4)   # ... and their weights (bias-corrected average)
        # Shift registers, newest last: copying a few hundred floats per frame is cheaper
        # than it sounds and keeps the tempo history in time order for autocorrelation.
        self._novelty = np.zeros(max(3, round(ONSET_HISTORY_S / hop)))
        self._novelty_count = 0
        self._refractory = max(1, round(ONSET_REFRACTORY_S / hop))
        self._since_onset = self._refractory
        self._strength = np.zeros(max(8, round(TEMPO_HISTORY_S / hop)))
        self._strength_count = 0
        self._min_strength = round(TEMPO_MIN_HISTORY_S / hop)
        self._lags = (max(3, math.ceil(60.0 / (TEMPO_RANGE_BPM[1] * hop))),
                      math.floor(60.0 / (TEMPO_RANGE_BPM[0] * hop)))
        self._n_corr = fft_size(2 * len(self._strength))

    def update(self, levels: np.ndarray, novelty: float) -> tuple[float, ...]:
        """levels: (4,) bass, mid, high, rms. Returns onset, 4 ratios, tempo."""
        onset = self._onset(novelty)
        ratios = self._ratios(levels)
        tempo = self._tempo(novelty)
        return (onset, *ratios, tempo)

    def _ratios(self, levels: np.ndarray) -> list[float]:
        a = self._ratio_keep
        out = []
        for i, v in enumerate(levels):
            if v > SILENCE_LEVEL:
                # Bias-corrected exponential average: while the weight is still small
                # it is the plain mean so far, so the ratio is ~1 from the first frames.
                self._level_sum[i] = a * self._level_sum[i] + (1.0 - a) * v
                self._level_weight[i] = a * self._level_weight[i] + (1.0 - a)
                out.append(float(v * self._level_weight[i] / self._level_sum[i]))
            else:
                out.append(0.0)
        return out

    def _onset(self, novelty: float) -> float:
        n = self._novelty_count
        median = float(np.median(self._novelty[-n:])) if n else 0.0
        hit = novelty > ONSET_FACTOR * median + ONSET_FLOOR and self._since_onset >= self._refractory
        self._since_onset = 0 if hit else self._since_onset + 1
        _push(self._novelty, novelty)
        self._novelty_count = min(n + 1, len(self._novelty))
        return 1.0 if hit else 0.0

    def _tempo(self, novelty: float) -> float:
        _push(self._strength, novelty)
        self._strength_count = n = min(self._strength_count + 1, len(self._strength))
        lo, hi = self._lags
        if lo > hi or n < max(self._min_strength, hi + 3):
            return 0.0  # too early, or frames too far apart to see a beat in 60..200 BPM
        x = self._strength[-n:]
        x = x - x.mean()
        spectrum = np.fft.rfft(x, self._n_corr)
        # Biased autocorrelation (no 1/(n - lag)): it favours the shortest strong period.
        r = np.fft.irfft(spectrum.real**2 + spectrum.imag**2, self._n_corr)[: hi + 3]
        if r[0] < TEMPO_MIN_VARIANCE * n:
            return 0.0  # no rhythm to speak of (a steady tone): its wiggles are not a beat
        # Onsets land on the frame grid, so a beat of 34.5 frames shows as lags 34 and 35
        # alternately; a small triangular blur over lags counts those pairs together.
        lags = np.arange(lo - 1, hi + 2)                                # (m,)
        score = 0.5 * r[lags - 1] + r[lags] + 0.5 * r[lags + 1]
        i = 1 + int(np.argmax(score[1:-1]))
        # A beat also correlates at twice its period; prefer the shorter one when it is
        # nearly as strong, so 174 BPM is not read as 87.
        half = np.flatnonzero(np.abs(lags - lags[i] / 2.0) <= 1.0)
        half = half[(half >= 1) & (half <= len(lags) - 2)]
        if len(half):
            j = half[int(np.argmax(score[half]))]
            if score[j] >= TEMPO_HALF_PREFERENCE * score[i]:
                i = j
        if score[i] < TEMPO_CONFIDENCE * r[0] or score[i] < score[i - 1] or score[i] < score[i + 1]:
            return 0.0
        # Parabolic interpolation refines the beat lag below one frame.
        curve = score[i - 1] - 2.0 * score[i] + score[i + 1]
        shift = 0.5 * (score[i - 1] - score[i + 1]) / curve if curve < 0 else 0.0
        return float(60.0 / ((lags[i] + shift) * self.hop))


def _push(register: np.ndarray, value: float) -> None:
    """Shift a history register left by one and put ``value`` last (newest)."""
    register[:-1] = register[1:]
    register[-1] = value


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
        self.taper = taper
        self.window_length = window_size(self.sample_rate, self.window)
        self._spectrum = _Spectrum(self.sample_rate, self.window_length, taper)
        self._frame = np.zeros((1, self.window_length))  # (1, L), reused by every process()
        self.reset()

    def reset(self) -> None:
        """Forget the stream so far (as if newly made)."""
        self._prev_mag: np.ndarray | None = None
        self._tracker = _Tracker(self.hop)

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
            out[i, 9:] = self._tracker.update(levels, float(row[9]))
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
        """Write ``time,<names>`` rows; atomic (temp file in the same folder, then rename)."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", newline="") as fh:
                rows = np.column_stack([self.times, self.values]).reshape(len(self), 1 + len(self.names))
                header = ",".join(("time", *self.names))
                np.savetxt(fh, rows, fmt="%.10g", delimiter=",", header=header, comments="")
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
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
