"""Network-bending operators: the one registry that names them, the numeric helpers they
share, and what each one's ``r`` means (``ParamRange``).

Every operator is ``op(x, r, **opts) -> Tensor`` for ``x`` of shape (B, C, H, W) or
(C, H, W), any channel count C. It keeps shape, dtype and device, never modifies ``x``
in place, and returns finite values for finite input whatever ``r`` is: a bend is driven
by live audio, and one loud transient must not turn the picture into NaN.

``r`` is the single scalar an audio mapping drives each frame. Operators whose paper form
has no scalar (``abs``, ``sobel``, ``mix``) take ``r`` as a blend amount, 0 = untouched,
so every operator can be faded in by a mapping. ``neutral`` on each function is the
``r`` that makes it the identity (``None`` where there is none).

The operators themselves live in three files, each registering into ``OPERATORS`` here
when the ``engine`` package is imported (``engine/__init__.py`` imports them, so any
``import engine.…`` sees the full registry; this module imports none of them):

* ``engine/value_operators.py``: point-wise and channel-space (the paper's ``add`` …
  ``reflect``, ``rotate`` with the named planes ``R1`` … ``R4``, ``mix``, ``noise``);
* ``engine/spatial_operators.py``: morphology, Sobel, and Broad et al.'s (2021) spatial
  transforms;
* ``engine/published_operators.py``: the rest of the authors' published code (dzluke/DAFX2024
  ``util.py``: log, exp, hadamard, the normalisations).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

Operator = Callable[..., Tensor]

OPERATORS: dict[str, Operator] = {}

# The paper's four named rotation planes, as ordered (i, j) pairs. The order carries the
# sense of rotation of the authors' 4x4 matrices: M[i, i] = M[j, j] = cos r,
# M[i, j] = -sin r, M[j, i] = +sin r. R2 and R3 are written with +sin above the diagonal
# in the paper, hence (2, 0) and (3, 0) rather than (0, 2) and (0, 3).
NAMED_PLANES: dict[str, tuple[int, int]] = {"R1": (1, 2), "R2": (2, 0), "R3": (3, 0), "R4": (0, 1)}

# |r| below this is treated as this for invert (1/r) and scale (1/r zoom): keeps the output
# finite (1/1e-3 = 1000 fits float16) while staying continuous for every usable r.
MIN_DIVISOR = 1e-3


def operator(name: str, neutral: Optional[float] = None) -> Callable[[Operator], Operator]:
    """Register ``fn`` under ``name``; ``neutral`` is the identity value of ``r`` if any."""

    def register(fn: Operator) -> Operator:
        if name in OPERATORS:
            raise ValueError(f"operator {name!r} registered twice")
        fn.neutral = neutral  # type: ignore[attr-defined]
        fn.op_name = name  # type: ignore[attr-defined]
        OPERATORS[name] = fn
        return fn

    return register


def get_operator(name: str) -> Operator:
    """The registered operator ``name``; an unknown name lists the valid ones."""
    try:
        return OPERATORS[name]
    except KeyError:
        raise ValueError(
            f"unknown operator {name!r}; valid operators: {', '.join(sorted(OPERATORS))}"
        ) from None


# -- helpers shared by the operator files ----------------------------------------------


def batched(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Run a (B, C, H, W)-only function on (B, C, H, W) or (C, H, W) input."""
    if x.dim() == 3:
        return fn(x.unsqueeze(0)).squeeze(0)
    return fn(x)


def finite(x: Tensor) -> Tensor:
    """Clamp overflow to the dtype's range: finite in, finite out, even in float16."""
    return torch.nan_to_num(x, nan=0.0)


def blend(x: Tensor, y: Tensor, r: float) -> Tensor:
    """(1 - r) x + r y: the operator faded in by r (r outside 0..1 extrapolates)."""
    return finite(torch.lerp(x, y, float(r)))


def describe() -> str:
    """One line per operator: name, neutral param, first docstring line. For `--help`."""
    lines = []
    for name in sorted(OPERATORS):
        fn = OPERATORS[name]
        doc = (fn.__doc__ or "").strip().splitlines()[0]
        neutral = "" if fn.neutral is None else f" (identity at r={fn.neutral:g})"
        lines.append(f"{name:15s} {doc}{neutral}")
    return "\n".join(lines)


# -- useful ranges (for controllers: OSC /amount, OSCQuery RANGE, the README's table) ----


@dataclass(frozen=True)
class ParamRange:
    """What an operator's ``r`` means and where it is useful.

    ``low``..``high`` is the span a 0..1 control (``/netbend/bend/<n>/amount``) sweeps and
    what OSCQuery advertises as RANGE; ``neutral`` is the identity value (the operator's
    own, None where there is none); ``unit`` says what r is in a user's words. ``limit``
    bounds |r| for any source (OSC, presets, mappings): within it a frame stays finite on
    the models netbend ships and tests (tests/test_operators.py checks every operator at
    +-limit), beyond it a value is refused at the edge instead of failing every frame.
    """

    low: float
    high: float
    unit: str
    limit: float = 1e4  # finite in float16 (max 65504) after one more multiply-add
    neutral: Optional[float] = None

    def param(self, amount: float) -> float:
        """The r of a 0..1 amount (clipped to 0..1): low + amount (high - low)."""
        a = min(1.0, max(0.0, float(amount)))
        return self.low + a * (self.high - self.low)

    def amount(self, param: float) -> float:
        """The 0..1 amount that gives ``param`` (clipped), the inverse of ``param``."""
        span = self.high - self.low
        return min(1.0, max(0.0, (float(param) - self.low) / span)) if span else 0.0


_TWO_PI = 2 * math.pi
_RANGES: dict[str, tuple] = {  # name: (low, high, unit[, limit])
    "add": (-2.0, 2.0, "latent units added"),
    "multiply": (0.0, 3.0, "factor"),
    "threshold": (-2.0, 2.0, "threshold level"),
    "threshold_abs": (0.0, 2.0, "threshold on |x|"),
    "invert": (0.25, 4.0, "r of 1/r - x"),
    "soft_threshold": (0.0, 2.0, "shrink amount"),
    "soft_threshold2": (0.0, 2.0, "threshold on |x|"),
    "power": (0.25, 3.0, "exponent", 4.0),  # |r| > 4 overflows inside the U-Net (tested)
    "clamp": (0.1, 4.0, "bound |r|"),
    "abs": (0.0, 1.0, "blend"),
    "noise": (0.0, 2.0, "noise std"),
    "rotate": (0.0, _TWO_PI, "radians"),
    "R1": (0.0, _TWO_PI, "radians"),
    "R2": (0.0, _TWO_PI, "radians"),
    "R3": (0.0, _TWO_PI, "radians"),
    "R4": (0.0, _TWO_PI, "radians"),
    "rotate6": (0.0, _TWO_PI, "radians"),
    "mix": (0.0, 1.0, "blend"),
    "reflect": (0.0, 3.0, "channel index (wraps)"),
    "erode": (1.0, 9.0, "kernel size (cells)", 1e3),
    "dilate": (1.0, 9.0, "kernel size (cells)", 1e3),
    "gradient": (1.0, 9.0, "kernel size (cells)", 1e3),
    "sobel": (0.0, 1.0, "blend"),
    "translate": (0.0, 1.0, "fraction of the size (wraps)"),
    "scale": (0.5, 2.0, "zoom factor"),
    "rotate_spatial": (0.0, _TWO_PI, "radians"),
    "flip_h": (0.0, 1.0, "unused"),
    "flip_v": (0.0, 1.0, "unused"),
    "ablate": (0.0, 1.0, "blend (1 = zeroed)"),
    "binary": (0.0, 1.0, "level within each map's min..max"),
    "log": (1.5, 10.0, "log base"),
    "rescale": (0.0, 1.0, "blend"),
    "exp": (0.0, 0.1, "scale of the matrix exponent", 3.0),  # e^(r X) overflows past ~10 (tested)
    "hadamard": (0.0, 1.0, "blend"),
    "normalize_max": (0.0, 1.0, "blend"),
    "normalize_l2": (0.0, 1.0, "blend"),
    "normalize_mean": (0.0, 1.0, "blend"),
}
# An operator registered without an entry above (a new one) gets this until it declares its own.
_DEFAULT_RANGE = (0.0, 1.0, "r")


def param_range(name: str) -> ParamRange:
    """The declared ``ParamRange`` of operator ``name`` (unknown name: ValueError listing them)."""
    fn = get_operator(name)
    low, high, unit, *limit = _RANGES.get(name, _DEFAULT_RANGE)
    return ParamRange(low, high, unit, *(limit or [1e4]), neutral=fn.neutral)


def declared_ranges() -> set[str]:
    """The operators with a range of their own (tests check every registered one has one)."""
    return set(_RANGES)
