"""The stateless spectral features of audio windows, batched: rms, the moments of the
magnitude spectrum, flux, band levels and novelty (``engine.features`` puts them together
with the history-dependent ones of ``engine.feature_history``).

The FFT is zero-padded to the next power of two, as in the authors' code; the window is a
periodic Hann taper unless the caller asks for none (see ``engine.features`` for why).
"""
from __future__ import annotations

import math

import numpy as np

# Band edges in Hz; the top band runs to Nyquist. Bass up to 250 Hz is the usual
# kick-and-bass split in VJ tools; 4 kHz separates hats and air from voice and synths.
BANDS: dict[str, tuple[float, float]] = {
    "bass": (20.0, 250.0), "mid": (250.0, 4000.0), "high": (4000.0, math.inf),
}

# Below -90 dBFS (under 16-bit dither) a level counts as silence: ratios read 0, slow
# averages hold still (so loudness after a pause is judged against the music before it),
# and no onset fires on noise floor.
SILENCE_LEVEL = 10.0 ** (-90.0 / 20.0)


def fft_size(length: int) -> int:
    """Next power of two >= length: the paper zero-pads each window to it."""
    return 1 << max(0, int(length) - 1).bit_length()


class Spectrum:
    """Per-(rate, window) constants and the stateless batched analysis of windows."""

    def __init__(self, sample_rate: float, length: int, hann: bool):
        self.n_fft = fft_size(length)
        self.freqs = np.fft.rfftfreq(self.n_fft, 1.0 / sample_rate)  # (K,)
        n = np.arange(length)
        # Periodic Hann: the analysis convention (scipy/librosa "hann").
        self.taper = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)) if hann else None
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
