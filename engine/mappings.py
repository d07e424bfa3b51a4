"""Mappings: how an audio feature becomes a bend's parameter, frame by frame.

A ``Mapping`` is data (it lives in presets and is set over OSC); a ``MappingState`` is
the small stateful evaluator the render thread keeps per mapping. Each frame:

1. normalise the feature into 0..1 by ``in_range`` (or, with ``"auto"``, by a running
   min/max that adapts to the signal, so a mapping works at any input gain), clipped;
2. ``invert``: u -> 1 - u;
3. ``curve``: linear u; exp (e^(k u) - 1) / (e^k - 1); log log(1 + k u) / log(1 + k),
   with k = CURVE_K;
4. one-pole smoothing, a separate time constant for rising (attack) and falling
   (release) values, 0 ms = instant;
5. scale into ``out_range`` (lo may exceed hi: the parameter then falls as the feature
   rises).

The paper's example, rms -> rotation angle 0..2 pi:
``Mapping("rms", in_range=(0, 0.5), out_range=(0, 2 * math.pi))``.

``MappedBends`` is the one feature -> param driver: a chain of bends, each optionally
driven by a mapping, evaluated once per frame. The live show, offline renders and the
benchmark all drive bends through it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Hashable, Literal, Optional, Sequence

from .beat import BEAT_FEATURES
from .features import FEATURE_NAMES

CURVES: tuple[str, ...] = ("linear", "exp", "log")
# Steepness of the exp and log curves: e^4 ~ 55, so the exp curve stays under 0.2 for
# the lower half of the input (it lets only the loud part through) and log is its
# mirror image (it lifts quiet detail). Both still run exactly 0 -> 0 and 1 -> 1.
CURVE_K = 4.0
# The auto range forgets its extremes with this time constant: long enough to span a
# musical phrase, short enough to re-adapt within a few bars when the gain changes.
AUTO_DECAY_S = 5.0
# The auto range never shrinks below this fraction of the signal's magnitude, so a
# steady signal reads as "at its top" (u = 1) instead of its noise being blown up to
# full scale.
AUTO_MIN_SPAN = 0.25

Curve = Literal["linear", "exp", "log"]


def _pair(name: str, value: Any) -> tuple[float, float]:
    """A (lo, hi) pair of finite floats from a tuple or list (TOML gives lists)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{name} must be a pair [lo, hi] of finite numbers, got {value!r}")
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair [lo, hi] of finite numbers, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} must be a pair [lo, hi] of finite numbers, got {value!r}")
    return lo, hi


def _time_ms(name: str, value: Any) -> float:
    try:
        ms = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a time in ms, >= 0 and finite, got {value!r}") from None
    if not math.isfinite(ms) or ms < 0:
        raise ValueError(f"{name} must be a time in ms, >= 0 and finite, got {value!r}")
    return ms


@dataclass(frozen=True)
class Mapping:
    """One audio feature driving one parameter. Validated when made.

    feature: a name in FEATURE_NAMES.
    in_range: (lo, hi) feature values that map to 0 and 1, or "auto" to adapt.
    out_range: (lo, hi) parameter values for 0 and 1; lo > hi reverses.
    curve: "linear", "exp" or "log" (see CURVE_K).
    attack_ms, release_ms: smoothing time constants for rising / falling values.
    invert: map high feature values to low parameter values (before the curve).
    """

    feature: str
    in_range: tuple[float, float] | Literal["auto"] = "auto"
    out_range: tuple[float, float] = (0.0, 1.0)
    curve: Curve = "linear"
    attack_ms: float = 0.0
    release_ms: float = 0.0
    invert: bool = False

    def __post_init__(self) -> None:
        if self.feature not in FEATURE_NAMES and self.feature not in BEAT_FEATURES:
            raise ValueError(f"unknown audio feature {self.feature!r}; allowed: {', '.join(FEATURE_NAMES)}, "
                             f"and the beat's {', '.join(BEAT_FEATURES)}")
        if isinstance(self.in_range, str):
            if self.in_range != "auto":
                raise ValueError(f"in_range must be \"auto\" or a pair [lo, hi], got {self.in_range!r}")
        else:
            lo, hi = _pair("in_range", self.in_range)
            if lo == hi:
                raise ValueError(f"in_range needs lo != hi (it is divided by hi - lo), got {self.in_range!r}")
            object.__setattr__(self, "in_range", (lo, hi))
        object.__setattr__(self, "out_range", _pair("out_range", self.out_range))
        if self.curve not in CURVES:
            raise ValueError(f"unknown curve {self.curve!r}; allowed: {', '.join(CURVES)}")
        object.__setattr__(self, "attack_ms", _time_ms("attack_ms", self.attack_ms))
        object.__setattr__(self, "release_ms", _time_ms("release_ms", self.release_ms))
        if not isinstance(self.invert, bool):
            raise ValueError(f"invert must be true or false, got {self.invert!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data for TOML/OSC/JSON: ranges as lists, "auto" as the string."""
        d = asdict(self)
        d["in_range"] = self.in_range if self.in_range == "auto" else list(self.in_range)
        d["out_range"] = list(self.out_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Mapping:
        """The inverse of to_dict; unknown keys are an error naming them and the allowed keys."""
        if not isinstance(d, dict):
            raise ValueError(f"a mapping must be a table of keys, got {type(d).__name__}")
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(allowed), key=str)
        if unknown:
            raise ValueError(
                f"unknown mapping key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}")
        if "feature" not in d:
            raise ValueError(f"a mapping needs a 'feature', one of: {', '.join(FEATURE_NAMES)}")
        return cls(**d)


def _shape(mapping: Mapping, u: float) -> float:
    """Steps 2-3: invert, then the curve. u in 0..1 -> 0..1."""
    if mapping.invert:
        u = 1.0 - u
    if mapping.curve == "exp":
        return math.expm1(CURVE_K * u) / math.expm1(CURVE_K)
    if mapping.curve == "log":
        return math.log1p(CURVE_K * u) / math.log1p(CURVE_K)
    return u


def _scale(mapping: Mapping, u: float) -> float:
    """Step 5: 0..1 into out_range (works for lo > hi)."""
    lo, hi = mapping.out_range
    return lo + (hi - lo) * u


def _clip01(u: float) -> float:
    return 0.0 if u < 0.0 else 1.0 if u > 1.0 else u


def map_value(mapping: Mapping, value: float) -> float:
    """The stateless path: fixed range ("auto" reads as 0..1), no smoothing.

    A non-finite value reads as the bottom of the input range.
    """
    lo, hi = (0.0, 1.0) if mapping.in_range == "auto" else mapping.in_range
    v = float(value)
    u = _clip01((v - lo) / (hi - lo)) if math.isfinite(v) else 0.0
    return _scale(mapping, _shape(mapping, u))


class MappingState:
    """The running evaluation of one Mapping: auto range and smoothing state.

    ``update(value, dt)`` once per frame with the newest feature value and the seconds
    since the last update. Never raises on bad values and always returns a finite
    number: a non-finite feature value (or dt) keeps the last output.
    """

    def __init__(self, mapping: Mapping):
        self.mapping = mapping
        self.reset()

    def reset(self) -> None:
        """Forget the signal so far (auto range, smoothing)."""
        self._lo = math.nan          # auto range, tracked in feature units
        self._hi = math.nan
        self._smoothed = math.nan    # step 4 output, 0..1; NaN until the first value
        self.value = _scale(self.mapping, 0.0)  # the last output

    def update(self, value: float, dt: float) -> float:
        """Feed one feature value (dt seconds after the last) and return the parameter."""
        v = float(value)
        dt = float(dt)
        if not math.isfinite(v):
            return self.value
        if not math.isfinite(dt) or dt < 0:
            dt = 0.0
        m = self.mapping
        if m.in_range == "auto":
            u = self._auto_normalise(v, dt)
        else:
            lo, hi = m.in_range
            u = _clip01((v - lo) / (hi - lo))
        target = _shape(m, u)

        if math.isnan(self._smoothed):
            self._smoothed = target  # start where the signal is, not with a ramp from 0
        else:
            tau_ms = m.attack_ms if target > self._smoothed else m.release_ms
            keep = math.exp(-dt * 1000.0 / tau_ms) if tau_ms > 0 else 0.0
            self._smoothed = target + (self._smoothed - target) * keep
        self.value = _scale(m, self._smoothed)
        return self.value

    def _auto_normalise(self, v: float, dt: float) -> float:
        """0..1 position of v in the running min/max, which relax toward v over AUTO_DECAY_S."""
        if math.isnan(self._lo):
            self._lo = self._hi = v
        else:
            pull = 1.0 - math.exp(-dt / AUTO_DECAY_S)
            # A new extreme is taken at once; an old one relaxes toward the present,
            # so the range follows a fade-out or a lowered gain within a few seconds.
            self._lo = v if v < self._lo else self._lo + (v - self._lo) * pull
            self._hi = v if v > self._hi else self._hi + (v - self._hi) * pull
        lo = min(self._lo, self._hi - AUTO_MIN_SPAN * max(abs(self._lo), abs(self._hi)))
        span = self._hi - lo
        if not span > 1e-12:
            return 0.0  # flat silence (all zeros) reads as the bottom, not as full scale
        return _clip01((v - lo) / span)


class MappedBends:
    """Bends whose params follow audio features through mappings, with smoothing state.

    ``update(features, dt)`` returns this frame's bends: a mapped bend gets its param from
    its mapping (``features[mapping.feature]``); an unmapped one keeps its own. Nothing is
    rebuilt: only params change. ``set`` replaces the chain (the live show does, after a
    command) and keeps the smoothing state of every bend whose key and mapping are the
    same as before, so editing one bend does not make the others jump.
    """

    def __init__(self, bends: Sequence = (), mappings: Sequence[Optional[Mapping]] = (),
                 keys: Optional[Sequence[Hashable]] = None):
        self.bends: list = []
        self.mappings: list[Optional[Mapping]] = []
        self._states: dict[Hashable, tuple[Mapping, MappingState]] = {}
        self._keys: list[Hashable] = []
        self.set(bends, mappings, keys)

    def set(self, bends: Sequence, mappings: Sequence[Optional[Mapping]] = (),
            keys: Optional[Sequence[Hashable]] = None) -> None:
        """A new chain; ``mappings[i]`` drives ``bends[i]`` (None or missing: not driven);
        ``keys[i]`` names bend i across calls (default: its position)."""
        mappings = list(mappings) + [None] * (len(bends) - len(mappings))
        if len(mappings) != len(bends):
            raise ValueError(f"{len(mappings)} mappings for {len(bends)} bends")
        keys = list(range(len(bends))) if keys is None else list(keys)
        if len(keys) != len(bends):
            raise ValueError(f"{len(keys)} keys for {len(bends)} bends")
        kept = {}
        for key, mapping in zip(keys, mappings):
            held = self._states.get(key)
            if mapping is not None:
                kept[key] = held if held is not None and held[0] == mapping else (mapping, MappingState(mapping))
        self.bends, self.mappings, self._keys, self._states = list(bends), mappings, keys, kept

    def update(self, features, dt: float) -> list:
        out = []
        for bend, key in zip(self.bends, self._keys):
            held = self._states.get(key)
            if held is None:
                out.append(bend)
            else:
                mapping, state = held
                out.append(bend.with_param(state.update(float(features[mapping.feature]), dt)))
        return out

