"""Network-bending operators: pure tensor functions and the one registry that names them.

Every operator is ``op(x, r, **opts) -> Tensor`` for ``x`` of shape (B, C, H, W) or
(C, H, W), any channel count C. It keeps shape, dtype and device, never modifies ``x``
in place, and returns finite values for finite input whatever ``r`` is: a bend is driven
by live audio, and one loud transient must not turn the picture into NaN.

``r`` is the single scalar an audio mapping drives each frame. Operators whose paper form
has no scalar (``abs``, ``sobel``, ``mix``) take ``r`` as a blend amount, 0 = untouched,
so every operator can be faded in by a mapping. ``neutral`` on each function is the
``r`` that makes it the identity (``None`` where there is none).

Sources: Dzwonczyk, Cella, Ban (DAFx 2024) and the authors' published code (github
dzluke/DAFX2024, ``util.py``) for the point-wise, rotation, morphological and normalising
operators; Broad et al. (2021) for the spatial ones. ``R1`` … ``R4`` are registered as
operators of their own (``rotate`` on that plane), so an OSC controller can send
``/netbend/bend/1/operator s R1``.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import kornia  # sobel; morphology is computed here (see _flat_window)
import torch
import torch.nn.functional as F
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
_MIN_DIVISOR = 1e-3


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


# -- helpers ------------------------------------------------------------------------------


def _batched(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Run a (B, C, H, W)-only function on (B, C, H, W) or (C, H, W) input."""
    if x.dim() == 3:
        return fn(x.unsqueeze(0)).squeeze(0)
    return fn(x)


def _finite(x: Tensor) -> Tensor:
    """Clamp overflow to the dtype's range: finite in, finite out, even in float16."""
    return torch.nan_to_num(x, nan=0.0)


def _blend(x: Tensor, y: Tensor, r: float) -> Tensor:
    """(1 - r) x + r y: the operator faded in by r (r outside 0..1 extrapolates)."""
    return _finite(torch.lerp(x, y, float(r)))


def _channel_dim_size(x: Tensor) -> int:
    return x.shape[-3]


def _kernel_size(r: float, x: Tensor) -> int:
    """Kernel side from r: at least 1 (identity), at most the feature map's smaller side."""
    if not math.isfinite(r):
        r = 1.0
    return int(max(1, min(round(abs(r)), min(x.shape[-2:]))))


def _affine(x: Tensor, theta: Tensor) -> Tensor:
    """Resample x through a 2x3 affine map (output coords -> input coords), reflecting at
    the borders so a zoom-out or a rotation never pulls in black."""

    def warp(x4: Tensor) -> Tensor:
        th = theta.to(device=x4.device, dtype=x4.dtype).expand(x4.shape[0], 2, 3)
        grid = F.affine_grid(th, list(x4.shape), align_corners=False)
        return F.grid_sample(x4, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    return _batched(warp, x)


# -- the paper's point-wise operators ----------------------------------------------------


@operator("add", neutral=0.0)
def add(x: Tensor, r: float) -> Tensor:
    """x + r. Shape: any, kept."""
    return _finite(x + r)


@operator("multiply", neutral=1.0)
def multiply(x: Tensor, r: float) -> Tensor:
    """x * r. Shape: any, kept."""
    return _finite(x * r)


@operator("threshold")
def threshold(x: Tensor, r: float) -> Tensor:
    """The paper's eq. 3: 1 where x >= r, else 0."""
    return (x >= r).to(x.dtype)


@operator("threshold_abs", neutral=0.0)
def threshold_abs(x: Tensor, r: float) -> Tensor:
    """The authors' published threshold: 0 where |x| < r, x elsewhere."""
    return torch.where(x.abs() < r, torch.zeros_like(x), x)


@operator("invert")
def invert(x: Tensor, r: float) -> Tensor:
    """1/r - x. |r| < 1e-3 acts as +-1e-3 (r = 0 as +1e-3) so the offset stays finite."""
    r = float(r) if math.isfinite(r) else 0.0
    safe = math.copysign(max(abs(r), _MIN_DIVISOR), r if r != 0 else 1.0)
    return _finite(1.0 / safe - x)


@operator("soft_threshold", neutral=0.0)
def soft_threshold(x: Tensor, r: float) -> Tensor:
    """sign(x) * max(|x| - |r|, 0): shrink towards zero. Defined (0) at x = 0, unlike the
    authors' x / |x| form."""
    return torch.sign(x) * torch.clamp(x.abs() - abs(r), min=0.0)


@operator("power", neutral=1.0)
def power(x: Tensor, r: float) -> Tensor:
    """sign(x) * |x|^r. Sign-preserving so negative latents stay defined; for r < 0 the
    magnitude is floored at 1e-3 and the result clamped to the dtype's range."""
    magnitude = x.abs()
    if r < 0:
        magnitude = magnitude.clamp(min=_MIN_DIVISOR)
    return _finite(torch.sign(x) * magnitude.pow(r))


@operator("clamp")
def clamp(x: Tensor, r: float, lo: Optional[float] = None, hi: Optional[float] = None) -> Tensor:
    """Clamp to [lo, hi]; a bound not given is -|r| (lo) or +|r| (hi), so ``clamp`` alone
    follows r and ``opts = {lo = -1, hi = -0.5}`` is the authors' clamp((min, max)).
    lo > hi are swapped."""
    bound = abs(r) if math.isfinite(r) else torch.finfo(x.dtype).max
    a = -bound if lo is None else float(lo)
    b = bound if hi is None else float(hi)
    a, b = min(a, b), max(a, b)
    return x.clamp(a, b)


@operator("abs", neutral=0.0)
def absolute(x: Tensor, r: float) -> Tensor:
    """|x| faded in by r (1 = |x|)."""
    return _blend(x, x.abs(), r)


@operator("noise", neutral=0.0)
def noise(x: Tensor, r: float, seed: int = 0) -> Tensor:
    """x + r * N(0, 1). The noise is drawn once per (seed, shape) and reused, so it is
    deterministic and costs nothing per frame; change ``seed`` for another pattern. Driven
    by rms (a mapping in_range [0, 1] -> out_range [0, 1]) it is the authors'
    add_gaussian_rms, except that their noise was drawn afresh every frame."""
    return _finite(x + r * _fixed_noise(seed, tuple(x.shape), x.device, x.dtype))


@functools.lru_cache(maxsize=32)
def _fixed_noise(seed: int, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> Tensor:
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn(shape, generator=gen).to(device=device, dtype=dtype)


# -- channel-space operators -------------------------------------------------------------


def _plane(plane: "str | Sequence[int]", channels: int) -> tuple[int, int]:
    if isinstance(plane, str):
        if plane not in NAMED_PLANES:
            raise ValueError(f"unknown plane {plane!r}; use one of {sorted(NAMED_PLANES)} or a pair (i, j)")
        i, j = NAMED_PLANES[plane]
    else:
        i, j = (int(v) for v in plane)
    if i == j or not (0 <= i < channels and 0 <= j < channels):
        raise ValueError(f"rotation plane ({i}, {j}) needs two different channels in 0..{channels - 1}")
    return i, j


def rotation_matrix(r: float, plane: "str | Sequence[int]", channels: int = 4) -> Tensor:
    """The C x C matrix of a rotation by r in plane (i, j); R1..R4 equal the paper's."""
    i, j = _plane(plane, channels)
    m = torch.eye(channels, dtype=torch.float64)
    c, s = math.cos(r), math.sin(r)
    m[i, i], m[j, j], m[i, j], m[j, i] = c, c, -s, s
    return m


@operator("rotate", neutral=0.0)
def rotate(x: Tensor, r: float, plane: "str | Sequence[int]" = "R1") -> Tensor:
    """Rotate the channel vector at every pixel by angle r in ``plane`` (R1..R4 or (i, j)).
    Touches only channels i and j, so it costs two fused multiply-adds at any C."""
    i, j = _plane(plane, _channel_dim_size(x))
    r = float(r) if math.isfinite(r) else 0.0
    c, s = math.cos(r), math.sin(r)
    xi, xj = x[..., i, :, :], x[..., j, :, :]
    out = x.clone()
    out[..., i, :, :] = c * xi - s * xj
    out[..., j, :, :] = s * xi + c * xj
    return out


def _plane_rotation(name: str) -> Operator:
    def op(x: Tensor, r: float) -> Tensor:
        return rotate(x, r, plane=name)

    i, j = NAMED_PLANES[name]
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"The paper's {name}: rotate by r in channel plane ({i}, {j}); rotate with plane={name}."
    return op


for _name in NAMED_PLANES:
    operator(_name, neutral=0.0)(_plane_rotation(_name))


@operator("rotate6", neutral=0.0)
def rotate6(x: Tensor, r: float, planes: Optional[Sequence[Sequence[int]]] = None) -> Tensor:
    """Rotate by r in each plane in turn: by default the six planes of channels 0..3, in
    the order (0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3), or fewer on fewer channels.
    netbend's own composite (the paper and its code have the four single planes only)."""
    channels = _channel_dim_size(x)
    if planes is None:
        k = min(channels, 4)
        planes = [(i, j) for i in range(k) for j in range(i + 1, k)]
    m = torch.eye(channels, dtype=torch.float64)
    r = float(r) if math.isfinite(r) else 0.0
    for plane in planes:
        m = rotation_matrix(r, plane, channels) @ m
    return _channel_matmul(x, m)


def _channel_matmul(x: Tensor, m: Tensor) -> Tensor:
    """out[c] = sum_k m[c, k] x[k] at every pixel. Shape: (..., C, H, W) kept."""
    m = m.to(device=x.device, dtype=x.dtype)
    return torch.einsum("ck,...khw->...chw", m, x)


@operator("mix", neutral=0.0)
def mix(x: Tensor, r: float, matrix: Optional[Sequence[Sequence[float]]] = None) -> Tensor:
    """Channel mixing by a C x C ``matrix`` (default: each channel takes the next one's
    values, a colour cycle), faded in by r."""
    channels = _channel_dim_size(x)
    if matrix is None:
        m = torch.roll(torch.eye(channels, dtype=torch.float64), shifts=1, dims=1)
    else:
        m = torch.as_tensor(matrix, dtype=torch.float64)
        if m.shape != (channels, channels):
            raise ValueError(f"mix matrix must be {channels}x{channels} here, got {tuple(m.shape)}")
    return _blend(x, _channel_matmul(x, m), r)


@operator("reflect")
def reflect(x: Tensor, r: float) -> Tensor:
    """Negate channel int(r); r wraps modulo the channel count, so any r is valid."""
    channels = _channel_dim_size(x)
    c = int(r) % channels if math.isfinite(r) else 0
    out = x.clone()
    out[..., c, :, :] = -x[..., c, :, :]
    return out


# -- morphology (flat r x r windows) and filters --------------------------------------


def morphology_origin(k: int) -> int:
    """Row (and column) of the r x r window that sits on the output cell: k // 2.

    This is the authors' kornia 0.6: erosion and dilation both take, for output cell y,
    the input rows y - k//2 … y - k//2 + k - 1 (and likewise columns). Later kornia
    (0.9) reflects the dilation window about its origin, which moves an even-sized
    dilation, and the gradient built on it, by one cell; so the window is computed here
    and the installed kornia does not change a result."""
    return k // 2


def _flat_window(x: Tensor, k: int, largest: bool) -> Tensor:
    """Max (``largest``) or min of x over the flat k x k window anchored at
    ``morphology_origin(k)``. Cells outside the feature map are ignored (kornia's
    "geodesic" border), so the border never pulls values in. Shape: (…, C, H, W) kept."""
    o = morphology_origin(k)
    pad = (o, k - 1 - o, o, k - 1 - o)  # left, right, top, bottom

    def reduce(x4: Tensor) -> Tensor:
        t = x4 if largest else -x4
        t = F.pad(t, pad, mode="constant", value=-math.inf)
        t = F.max_pool2d(t, kernel_size=k, stride=1)
        return t if largest else -t

    return _batched(reduce, x)


@operator("erode", neutral=1.0)
def erode(x: Tensor, r: float) -> Tensor:
    """Grey erosion (minimum) over a flat r x r window (r rounded, 1..min(H, W)), anchored
    as in the authors' kornia 0.6 (``morphology_origin``)."""
    k = _kernel_size(r, x)
    return x.clone() if k == 1 else _flat_window(x, k, largest=False)


@operator("dilate", neutral=1.0)
def dilate(x: Tensor, r: float) -> Tensor:
    """Grey dilation (maximum) over a flat r x r window (r rounded, 1..min(H, W)), anchored
    as in the authors' kornia 0.6, even r included (``morphology_origin``)."""
    k = _kernel_size(r, x)
    return x.clone() if k == 1 else _flat_window(x, k, largest=True)


@operator("gradient")
def gradient(x: Tensor, r: float) -> Tensor:
    """Morphological gradient (dilation - erosion) over a flat r x r window, as in the
    authors' code (they fixed r = 4). r <= 1 gives zeros."""
    k = _kernel_size(r, x)
    if k == 1:
        return torch.zeros_like(x)
    return _finite(_flat_window(x, k, largest=True) - _flat_window(x, k, largest=False))


@operator("sobel", neutral=0.0)
def sobel(x: Tensor, r: float) -> Tensor:
    """Normalised Sobel edge magnitude per channel, faded in by r."""
    return _blend(x, _batched(lambda t: kornia.filters.sobel(t, normalized=True), x), r)


# -- Broad et al.'s spatial operators -----------------------------------------------------


@operator("translate", neutral=0.0)
def translate(x: Tensor, r: float, axis: str = "x") -> Tensor:
    """Shift by r times the width (axis "x"), height ("y") or both ("xy"), wrapping
    around, so r = 1 is a full turn and any r is valid. Shifts are whole cells."""
    if axis not in ("x", "y", "xy"):
        raise ValueError(f"translate axis must be 'x', 'y' or 'xy', got {axis!r}")
    r = math.fmod(float(r), 1.0) if math.isfinite(r) else 0.0
    h, w = x.shape[-2:]
    shifts, dims = [], []
    if "y" in axis:
        shifts.append(round(r * h))
        dims.append(-2)
    if "x" in axis:
        shifts.append(round(r * w))
        dims.append(-1)
    return torch.roll(x, shifts=shifts, dims=dims)


@operator("scale", neutral=1.0)
def scale(x: Tensor, r: float) -> Tensor:
    """Zoom about the centre by factor r (2 = twice as close); |r| < 1e-3 acts as 1e-3,
    negative r also flips. Borders reflect."""
    r = float(r) if math.isfinite(r) else 1.0
    r = math.copysign(max(abs(r), _MIN_DIVISOR), r if r != 0 else 1.0)
    theta = torch.tensor([[[1.0 / r, 0.0, 0.0], [0.0, 1.0 / r, 0.0]]])
    return _affine(x, theta)


@operator("rotate_spatial", neutral=0.0)
def rotate_spatial(x: Tensor, r: float) -> Tensor:
    """Rotate the feature maps about their centre by r radians. Borders reflect."""
    r = math.fmod(float(r), 2 * math.pi) if math.isfinite(r) else 0.0
    c, s = math.cos(r), math.sin(r)
    theta = torch.tensor([[[c, -s, 0.0], [s, c, 0.0]]])
    return _affine(x, theta)


@operator("flip_h")
def flip_h(x: Tensor, r: float = 0.0) -> Tensor:
    """Mirror left-right. r is unused."""
    return torch.flip(x, dims=[-1])


@operator("flip_v")
def flip_v(x: Tensor, r: float = 0.0) -> Tensor:
    """Mirror top-bottom. r is unused."""
    return torch.flip(x, dims=[-2])


@operator("ablate", neutral=0.0)
def ablate(x: Tensor, r: float) -> Tensor:
    """Broad et al.'s ablation faded in by r: x * (1 - r); r = 1 zeroes the activations."""
    return _finite(x * (1.0 - r))


@operator("binary")
def binary(x: Tensor, r: float) -> Tensor:
    """Broad et al.'s binary threshold, relative to each feature map: 1 where x is above
    min + r (max - min) of its own (H, W) map, else 0. So r in 0..1 means the same on a
    latent and on a 1280-channel U-Net activation."""
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    return (x >= lo + float(r) * (hi - lo)).to(x.dtype) if math.isfinite(r) else torch.zeros_like(x)


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

# The rest of the authors' published operators (log, exp, rescale, hadamard, the
# normalisations, soft_threshold2) register themselves into OPERATORS on import.
from . import published_operators  # noqa: E402,F401
