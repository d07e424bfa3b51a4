"""Operators over neighbourhoods and positions: morphology (flat r x r windows), Sobel
edges, and Broad et al.'s (2021) spatial transforms (translate, zoom, rotate, flip,
ablate, binary).

Each registers into ``engine.operators.OPERATORS`` (see that module for the contract).
"""
from __future__ import annotations

import math

import kornia  # sobel; morphology is computed here (see _flat_window)
import torch
import torch.nn.functional as F
from torch import Tensor

from .operators import MIN_DIVISOR, batched, blend, finite, operator


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

    return batched(warp, x)


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

    return batched(reduce, x)


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
    return finite(_flat_window(x, k, largest=True) - _flat_window(x, k, largest=False))


@operator("sobel", neutral=0.0)
def sobel(x: Tensor, r: float) -> Tensor:
    """Normalised Sobel edge magnitude per channel, faded in by r."""
    return blend(x, batched(lambda t: kornia.filters.sobel(t, normalized=True), x), r)


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
    r = math.copysign(max(abs(r), MIN_DIVISOR), r if r != 0 else 1.0)
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
    return finite(x * (1.0 - r))


@operator("binary")
def binary(x: Tensor, r: float) -> Tensor:
    """Broad et al.'s binary threshold, relative to each feature map: 1 where x is above
    min + r (max - min) of its own (H, W) map, else 0. So r in 0..1 means the same on a
    latent and on a 1280-channel U-Net activation."""
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    return (x >= lo + float(r) * (hi - lo)).to(x.dtype) if math.isfinite(r) else torch.zeros_like(x)
