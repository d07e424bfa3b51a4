"""`netbend sweep --figure N`: the paper's Figures 1-4 as labelled sheets.

The panels (prompt, operator, rows of params, columns of layers) are ``engine.figures``;
this draws them in the authors' layout, columns "layer N" and one row per param, panel
under panel, with a header naming the figure, the model, the seed and the schedule, so a
sheet made on ``tiny`` or ``mini`` says what it is and cannot be mistaken for SD 1.4's.
"""
from __future__ import annotations

import logging
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

log = logging.getLogger("netbend.figures")


@dataclass
class FigureJob:
    output: Path
    figure: int
    model: str = "sd-1.4"  # the checkpoint the paper used
    size: Optional[tuple[int, int]] = None  # (width, height) of each cell; default the model's
    steps: int = 50  # DDIM steps; fewer moves every layer to the same fraction (a preview)
    device: Optional[str] = None
    progress: bool = True
    batch: int = 4  # cells of one column denoised together (memory: SD 1.4 at 512 px takes ~2 GB a cell)


def figure_sheet(job: FigureJob) -> Path:
    """Render every panel of ``job.figure`` and write one PNG; returns its path."""
    from PIL import Image, ImageDraw, ImageFont

    from engine.figures import PAPER_GUIDANCE, PAPER_SEED, figure, render_panel, scaled_layer
    from engine.images import to_uint8
    from engine.models import load_model

    output = Path(job.output)
    if output.suffix.lower() != ".png":
        raise ValueError(f"figure output {str(output)!r} must end in .png")
    if not 1 <= job.steps <= 1000:
        raise ValueError(f"--steps must be 1..1000, got {job.steps}")
    panels = figure(job.figure)  # unknown figure: fails before a model loads
    model = load_model(job.model, vae="full" if job.model not in ("tiny", "mini") else "default", device=job.device)
    size = (job.size[1], job.size[0]) if job.size else None

    grids = []
    for letter, panel in zip(string.ascii_lowercase, panels):
        log.info("figure %d (%s): %s", job.figure, letter, panel.title)
        report = (lambda done, total, t=panel.title: print(f"  {t}: {done}/{total} cells", flush=True)) \
            if job.progress else None
        cells = render_panel(model, panel, steps=job.steps, size=size, batch=job.batch, progress=report)
        grids.append((letter, panel, [[Image.fromarray(to_uint8(c)) for c in row] for row in cells]))

    font = ImageFont.load_default()
    cell_h, cell_w = grids[0][2][0][0].height, grids[0][2][0][0].width
    pad, label_w, line = 4, 120, 16
    width = label_w + max(len(panel.layers) for _, panel, _ in grids) * (cell_w + pad) + pad
    height = 3 * line + sum(2 * line + len(rows) * (cell_h + pad) + line for _, _, rows in grids)
    sheet = Image.new("RGB", (max(width, 640), height), "white")
    draw = ImageDraw.Draw(sheet)
    schedule = f"DDIM {job.steps}" + ("" if job.steps == 50 else " (layers scaled from 50)")
    draw.text((4, 4), f"Figure {job.figure} of Dzwonczyk, Cella, Ban (DAFx 2024), rendered by netbend", fill="black",
              font=font)
    draw.text((4, 4 + line), f"model {job.model}, seed {PAPER_SEED}, {schedule}, guidance {PAPER_GUIDANCE:g}, "
                             f"{cell_w}x{cell_h}", fill="black", font=font)
    y = 3 * line
    for letter, panel, rows in grids:
        draw.text((4, y), f"({letter}) {panel.title}: \"{panel.prompt}\" (the authors' {panel.source})",
                  fill="black", font=font)
        y += line
        for j, layer in enumerate(panel.layers):
            k = scaled_layer(layer, job.steps)
            name = f"layer {layer}" + ("" if k == layer else f" ({k})")
            draw.text((label_w + j * (cell_w + pad) + 2, y), name, fill="black", font=font)
        y += line
        for row, images in zip(panel.rows, rows):
            draw.text((4, y + cell_h // 2 - 6), row.label, fill="black", font=font)
            for j, image in enumerate(images):
                sheet.paste(image, (label_w + j * (cell_w + pad), y))
            y += cell_h + pad
        y += line
    tmp = output.with_name(f".{output.name}.tmp")
    sheet.save(tmp, format="PNG")
    tmp.replace(output)
    return output
