"""The work `netbend bench` measures: the test audio its simulated feature thread reads,
the bends-on frames' bends (each param following rms through a live mapping, driven by
``engine.mappings.MappedBends`` as in a show), and the churn frames' ever-changing bends."""
from __future__ import annotations

import math

import numpy as np

from engine.bends import Bend
from engine.mappings import MappedBends, Mapping

AUDIO_RATE = 44100
FEATURE_WINDOW_S = 0.050  # the paper's window
FEATURE_HOP_S = 0.010  # how often the simulated feature thread publishes a frame

# The bends switched on for "--bends N" (the first N, cycling), each driven by rms as a
# live mapping would drive it. Kernel sizes stay small: a 9x9 erosion is a different
# benchmark, not a bend overhead.
RMS_RANGE = (0.0, 0.4)
OPERATOR_RANGES: dict[str, tuple[tuple[float, float], dict]] = {
    "rotate": ((0.0, 2 * math.pi), {"plane": "R1"}),
    "erode": ((2.0, 3.0), {}),
    "multiply": ((0.8, 1.2), {}),
    "translate": ((0.0, 0.25), {}),
    "dilate": ((2.0, 3.0), {}),
    "add": ((-0.2, 0.2), {}),
    "flip_h": ((0.0, 0.0), {}),
}
BEND_PLAN: tuple[tuple[str, str], ...] = (
    ("rotate", "mid"), ("erode", "up.1"), ("multiply", "down.1"), ("translate", "up.2"),
    ("dilate", "down.2"), ("add", "up.0"), ("flip_h", "down.3"),
)
CHURN_OPERATORS = tuple(OPERATOR_RANGES)  # 7 operators x 9 block points: 63 combinations


def audio_signal(t: np.ndarray) -> np.ndarray:
    """The test audio at times t (s): a 220 Hz tone swelling at 0.7 Hz and a 3 kHz partial
    pulsing at 2 Hz, so rms (and with it every mapped param) moves from frame to frame."""
    swell = 0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t)
    pulse = 0.5 + 0.5 * np.sin(2 * np.pi * 2.0 * t)
    return 0.5 * swell * np.sin(2 * np.pi * 220 * t) + 0.1 * pulse * np.sin(2 * np.pi * 3000 * t)


def audio_window(capture: float) -> np.ndarray:
    """The 50 ms of test audio ending at ``capture`` seconds of the simulated audio clock."""
    n = round(FEATURE_WINDOW_S * AUDIO_RATE)
    end = round(capture * AUDIO_RATE)
    return audio_signal(np.arange(end - n, end) / AUDIO_RATE)


def mapped_plan(plan: list[tuple[str, str]]) -> MappedBends:
    """The bends-on frames' bends: (operator, layer) each, its param following rms through
    a live mapping onto the operator's range, as the show's render thread drives it."""
    bends, mappings = [], []
    for operator, layer in plan:
        (lo, hi), opts = OPERATOR_RANGES[operator]
        bends.append(Bend(operator, layer, lo, opts=opts))
        mappings.append(Mapping("rms", in_range=RMS_RANGE, out_range=(lo, hi)))
    return MappedBends(bends, mappings)


def churn_bends(n: int, index: int, layers: list[str], rms: float) -> list[Bend]:
    """n bends, each with a different operator, layer and param than at ``index - 1``."""
    bends = []
    for i in range(n):
        op = CHURN_OPERATORS[(index + 2 * i) % len(CHURN_OPERATORS)]
        layer = layers[(index + 3 * i) % len(layers)]
        (lo, hi), opts = OPERATOR_RANGES[op]
        u = min(1.0, max(0.0, rms / RMS_RANGE[1]))
        bends.append(Bend(op, layer, lo + (hi - lo) * ((u + 0.37 * index) % 1.0), opts=opts))
    return bends
