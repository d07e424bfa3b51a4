"""The audio features that depend on earlier frames: loudness ratios, onsets and tempo.

Scalars in, scalars out, one frame at a time in order: the live path and the offline path
(``engine.features``) both feed it so, which makes offline equal live by construction.
"""
from __future__ import annotations

import math

import numpy as np

from .spectrum import SILENCE_LEVEL, fft_size

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


class FeatureHistory:
    """The stateful per-frame features: ratios, onset, tempo. Time constants are converted
    to frames with the hop.
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
