"""What the loaded model allows: its layers, the channels at each, and the value bounds that
keep every frame finite. One object, made once when the model is loaded, that the one
validation (``live.control.state.apply``) checks every command and every preset against, so
a command is either valid for this model and applied, or refused with a reason: it never
passes the edge and then fails every frame.

    limits = ModelLimits.from_pipe(pipe)
    limits.layer("unet:5")     -> "down.0.attentions.1"   (names, indices, latent@N)
    limits.channels("mid")     -> 1280 on SD 1.5, 64 on tiny

Channel counts are read from the U-Net's modules (``out_channels``) where they say it, and
a block's output has its last inner point's channels; tests/test_show_never_stops.py checks
this against a real forward pass of the tiny model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

from engine.bends import LATENT, parse_layer
from engine.operators import param_range

SEED_MAX = 2**31 - 1  # seeds travel as OSC int32 ('i'), which Max and TouchDesigner read
MAX_PROMPT = 1000     # characters; the text encoder reads 77 tokens, and a state reply stays small


@dataclass(frozen=True)
class ModelLimits:
    """layers: the U-Net's point names in forward order; channels: output channels per point
    name and for ``"latent"`` (missing: unknown, not checked)."""

    layers: tuple[str, ...] = ()
    channels_by_layer: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_pipe(cls, pipe) -> "ModelLimits":
        """The limits of a prepared pipeline's model (its Bender's points, its U-Net)."""
        return cls.from_points(pipe.bender.points, pipe.model.unet)

    @classmethod
    def from_points(cls, points: Mapping, unet) -> "ModelLimits":
        names = list(points)
        channels: dict[str, int] = {LATENT: int(unet.config.in_channels)}
        last: Optional[int] = None
        for name in names:
            module = points[name]
            c = getattr(module, "out_channels", None) or getattr(module, "in_channels", None) \
                or getattr(module, "channels", None)
            if not isinstance(c, int):
                c = last  # a down/up block: what its last inner point put out
            if c is not None:
                channels[name] = int(c)
                last = int(c)
        return cls(tuple(names), channels)

    def layer(self, spec) -> str:
        """A layer as sent (name, index, "unet:N", "latent", "latent@N") -> its point name,
        or "latent"; ValueError listing what exists."""
        layer, _ = parse_layer(spec)
        if layer == LATENT or not self.layers:
            return layer
        if isinstance(layer, int):
            if not 0 <= layer < len(self.layers):
                raise ValueError(f"layer index {layer} out of range 0..{len(self.layers) - 1}")
            return self.layers[layer]
        if layer not in self.layers:
            raise ValueError(f"unknown layer {layer!r}; valid: latent, latent@N, 0..{len(self.layers) - 1}, "
                             f"{', '.join(self.layers)}")
        return layer

    def channels(self, layer) -> Optional[int]:
        """Channels at ``layer`` (a name, an index, "latent"); None when unknown."""
        if isinstance(layer, int):
            layer = self.layers[layer] if 0 <= layer < len(self.layers) else None
        return self.channels_by_layer.get(layer)


def as_limits(layers) -> ModelLimits:
    """ModelLimits from None, a ModelLimits, or a plain sequence of layer names."""
    if layers is None:
        return ModelLimits()
    if isinstance(layers, ModelLimits):
        return layers
    return ModelLimits(tuple(layers))


def check_param(operator: str, value: float, what: str) -> None:
    """ValueError when |value| exceeds the operator's declared limit (engine/operators.py)."""
    r = param_range(operator)
    if abs(value) > r.limit:
        raise ValueError(f"{what} {value:g} is beyond {operator}'s limit +-{r.limit:g} (useful range "
                         f"{r.low:g}..{r.high:g} {r.unit}); larger values would overflow the frame")


def check_channels(bend, limits: ModelLimits, where: str) -> None:
    """The bend's target channels and channel options exist at its layer for this model."""
    c = limits.channels(bend.layer)
    if c is None:
        return
    target = bend.target
    if target.kind == "channels":
        bad = [i for i in target.channels if i >= c]
        if bad:
            shown = ", ".join(map(str, bad[:5])) + (" …" if len(bad) > 5 else "")
            raise ValueError(f"{where}: target channel(s) {shown} out of range: layer {bend.layer} has "
                             f"{c} channels (0..{c - 1})")
    plane = bend.opts.get("plane")
    if plane is not None:
        from engine.operators import NAMED_PLANES

        i, j = NAMED_PLANES[plane] if isinstance(plane, str) else tuple(int(v) for v in plane)
        if not (0 <= i < c and 0 <= j < c) or i == j:
            raise ValueError(f"{where}: rotation plane ({i}, {j}) needs two different channels in 0..{c - 1} "
                             f"at layer {bend.layer}")
    if bend.operator in ("R1", "R2", "R3", "R4"):
        from engine.operators import NAMED_PLANES

        i, j = NAMED_PLANES[bend.operator]
        if max(i, j) >= c:
            raise ValueError(f"{where}: {bend.operator} rotates channels ({i}, {j}); layer {bend.layer} has {c}")
    for plane in bend.opts.get("planes") or ():
        i, j = (int(v) for v in plane)
        if not (0 <= i < c and 0 <= j < c) or i == j:
            raise ValueError(f"{where}: rotate6 plane ({i}, {j}) needs two different channels in 0..{c - 1}")
    matrix = bend.opts.get("matrix")
    if matrix is not None:
        rows = len(matrix)
        if rows != c or any(len(row) != c for row in matrix):
            raise ValueError(f"{where}: mix matrix must be {c}x{c} at layer {bend.layer}")
    if bend.operator == "rotate" and plane is None and c < 3:
        raise ValueError(f"{where}: rotate's default plane R1 (1, 2) needs 3 channels; layer {bend.layer} has {c}")


def check_seed(seed: int, what: str = "seed") -> int:
    """``seed`` if OSC (int32) and torch can both carry it; else ValueError."""
    if not 0 <= seed <= SEED_MAX:
        raise ValueError(f"{what} must be an integer 0..{SEED_MAX}; got {seed}")
    return seed
