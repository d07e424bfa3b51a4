"""`netbend sweep`: one operator over a row of params and a column of layers, as a labelled
contact sheet in the layout of the paper's figures 1-4 (rows: layers, columns: params,
with the unbent image first). Every cell uses the preset's prompt and the same seed, so
the only difference between two cells is the bend.

Layers are written ``latent@N`` (the sampler's latent at step N, the paper's "layer N"),
a U-Net point name (``mid``, ``up.1``) or ``unet:N`` (an index into the model's point
list). A bare number is refused: it reads as the paper's layer and would be a U-Net index.

``--figure 1|2|3|4`` draws the paper's figures instead (live/cli/figures.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from engine.atomic import replacing
from engine.bends import LATENT, Bend
from engine.bends import parse_layer as parse_layer_spelling
from live.checks import FRAME_SIZE, check_backend


@dataclass
class SweepJob:
    output: Path  # the .png sheet
    operator: str
    params: str  # "0,0.8,1.6"
    preset: str = "default"
    layers: Optional[str] = None  # "latent@0,latent@40,mid"; None: a spread (_default_layers)
    model: Optional[str] = None
    size: Optional[tuple[int, int]] = None  # (width, height) of each cell
    opts: list[str] = field(default_factory=list)  # ["plane=R2"]
    device: Optional[str] = None
    backend: str = "auto"

    def __post_init__(self) -> None:
        """Checks that need no preset or model: a wrong field fails when the job is made, named."""
        if Path(self.output).suffix.lower() != ".png":
            raise ValueError(f"sweep output {str(self.output)!r} must end in .png")
        if not isinstance(self.preset, str) or not self.preset.strip():
            raise ValueError(f"--preset must be a preset name or .toml path, got {self.preset!r}")
        params = _floats(self.params, "--params")
        Bend(self.operator, param=params[0], opts=_opts(self.opts))  # an unknown operator or option lists the valid
        for layer in (self.layers.split(",") if self.layers else ()):
            parse_layer(layer)
        self.size = FRAME_SIZE.check(self.size, "--size")
        check_backend(self.backend)


def _floats(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"bad {what} {text!r}; write comma-separated numbers, e.g. 0,0.5,1") from None
    if not values:
        raise ValueError(f"{what} is empty; write comma-separated numbers, e.g. 0,0.5,1")
    return values


def _opts(items: list[str]) -> dict:
    opts = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"bad --opt {item!r}; write KEY=VALUE, e.g. plane=R2 or plane=0,3")
        if "," in value:
            opts[key] = [int(v) for v in value.split(",")]
        else:
            try:
                opts[key] = int(value)
            except ValueError:
                opts[key] = value
    return opts


def parse_layer(text: str) -> tuple[object, Optional[int]]:
    """'latent@40' -> ('latent', 40); 'mid' -> ('mid', None); 'unet:3' -> (3, None); a bare
    '3' is refused with both spellings (engine.bends.parse_layer)."""
    layer, step = parse_layer_spelling(text, bare_int="refuse")
    if layer == LATENT and step is None:
        raise ValueError(f"bad layer {text.strip()!r}; a latent layer needs its step: latent@N")
    return layer, step


def _default_layers(pipeline: str, steps: int) -> list[str]:
    if pipeline == "stream":
        return ["down.1", "mid", "up.1", "up.2"]
    return [f"latent@{s}" for s in sorted({0, steps // 2, (4 * steps) // 5})]


@dataclass
class SweepPlan:
    """What a sweep will draw, checked before any model is loaded: the cells row by row
    (each row: the unbent image, then one bend per param)."""
    preset: object
    config: object
    layers: list[str]
    params: list[float]
    cells: list[list[Bend]]


def plan_sweep(job: SweepJob) -> SweepPlan:
    from live.control.presets import load_preset

    params, opts = _floats(job.params, "--params"), _opts(job.opts)  # checked when the job was made
    preset = load_preset(job.preset)
    config = preset.config()
    if job.size:
        config.width, config.height = job.size
    layers = [s for s in (job.layers.split(",") if job.layers else
                          _default_layers(preset.pipeline, getattr(config, "steps", 1)))]
    parsed = [parse_layer(s) for s in layers]
    cells = [bends for layer, step in parsed
             for bends in [[]] + [[Bend(job.operator, layer, r, step=step, opts=opts)] for r in params]]
    return SweepPlan(preset, config, layers, params, cells)


def sweep_pipeline(job: SweepJob, plan: SweepPlan):
    """The model and pipeline every cell is drawn with."""
    from engine.models import load_model
    from engine.pipelines import make_pipeline

    model = load_model(job.model or plan.preset.model, vae=plan.preset.vae, device=job.device)
    return make_pipeline(plan.preset.pipeline, model, plan.config, backend=job.backend)


def cell_image(pipe, bends: list[Bend]):
    """One cell: the first frame with these bends, from the same seed and start as every other."""
    import torch
    from PIL import Image

    from engine.images import to_uint8

    pipe.bends = bends
    pipe.prepare()
    with torch.inference_mode():
        return Image.fromarray(to_uint8(pipe.frame(0, 1)))


def sweep(job: SweepJob) -> Path:
    plan = plan_sweep(job)
    pipe = sweep_pipeline(job, plan)
    return write_sheet(job, plan, [cell_image(pipe, bends) for bends in plan.cells])


def write_sheet(job: SweepJob, plan: SweepPlan, images: list) -> Path:
    """The cells (PIL images, row by row) as the labelled sheet, written atomically."""
    from PIL import Image, ImageDraw, ImageFont

    output, params, layers = Path(job.output), plan.params, plan.layers
    columns = len(params) + 1
    grid = [images[r * columns:(r + 1) * columns] for r in range(len(layers))]
    cell_h, cell_w = grid[0][0].height, grid[0][0].width
    font = ImageFont.load_default()
    label_w, label_h, pad = 110, 22, 4
    sheet = Image.new("RGB", (label_w + (cell_w + pad) * (len(params) + 1), label_h + (cell_h + pad) * len(grid) + label_h),
                      "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 4), f"{job.operator} {' '.join(job.opts)}", fill="black", font=font)
    for j, title in enumerate(["original"] + [f"r = {r:g}" for r in params]):
        draw.text((label_w + j * (cell_w + pad) + 4, label_h + 4), title, fill="black", font=font)
    for i, (row, name) in enumerate(zip(grid, layers)):
        y = 2 * label_h + i * (cell_h + pad)
        draw.text((4, y + cell_h // 2 - 6), name, fill="black", font=font)
        for j, cell in enumerate(row):
            sheet.paste(cell, (label_w + j * (cell_w + pad), y))
    with replacing(output) as tmp:
        sheet.save(tmp, format="PNG")
    return output
