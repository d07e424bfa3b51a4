"""Where bends act: the U-Net's points in forward order, and the ``Bender`` that hooks them.

Point names, in the order a forward pass reaches them:

    conv_in
    down.0.resnets.0  down.0.attentions.0  …  down.0.downsamplers.0  down.0
    …
    mid.resnets.0  mid.attentions.0  mid.resnets.1  mid
    up.0.resnets.0  …  up.0.upsamplers.0  up.0
    …
    conv_out

A block's own name (``down.1``, ``mid``, ``up.2``) bends its output, after everything
inside it. For a down block that is the hidden state passed on to the next block; the
skip connections it also returns are left as they were. An integer layer is an index into
this list for the loaded model (``Bender.names``).

The ``Bender`` puts one forward hook on every point when it is made and never again:
changing the bends — operator, layer, param, target, step — only swaps a dict the hooks
read, so nothing is re-registered or rebuilt. A hook with no bend to apply returns None,
which leaves the module's output untouched: with no bends the model computes bit for bit
what it computes unhooked. ``remove()`` takes the hooks off. One model has one set of bends
at a time: a Bender made later on the same U-Net takes the hooks over, and a pipeline
re-attaches its own (``attach()``) whenever it runs.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import replace
from typing import Iterable, Sequence

from torch import Tensor, nn

from .bends import LATENT, Bend, apply_bends

log = logging.getLogger("netbend.bending")

# "all": every point hooked (the eager path); "inner": only points inside blocks, and only
# while a bend is set there (a SegmentedUNet applies the block-level bends itself)
HOOK_MODES = ("all", "inner")


def _block_points(prefix: str, block: nn.Module, mid: bool = False) -> list[tuple[str, nn.Module]]:
    """A block's resnets / attentions interleaved as the block runs them, then its samplers."""
    resnets = list(getattr(block, "resnets", []) or [])
    attentions = list(getattr(block, "attentions", []) or [])
    points: list[tuple[str, nn.Module]] = []
    if mid:
        # mid blocks run resnet 0, then (attention k, resnet k + 1) pairs
        for k, resnet in enumerate(resnets):
            if k > 0 and k - 1 < len(attentions):
                points.append((f"{prefix}.attentions.{k - 1}", attentions[k - 1]))
            points.append((f"{prefix}.resnets.{k}", resnet))
    else:
        for k, resnet in enumerate(resnets):
            points.append((f"{prefix}.resnets.{k}", resnet))
            if k < len(attentions):
                points.append((f"{prefix}.attentions.{k}", attentions[k]))
    for kind in ("downsamplers", "upsamplers"):
        for k, sampler in enumerate(getattr(block, kind, None) or []):
            points.append((f"{prefix}.{kind}.{k}", sampler))
    points.append((prefix, block))
    return points


def unet_points(unet: nn.Module) -> "OrderedDict[str, nn.Module]":
    """Every bendable point of a diffusers UNet2DConditionModel, in forward order."""
    points: list[tuple[str, nn.Module]] = [("conv_in", unet.conv_in)]
    for i, block in enumerate(unet.down_blocks):
        points += _block_points(f"down.{i}", block)
    if getattr(unet, "mid_block", None) is not None:
        points += _block_points("mid", unet.mid_block, mid=True)
    for i, block in enumerate(unet.up_blocks):
        points += _block_points(f"up.{i}", block)
    points.append(("conv_out", unet.conv_out))
    return OrderedDict(points)


def block_points(names: Iterable[str]) -> list[str]:
    """The block-level points (conv_in, down.i, mid, up.i, conv_out) among ``names``."""
    return [n for n in names if n.count(".") <= 1]


def forward_hooks(module: nn.Module) -> "OrderedDict[str, int]":
    """Forward (and pre-forward) hooks on ``module`` and its children, by module name ("" is
    ``module`` itself), whoever made them. torch has no public way to ask; this is the one
    place that reads its hook dicts."""
    return OrderedDict((name, len(m._forward_hooks) + len(m._forward_pre_hooks))
                       for name, m in module.named_modules() if m._forward_hooks or m._forward_pre_hooks)


def _bend_output(output, bends: Sequence[Bend], point: str, step: int):
    """Bend the primary tensor of a module's output, whatever container it comes in."""
    if isinstance(output, Tensor):
        return apply_bends(output, bends, point, step)
    if isinstance(output, tuple):
        return (apply_bends(output[0], bends, point, step),) + tuple(output[1:])
    if hasattr(output, "sample"):
        return type(output)(sample=apply_bends(output.sample, bends, point, step))
    raise TypeError(f"cannot bend the output of {point!r} ({type(output).__name__})")


class Bender:
    """The live set of bends on one model: hooks on every U-Net point, latent bends for
    the sampler, and the current denoising step (set by the pipeline before each U-Net call).
    """

    def __init__(self, unet: nn.Module, bends: Iterable[Bend] = (), hooks: str = "all"):
        if hooks not in HOOK_MODES:
            raise ValueError(f"unknown hook mode {hooks!r}; allowed: {', '.join(HOOK_MODES)}")
        self._unet = unet
        self.hooks = hooks
        self.points = unet_points(unet)
        self.names: list[str] = list(self.points)
        self.block_names: frozenset[str] = frozenset(block_points(self.names))
        self.step = 0
        self._bends: tuple[Bend, ...] = ()
        self._by_point: dict[str, tuple[Bend, ...]] = {}
        self._latent: tuple[Bend, ...] = ()
        self._inner = False  # a bend is set at a point inside a block
        self._handles: list = []
        self.bends = tuple(bends)
        self.attach()

    def attach(self) -> None:
        """Take the U-Net over from any other Bender on it and make the hooks this one needs.

        One model has one set of bends at a time: a second pipeline on the same model
        detaches the first one's hooks (its bends are kept), and each pipeline calls this
        before it runs, which costs a few comparisons when it is already the one attached.
        With ``hooks="all"`` every point is hooked once and stays hooked. With
        ``hooks="inner"`` a ``SegmentedUNet`` applies the block-level bends between its
        segments, and the points inside blocks are hooked only while a bend is set at one
        of them (hooks inside compiled code would be ignored or force a retrace).
        """
        current = getattr(self._unet, "_netbend_bender", None)
        if current is not self:
            if current is not None:
                current._detach()
            self._unet._netbend_bender = self
        want = self.hooks == "all" or self._inner
        if want and not self._handles:
            points = [(n, m) for n, m in self.points.items() if self.hooks == "all" or n not in self.block_names]
            self._handles = [module.register_forward_hook(self._hook(name)) for name, module in points]
            log.debug("bend hooks on %d U-Net points", len(self._handles))
        elif not want and self._handles:
            self._remove_handles()

    def _remove_handles(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _detach(self) -> None:
        self._remove_handles()
        if getattr(self._unet, "_netbend_bender", None) is self:
            del self._unet._netbend_bender

    def _hook(self, name: str):
        def hook(module: nn.Module, args, output):
            bends = self._by_point.get(name)
            if not bends or not any(b.active_at(self.step) for b in bends):
                return None  # leaves the output exactly as the module computed it
            return _bend_output(output, bends, name, self.step)

        return hook

    def resolve_layer(self, layer) -> str:
        """'latent', a point name, or an index into ``names``; anything else lists what exists."""
        if layer == LATENT:
            return LATENT
        if isinstance(layer, int) and not isinstance(layer, bool):
            if 0 <= layer < len(self.names):
                return self.names[layer]
            raise ValueError(f"layer index {layer} out of range: this model has U-Net points 0..{len(self.names) - 1} "
                             f"({self.names[0]} … {self.names[-1]}) plus 'latent'")
        if isinstance(layer, str) and layer.lstrip("-").isdigit():
            return self.resolve_layer(int(layer))
        if layer in self.points:
            return layer
        raise ValueError(f"unknown layer {layer!r}; valid layers: 'latent', an index 0..{len(self.names) - 1}, "
                         f"or one of: {', '.join(self.names)}")

    @property
    def bends(self) -> tuple[Bend, ...]:
        return self._bends

    @bends.setter
    def bends(self, bends: Iterable[Bend]) -> None:
        resolved = []
        for bend in bends:
            if not isinstance(bend, Bend):
                raise TypeError(f"expected a Bend, got {type(bend).__name__}")
            name = self.resolve_layer(bend.layer)
            resolved.append(bend if name == bend.layer else replace(bend, layer=name))
        by_point: dict[str, list[Bend]] = {}
        for bend in resolved:
            by_point.setdefault(bend.layer, []).append(bend)
        self._bends = tuple(resolved)
        self._latent = tuple(by_point.pop(LATENT, ()))
        self._by_point = {k: tuple(v) for k, v in by_point.items()}
        self._inner = any(p not in self.block_names for p in self._by_point)

    @property
    def by_point(self) -> dict[str, tuple[Bend, ...]]:
        """The U-Net bends grouped by point name (latent bends are not in it)."""
        return self._by_point

    @property
    def hooked(self) -> bool:
        """Whether this Bender's hooks are on the U-Net now."""
        return bool(self._handles)

    def latent(self, x: Tensor, step: int) -> Tensor:
        """The latent bends active at sampler point ``step`` (0 = initial latent)."""
        if not self._latent:
            return x
        return apply_bends(x, self._latent, LATENT, step)

    def remove(self) -> None:
        """Take the hooks off and forget the bends: the model is as if never bent."""
        self._detach()
        self.bends = ()

    @property
    def attached(self) -> int:
        """How many hooks are on the model (constant while the Bender lives)."""
        return len(self._handles)

    def __str__(self) -> str:
        if not self._bends:
            return "no bends"
        return "\n".join(f"{i + 1}. {b}" for i, b in enumerate(self._bends))

