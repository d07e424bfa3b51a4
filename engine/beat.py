"""Beat-synchronous features: where in the beat and the bar a moment falls, as numbers a
mapping can use like any audio feature. Pure functions of a beat position (beats since an
origin, a float) and the beats per bar; the live tempo clock (live/control/tempo.py) and
Ableton Link supply the position.

    beat_phase   0..1 through the current beat
    bar_phase    0..1 through the current bar
    beat         1.0 for the first PULSE of each beat, else 0 (a trigger)
    lfo_sine     0..1 sine, one cycle a beat;   lfo_sine_bar one cycle a bar
    lfo_saw      0..1 ramp, one a beat;          lfo_saw_bar
    lfo_square   1 for the first half of a beat, else 0; lfo_square_bar
    lfo_sine_2   a sine at twice the beat rate (eighth notes)
"""
from __future__ import annotations

import math

BEAT_FEATURES: tuple[str, ...] = ("beat_phase", "bar_phase", "beat", "lfo_sine", "lfo_saw", "lfo_square",
                                  "lfo_sine_bar", "lfo_saw_bar", "lfo_square_bar", "lfo_sine_2")
PULSE = 0.1  # of a beat: how long the `beat` trigger stays 1 (50 ms at 120 BPM)


def beat_features(beats: float, beats_per_bar: int = 4) -> dict[str, float]:
    """Every beat feature at beat position ``beats`` (finite; a non-finite position reads 0)."""
    if not math.isfinite(beats):
        beats = 0.0
    phase = beats % 1.0
    bar = (beats / beats_per_bar) % 1.0
    half = (2 * beats) % 1.0
    return {
        "beat_phase": phase, "bar_phase": bar, "beat": 1.0 if phase < PULSE else 0.0,
        "lfo_sine": 0.5 - 0.5 * math.cos(2 * math.pi * phase), "lfo_saw": phase,
        "lfo_square": 1.0 if phase < 0.5 else 0.0,
        "lfo_sine_bar": 0.5 - 0.5 * math.cos(2 * math.pi * bar), "lfo_saw_bar": bar,
        "lfo_square_bar": 1.0 if bar < 0.5 else 0.0,
        "lfo_sine_2": 0.5 - 0.5 * math.cos(2 * math.pi * half),
    }
