"""The rest of the operators in the authors' published code (dzluke/DAFX2024 ``util.py``).

Each is netbend's usual pure operator ``op(x, r, **opts)`` (see ``engine.operators``),
registered in the one registry, ``engine.operators.OPERATORS``, when the ``engine`` package
is imported. Where the authors' form takes no scalar, or a pair, the pair becomes options
and r fades the result in (0 = untouched), as for netbend's other blend operators. Reductions (min, max, mean) are
per sample over (C, H, W), which for the authors' batch of one is the whole tensor.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .operators import MIN_DIVISOR, blend, finite, operator


@operator("soft_threshold2", neutral=0.0)
def soft_threshold2(x: Tensor, r: float) -> Tensor:
    """The authors' second soft threshold: 0 where |x| < r, x (1 - r) elsewhere."""
    return finite(torch.where(x.abs() < r, torch.zeros_like(x), x * (1.0 - r)))


@operator("log")
def log(x: Tensor, r: float = math.e) -> Tensor:
    """The authors' log: log base r of |x|. |x| is floored at 1e-3 (log 0 is -inf); the base
    is |r|, floored at 1e-3, and bases within e^+-1e-3 of 1 act as e^+-1e-3, so the
    division by ln r stays finite."""
    base = abs(float(r)) if math.isfinite(r) else math.e
    ln_base = math.log(max(base, MIN_DIVISOR))
    if abs(ln_base) < MIN_DIVISOR:
        ln_base = math.copysign(MIN_DIVISOR, ln_base if ln_base != 0 else 1.0)
    return finite(torch.log(x.abs().clamp(min=MIN_DIVISOR)) / ln_base)


def _sample_dims(x: Tensor) -> tuple[int, ...]:
    """The dims of one sample, (C, H, W): reductions stay per sample, so the two halves of a
    classifier-free-guidance batch are normalised each on its own, as a batch of one is."""
    return (-3, -2, -1)


@operator("rescale", neutral=0.0)
def rescale(x: Tensor, r: float, lo: float = -1.0, hi: float = 1.0) -> Tensor:
    """The authors' min-max ``scale``: map each sample's min..max onto lo..hi, faded in by r
    (1 = fully rescaled). A constant sample goes to (lo + hi) / 2. Not Broad's ``scale``."""
    dims = _sample_dims(x)
    x_min = x.amin(dim=dims, keepdim=True)
    span = x.amax(dim=dims, keepdim=True) - x_min
    unit = torch.where(span > 0, (x - x_min) / torch.where(span > 0, span, torch.ones_like(span)),
                       torch.full_like(x, 0.5))
    return blend(x, finite(lo + unit * (hi - lo)), r)


# |r X| (1-norm of each map) is capped here before the matrix exponential: e^600 still fits
# float64, so the exponential itself cannot overflow into inf - inf = NaN.
_EXP_MAX_NORM = 600.0


@operator("exp")
def exp(x: Tensor, r: float) -> Tensor:
    """The authors' ``tensor_exp``: the matrix exponential expm(r X) of each (H, W) feature
    map. r = 0 gives the identity matrix in every map. A map with H != W is zero-padded to
    a square and cropped back. Computed in float64; overflow saturates at the dtype's range."""
    r = float(r) if math.isfinite(r) else 0.0
    h, w = x.shape[-2:]
    n = max(h, w)
    m = x.to(torch.float64) * r
    if h != w:
        m = F.pad(m, (0, n - w, 0, n - h))
    norm = m.abs().sum(dim=-2, keepdim=True).amax(dim=-1, keepdim=True)  # matrix 1-norm per map
    m = m * torch.clamp(_EXP_MAX_NORM / norm.clamp(min=1e-300), max=1.0)
    y = torch.linalg.matrix_exp(m)[..., :h, :w]
    return finite(y.to(x.dtype))


@functools.lru_cache(maxsize=16)
def _sylvester(n: int) -> Tensor:
    """The n x n top-left block of the Sylvester Hadamard matrix of the next power of two
    (scipy.linalg.hadamard(n) when n is a power of two). float64, CPU."""
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h[:n, :n]


@operator("hadamard", neutral=0.0)
def hadamard(x: Tensor, r: float, axis: str = "channels", normalized: bool = False) -> Tensor:
    """Multiply by a Hadamard matrix along ``axis`` ("channels": the authors' hadamard1 on
    the 4 latent channels; "rows": their hadamard2 over the 64 rows, without its final
    transpose; "cols"), faded in by r. Unnormalised like the authors' (entries +-1, so
    norms grow by sqrt(n)) unless ``normalized``. Sizes that are not a power of two use the
    top-left block of the next Sylvester matrix."""
    dims = {"channels": -3, "rows": -2, "cols": -1}
    if axis not in dims:
        raise ValueError(f"hadamard axis must be one of {sorted(dims)}, got {axis!r}")
    n = x.shape[dims[axis]]
    m = _sylvester(n)
    if normalized:
        m = m / math.sqrt(n)
    m = m.to(device=x.device, dtype=x.dtype)
    if axis == "channels":
        y = torch.einsum("ck,...khw->...chw", m, x)
    elif axis == "rows":
        y = torch.einsum("ik,...kw->...iw", m, x)
    else:
        y = torch.einsum("jk,...hk->...hj", m, x)
    return blend(x, finite(y), r)


@operator("normalize_max", neutral=0.0)
def normalize_max(x: Tensor, r: float) -> Tensor:
    """The authors' ``normalize``: x / max|x| of each sample, faded in by r. An all-zero
    sample stays zero."""
    peak = x.abs().amax(dim=_sample_dims(x), keepdim=True)
    return blend(x, x / peak.clamp(min=torch.finfo(x.dtype).tiny), r)


@operator("normalize_l2", neutral=0.0)
def normalize_l2(x: Tensor, r: float) -> Tensor:
    """The authors' ``normalize2``: each pixel's channel vector scaled to unit L2 norm,
    faded in by r."""
    return blend(x, F.normalize(x, dim=-3), r)


@operator("normalize_mean", neutral=0.0)
def normalize_mean(x: Tensor, r: float) -> Tensor:
    """The authors' ``normalize3``: subtract each sample's global mean, faded in by r. (Their
    ``normalize4``, the mean along one dim, is a bend's ``normalize = 0 | 1 | 2``.)"""
    return blend(x, x - x.mean(dim=_sample_dims(x), keepdim=True), r)
