"""The paper's figure sheets as data, and the renderer that fills their cells.

Each figure is a list of panels; each panel one operator on one prompt, rows of params
(or of normalisations) by columns of the paper's layers, every cell txt2img from the same
seed-46 noise with DDIM 50 and guidance 7.5, bent once at latent point "layer N" (the
authors' ``if i == layer: img = fn(img)`` in their DDIM loop; layer 50 bends the clean
latent before the VAE). Rows, columns, prompts and params are read off the labelled sheets
the authors published with their code (github dzluke/DAFX2024, ``images/``), which are the
paper's figures; the grouping into Figures 1-4 follows their site's order, with the hard
threshold as Fig. 1e (see the README, "The paper and its code").

``render_panel`` shares work between cells: the unbent sampling up to layer N is run once
per column, and the cells of one column then finish as one batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor

from .bends import Bend, apply_bend
from .sampling import ddim_scheduler, denoise, seeded_noise

PAPER_SEED = 46  # "use this seed for cool orb pic" (their imgen.py)
PAPER_STEPS = 50
PAPER_GUIDANCE = 7.5
ORB = "a floating orb"
ROTATION_LAYERS = (0, 10, 20, 30, 40, 49)
ANGLES = tuple(k * math.pi / 4 for k in range(9))  # 0 .. 2 pi by pi / 4


def _angle_label(r: float) -> str:
    return f"{r / math.pi:g}pi"


@dataclass(frozen=True)
class Row:
    label: str
    param: float
    normalize: Any = None  # a Bend's normalize (dim 0, 1, 2 or max | l2 | mean)


@dataclass(frozen=True)
class Panel:
    """One labelled grid: ``operator`` at each of ``layers`` (columns) for each row."""

    title: str
    source: str  # the authors' image this reproduces
    prompt: str
    operator: str
    rows: tuple[Row, ...]
    layers: tuple[int, ...]
    opts: dict = field(default_factory=dict)
    target: Optional[str] = None  # "{mid}" is replaced by the latent's middle row

    def bend(self, row: Row, layer: int, latent_height: int) -> Bend:
        target = self.target.format(mid=latent_height // 2, mid1=latent_height // 2 + 1) if self.target else None
        return Bend(self.operator, f"latent@{layer}", row.param, target=target, normalize=row.normalize,
                    opts=dict(self.opts))


def _param_rows(values: Sequence[float], label: Callable[[float], str] = lambda r: f"{r:g}") -> tuple[Row, ...]:
    return tuple(Row(label(r), float(r)) for r in values)


def _rotation(plane: str, layers=ROTATION_LAYERS, prompt: str = ORB, source: Optional[str] = None) -> Panel:
    return Panel(f"rotation by {plane}", source or f"rotate_{plane}_orb.png", prompt, plane,
                 _param_rows(ANGLES, _angle_label), tuple(layers))


def _morphology(op: str, layers: tuple[int, ...], source: str) -> Panel:
    # the authors' normalize4(dilation(4), dim): rows are the dim of (C, H, W) whose mean is subtracted
    rows = tuple(Row(f"normalize dim {d}", 4.0, normalize=d) for d in (0, 1, 2))
    return Panel(f"{'dilation' if op == 'dilate' else 'erosion'} 4x4 with normalisation", source, ORB, op, rows,
                 layers)


FIGURES: dict[int, tuple[Panel, ...]] = {
    1: (
        _rotation("R1", source="rotate_x_orb.png"),
        _rotation("R2", source="rotate_y_orb.png"),
        _rotation("R3", source="rotate_y2_orb.png"),
        _rotation("R4", layers=(0, 10, 30, 40, 49), source="rotate_z_orb.png"),
        # Fig. 1e: made with the code's keep-|x| >= r threshold, not the text's eq. 3
        Panel("hard threshold (keep |x| >= r)", "threshold3.png", ORB, "threshold_abs",
              _param_rows((0.8, 0.9, 0.95, 0.99, 1.0, 1.01, 1.05, 1.1, 1.2)), (0, 30, 40, 45, 49)),
    ),
    2: (
        _rotation("R1", prompt="crane", source="rotate_x_crane.png"),
    ),
    3: (
        Panel("add r to one row (row 32 of 64)", "add_dim1.png", ORB, "add", _param_rows((1, 10, 100, 1000)),
              (0, 10, 30, 40, 49), target="rows {mid}:{mid1}"),
        Panel("reflection of channel r", "reflection.png", ORB, "reflect", _param_rows((0, 1, 2, 3)),
              ROTATION_LAYERS),
        Panel("add r to a random 5% of the latent", "add_sparse05.png", ORB, "add", _param_rows((0, 1, 10, 100)),
              (0, 20, 40), target=f"random 0.05 seed={PAPER_SEED}"),
    ),
    4: (
        _morphology("dilate", (0, 5, 10, 15, 20, 25, 30, 40, 45, 50), "dilation4_normalize4_orb .png"),
        _morphology("erode", (0, 5, 10, 20, 30, 40, 50), "erosion4_normalize4_orb.png"),
    ),
}


def figure(n: int) -> tuple[Panel, ...]:
    """The panels of the paper's figure ``n``; another number lists the ones there are."""
    if n not in FIGURES:
        raise ValueError(f"unknown figure {n!r}; the paper's figures are {', '.join(map(str, FIGURES))}")
    return FIGURES[n]


def scaled_layer(layer: int, steps: int) -> int:
    """The paper's layer N (of 50) on a schedule of ``steps``: same fraction of the way."""
    return layer if steps == PAPER_STEPS else round(layer * steps / PAPER_STEPS)


@torch.no_grad()
def render_panel(model, panel: Panel, *, steps: int = PAPER_STEPS, guidance: float = PAPER_GUIDANCE,
                 seed: int = PAPER_SEED, size: Optional[tuple[int, int]] = None, batch: int = 4,
                 progress: Optional[Callable[[int, int], None]] = None) -> list[list[Tensor]]:
    """The panel's cells: ``cells[row][column]``, each (1, 3, H, W) in [0, 1].

    ``steps`` other than 50 moves each layer to the same fraction of the schedule (a quick
    preview); ``size`` is (height, width), default the model's; ``batch`` cells at a time
    finish together. ``progress(done, total)`` is called after each batch."""
    from .bending import Bender

    h, w = size or (model.default_size, model.default_size)
    f = model.vae_scale_factor
    shape = (1, model.latent_channels, h // f, w // f)
    scheduler = ddim_scheduler(model, steps)
    timesteps = scheduler.timesteps
    cond = model.encode_prompt([panel.prompt])
    uncond = model.encode_prompt([""]) if guidance > 1.0 else None
    bender = Bender(model.unet)  # no bends: cells are bent by hand at their layer, once
    x = seeded_noise(shape, seed, model.device, model.dtype) * scheduler.init_noise_sigma
    cells: list[list[Optional[Tensor]]] = [[None] * len(panel.layers) for _ in panel.rows]
    done, total = 0, len(panel.rows) * len(panel.layers)
    at = 0  # x is the latent at point ``at``
    try:
        for j in sorted(range(len(panel.layers)), key=lambda j: panel.layers[j]):
            k = min(scaled_layer(panel.layers[j], steps), steps)
            if k > at:  # the unbent prefix, shared by every cell of this column and the next ones
                x = _denoise(model, bender, x, scheduler, timesteps[at:k], cond, uncond, guidance)
                at = k
            for start in range(0, len(panel.rows), batch):
                rows = panel.rows[start:start + batch]
                bent = torch.cat([apply_bend(x, panel.bend(row, panel.layers[j], shape[2])) for row in rows])
                latent = _denoise(model, bender, bent, scheduler, timesteps[k:], cond, uncond, guidance)
                images = model.decode_latent(latent)
                for i, image in enumerate(images):
                    cells[start + i][j] = image.unsqueeze(0)
                done += len(rows)
                if progress is not None:
                    progress(done, total)
    finally:
        bender.remove()
    return cells  # type: ignore[return-value]


def _denoise(model, bender, x: Tensor, scheduler, timesteps, cond: Tensor, uncond: Optional[Tensor],
             guidance: float) -> Tensor:
    if len(timesteps) == 0:
        return x
    n = x.shape[0]
    return denoise(model.unet, bender, x, scheduler, timesteps, cond.expand(n, -1, -1),
                   None if uncond is None else uncond.expand(n, -1, -1), guidance)
