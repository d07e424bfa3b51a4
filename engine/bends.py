"""A bend is data: which operator, where, with what param, on which elements and steps.

    Bend(operator, layer, param, target, step, normalize)    (the paper, section 3)

``layer`` is ``"latent"`` (the sampler's x_t between denoising steps; with ``step=N`` this
is the paper's "layer N") or a U-Net point by name (``"mid"``, ``"up.1"``,
``"down.1.resnets.0"``) or by integer index into the loaded model's ordered point list
(resolved by ``engine.bending.Bender``, which knows the model).

Written as text (presets, the command line, OSC) a layer has two unmistakable spellings:

    latent@40     the paper's layer 40: layer "latent" at step 40
    unet:40       U-Net point 40 in forward order (unet:mid also works)

A bare number is what the paper calls a layer but an index into the U-Net here, and on
SD 1.5 every paper layer number is also a valid point index, so presets and the sweep
command line refuse it (``parse_layer(..., bare_int="refuse")``) with a message showing
both spellings. In Python and over OSC an int stays a U-Net index.

Applying one bend is ``apply_bend(x, bend)``: operator, then target mask, then the
optional mean subtraction. Bends are frozen; a mapping changes a param each frame with
``bend.with_param(r)``, which costs a dataclass copy and re-registers nothing.
"""
from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Optional, Union

import torch
from torch import Tensor

from .operators import NAMED_PLANES, get_operator
from .targets import ALL, Target, parse_target, target_mask

LATENT = "latent"
UNET_PREFIX = "unet:"
# Normalisations after the operator: a dim of (C, H, W) for the paper's mean subtraction
# (the authors' normalize4), or one of the authors' other three, by name.
NORMALIZE_NAMES = {"max": "normalize_max", "l2": "normalize_l2", "mean": "normalize_mean"}

Layer = Union[str, int]
Steps = Optional[frozenset]  # None = every step


def parse_steps(spec: Any) -> Steps:
    """``None``/"all" -> every step; 40 -> {40}; [1, 2]; "1,2,5"; "0:10" (end excluded)."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        return None
    try:
        if isinstance(spec, bool):
            raise ValueError
        if isinstance(spec, (int, float)):
            if float(spec) != int(spec):
                raise ValueError
            values = [int(spec)]
        elif isinstance(spec, str):
            values = []
            for part in spec.replace(" ", "").split(","):
                if ":" in part:
                    a, b = part.split(":")
                    values.extend(range(int(a), int(b)))
                else:
                    values.append(int(part))
        else:
            values = [int(v) for v in spec]
    except (TypeError, ValueError):
        raise ValueError(f"bad step {spec!r}; allowed: 'all', an int N >= 0, a list, '1,2,5' or 'a:b'") from None
    if not values or any(v < 0 for v in values):
        raise ValueError(f"bad step {spec!r}: steps are integers >= 0")
    return frozenset(values)


def bare_integer_message(n: int) -> str:
    """Why a bare layer number is refused, with both spellings it could have meant."""
    return (f"layer {n} is ambiguous: write \"latent@{n}\" for the paper's layer {n} (the sampler's "
            f"latent before denoising step {n}; with DDIM 50 steps, {max(0, 50 - n)} steps before the end) "
            f"or \"unet:{n}\" for U-Net point {n} in forward order (see `netbend sweep --help` for the names)")


def parse_layer(spec: Any, *, bare_int: str = "index") -> tuple[Layer, Optional[int]]:
    """A layer as written -> (layer, step or None).

    ``"latent@40"`` -> ("latent", 40); ``"latent"`` -> ("latent", None); ``"unet:40"`` ->
    (40, None); ``"unet:mid"`` / ``"mid"`` -> ("mid", None). A bare integer (40 or "40") is
    a U-Net index with ``bare_int="index"`` (Python, OSC) and an error naming both
    spellings with ``bare_int="refuse"`` (presets, the sweep command line).
    """
    if bare_int not in ("index", "refuse"):
        raise ValueError(f"bare_int must be 'index' or 'refuse', got {bare_int!r}")
    if isinstance(spec, bool) or not isinstance(spec, (str, int)):
        raise ValueError(f"bad layer {spec!r}; write latent@N, unet:N or a U-Net point name such as mid")
    text = spec.strip() if isinstance(spec, str) else spec
    if isinstance(text, int) or text.isdigit():
        n = int(text)
        if bare_int == "refuse":
            raise ValueError(bare_integer_message(n))
        return n, None
    if text == LATENT:
        return LATENT, None
    if text.startswith(LATENT + "@"):
        step = text[len(LATENT) + 1:]
        if not step.isdigit():
            raise ValueError(f"bad layer {spec!r}; a latent layer with a step is latent@N, N >= 0 (e.g. latent@40)")
        return LATENT, int(step)
    if text.startswith(UNET_PREFIX):
        point = text[len(UNET_PREFIX):].strip()
        if not point or point == LATENT or "@" in point:
            raise ValueError(f"bad layer {spec!r}; a U-Net point is unet:N (an index) or unet:NAME (e.g. unet:mid)")
        return (int(point), None) if point.isdigit() else (point, None)
    if "@" in text:
        raise ValueError(f"bad layer {spec!r}; only the latent takes a step this way: latent@N")
    return text, None


def format_layer(layer: Layer) -> str:
    """The unmistakable text of a layer: an index as unet:N, a name as itself."""
    return f"{UNET_PREFIX}{layer}" if isinstance(layer, int) else layer


@functools.lru_cache(maxsize=None)
def _option_names(operator: str) -> list[str]:
    """The keyword options an operator takes. Cached: with_param() revalidates every frame."""
    return [p for p in inspect.signature(get_operator(operator)).parameters if p not in ("x", "r")]


def _format_steps(steps: Steps) -> str:
    if steps is None:
        return "all"
    return ",".join(str(s) for s in sorted(steps))


@dataclass(frozen=True)
class Bend:
    operator: str
    layer: Layer = LATENT
    param: float = 0.0
    target: Target = ALL
    step: Steps = None
    normalize: Optional[Union[int, str]] = None  # mean subtraction along dim 0, 1, 2 of (C, H, W), or max | l2 | mean
    opts: Mapping[str, Any] = field(default_factory=dict)  # operator options: plane, axis, seed, matrix…
    enabled: bool = True

    def __post_init__(self) -> None:
        fn = get_operator(self.operator)  # unknown name -> ValueError listing the valid ones
        if isinstance(self.layer, bool) or not isinstance(self.layer, (str, int)):
            raise ValueError(f"bend layer must be 'latent', a U-Net point name or an index, got {self.layer!r}")
        if isinstance(self.layer, str) and self.layer.strip():
            layer, step = parse_layer(self.layer)
            if step is not None:
                given = parse_steps(self.step)
                if given is not None and given != frozenset({step}):
                    raise ValueError(f"layer {self.layer!r} says step {step} but step is {_format_steps(given)}; "
                                     "give the step once")
                object.__setattr__(self, "step", step)
            object.__setattr__(self, "layer", layer)
        if isinstance(self.layer, int) and self.layer < 0:
            raise ValueError(f"bend layer index must be >= 0, got {self.layer}")
        if isinstance(self.layer, str) and not self.layer:
            raise ValueError("bend layer is empty; use 'latent', a U-Net point name or an index")
        try:
            param = float(self.param)
        except (TypeError, ValueError):
            raise ValueError(f"bend param must be a number, got {self.param!r}") from None
        if not math.isfinite(param):
            raise ValueError(f"bend param must be finite, got {self.param!r}")
        object.__setattr__(self, "param", param)
        object.__setattr__(self, "target", parse_target(self.target))
        object.__setattr__(self, "step", parse_steps(self.step))
        if self.normalize is not None and (isinstance(self.normalize, bool) or
                                           self.normalize not in (0, 1, 2, *NORMALIZE_NAMES)):
            raise ValueError(f"bend normalize must be None, 0, 1 or 2 (mean subtraction along a dim of C, H, W) "
                             f"or one of {', '.join(NORMALIZE_NAMES)}, got {self.normalize!r}")
        opts = {k: tuple(v) if isinstance(v, list) and k == "plane" else v for k, v in dict(self.opts).items()}
        allowed = _option_names(self.operator)
        unknown = sorted(set(opts) - set(allowed))
        if unknown:
            raise ValueError(f"operator {self.operator!r} has no option(s) {unknown}; "
                             f"its options: {allowed or 'none'}")
        plane = opts.get("plane")
        if isinstance(plane, str) and plane not in NAMED_PLANES:
            raise ValueError(f"unknown rotation plane {plane!r}; use {sorted(NAMED_PLANES)} or [i, j]")
        object.__setattr__(self, "opts", opts)

    def active_at(self, step: int) -> bool:
        return self.enabled and (self.step is None or step in self.step)

    def with_param(self, param: float) -> "Bend":
        return replace(self, param=param)

    def __str__(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.opts.items())
        text = f"{self.operator}({opts}) r={self.param:.4g} @ {format_layer(self.layer)} step {_format_steps(self.step)}"
        if self.target != ALL:
            text += f" on {self.target}"
        if isinstance(self.normalize, str):
            text += f", normalize {self.normalize}"
        elif self.normalize is not None:
            text += f", normalize dim {self.normalize}"
        return text + ("" if self.enabled else " [off]")

    def to_dict(self) -> dict[str, Any]:
        # an index is written unet:N, so a saved preset reads back (presets refuse bare numbers)
        d: dict[str, Any] = {"operator": self.operator, "layer": format_layer(self.layer), "param": self.param}
        if self.target != ALL:
            d["target"] = str(self.target)
        if self.step is not None:
            d["step"] = sorted(self.step) if len(self.step) > 1 else next(iter(self.step))
        if self.normalize is not None:
            d["normalize"] = self.normalize
        if self.opts:
            d["opts"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.opts.items()}
        if not self.enabled:
            d["enabled"] = False
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, bare_int: str = "index") -> "Bend":
        """The inverse of to_dict. ``bare_int="refuse"`` rejects a bare layer number (see
        ``parse_layer``), as presets do; "index" reads it as a U-Net index (takes, OSC state)."""
        allowed = {"operator", "layer", "param", "target", "step", "normalize", "opts", "enabled"}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise ValueError(f"unknown bend key(s) {unknown}; allowed: {sorted(allowed)}")
        if "operator" not in d:
            raise ValueError("a bend needs an 'operator'")
        if "layer" in d:
            parse_layer(d["layer"], bare_int=bare_int)
        return cls(**dict(d))


def apply_bend(x: Tensor, bend: Bend) -> Tensor:
    """One bend on x (B, C, H, W) or (C, H, W): operator, target, normalisation."""
    y = get_operator(bend.operator)(x, bend.param, **bend.opts)
    mask = target_mask(bend.target, tuple(x.shape[-3:]), x.device)
    if mask is not None:
        y = torch.where(mask, y, x)
    if isinstance(bend.normalize, str):
        y = get_operator(NORMALIZE_NAMES[bend.normalize])(y, 1.0)
    elif bend.normalize is not None:
        y = y - y.mean(dim=bend.normalize - 3, keepdim=True)
    return y


def apply_bends(x: Tensor, bends, layer: Layer, step: int) -> Tensor:
    """Every enabled bend at ``layer`` active at ``step``, chained in order."""
    for bend in bends:
        if bend.layer == layer and bend.active_at(step):
            x = apply_bend(x, bend)
    return x


class BendModule(torch.nn.Module):
    """The Module twin of ``apply_bend``, for places that run modules (compiled segments)."""

    def __init__(self, bend: Bend):
        super().__init__()
        self.bend = bend

    def forward(self, x: Tensor) -> Tensor:
        return apply_bend(x, self.bend)
