"""Input level: gain in dB and the noise gate, as every audio source's reader applies them.

``live.audio.input.AudioInput`` and ``live.audio.filesource.FileSource`` both hand the feature thread
mono windows with the same two controls, checked the same way when they are set.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["checked_db", "gain_and_gate"]


def checked_db(db: float | None, name: str, allow_none: bool) -> float | None:
    """``db`` as a finite float (None passes where ``allow_none``); else a ValueError naming ``name``."""
    if db is None and allow_none:
        return None
    try:
        v = float(db)
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number of dB{' or None' if allow_none else ''}, got {db!r}")
    return v


def gain_and_gate(x: np.ndarray, gain_db: float, gate_db: float | None) -> np.ndarray:
    """Input gain, then the noise gate: a window quieter than the gate reads as silence.
    Works in place on the float32 (n,) window and returns it."""
    if gain_db != 0.0:
        x *= np.float32(10.0 ** (gain_db / 20.0))
    if gate_db is not None and len(x):
        rms = math.sqrt(float(np.dot(x, x)) / len(x))
        if rms < 10.0 ** (gate_db / 20.0):
            x[:] = 0.0
    return x
