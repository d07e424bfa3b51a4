"""The built-in demo track: a few seconds of synthesised music that exercises every
feature (kick drum for bass and onsets, a swelling chord pad for rms and centroid, hi-hats
for the high band), with a break of silence, so `netbend render` has something to show on a
fresh machine and a render shows both what the music does and what quiet does."""
from __future__ import annotations

import numpy as np

DEMO_SECONDS = 8.0
DEMO_RATE = 44100
DEMO_BPM = 120.0
DEMO_BREAK = (4.0, 5.5)  # seconds of silence in the middle: the picture must settle, not flicker


def demo_audio(seconds: float = DEMO_SECONDS, sample_rate: int = DEMO_RATE, bpm: float = DEMO_BPM) -> np.ndarray:
    """Stereo float32 samples, shape (n, 2), peak below 1."""
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    beat = 60.0 / bpm
    out = np.zeros(n)

    # pad: A minor then F major, two bars each, swelling in and out every bar
    bar = 4 * beat
    chords = [(220.0, 261.63, 329.63), (174.61, 220.0, 261.63)]
    chord_of = ((t // (2 * bar)) % 2).astype(int)
    swell = 0.5 - 0.5 * np.cos(2 * np.pi * t / bar)
    for k in range(3):
        freq = np.where(chord_of == 0, chords[0][k], chords[1][k])
        phase = 2 * np.pi * np.cumsum(freq) / sample_rate
        out += 0.08 * swell * (np.sin(phase) + 0.3 * np.sin(2 * phase))

    # kick on every beat: a pitch-dropping sine with a fast decay
    kick_len = int(0.25 * sample_rate)
    tk = np.arange(kick_len) / sample_rate
    kick = np.sin(2 * np.pi * (50 * tk + 60 * (1 - np.exp(-tk * 30)) / 30)) * np.exp(-tk * 14)
    # hi-hat on the off-beats: decaying white noise from a fixed seed
    hat_len = int(0.05 * sample_rate)
    hat = np.random.default_rng(7).standard_normal(hat_len) * np.exp(-np.arange(hat_len) / (0.01 * sample_rate))
    hat = np.diff(hat, prepend=0.0)  # first difference tilts it towards the high band
    for i in range(int(seconds / beat) + 1):
        start = int(round(i * beat * sample_rate))
        if start < n:
            seg = min(kick_len, n - start)
            out[start:start + seg] += 0.6 * kick[:seg]
        off = int(round((i + 0.5) * beat * sample_rate))
        if off < n:
            seg = min(hat_len, n - off)
            out[off:off + seg] += 0.1 * hat[:seg]

    # the break: silence with 10 ms fades, so it starts and ends without a click
    fade = 0.01
    gate = np.clip(np.maximum(DEMO_BREAK[0] - t, t - DEMO_BREAK[1]) / fade, 0.0, 1.0)
    out *= gate
    out /= max(1.0, np.abs(out).max() / 0.9)
    stereo = np.stack([out, np.roll(out, 64)], axis=1)  # a touch of width
    return stereo.astype(np.float32)
