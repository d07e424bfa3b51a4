"""The paper's Figures 1-4 as sheets (issue 11): their configurations, cells equal to
single renders, and every sheet rendering on tiny."""
import math

import pytest
import torch
from PIL import Image

from engine.bends import Bend
from engine.figures import FIGURES, PAPER_SEED, Panel, Row, figure, render_panel, scaled_layer
from engine.walk import WalkConfig, WalkPipeline


def test_figure_1_is_the_four_rotations_and_the_code_threshold():
    panels = figure(1)
    assert [p.operator for p in panels] == ["R1", "R2", "R3", "R4", "threshold_abs"]
    assert all(p.prompt == "a floating orb" for p in panels)
    r1 = panels[0]
    assert r1.layers == (0, 10, 20, 30, 40, 49)
    assert [row.param for row in r1.rows] == pytest.approx([k * math.pi / 4 for k in range(9)])
    assert [row.label for row in r1.rows][:3] == ["0pi", "0.25pi", "0.5pi"]
    assert panels[3].layers == (0, 10, 30, 40, 49)  # the authors' R4 sheet has five columns
    th = panels[4]
    assert [row.param for row in th.rows] == [0.8, 0.9, 0.95, 0.99, 1.0, 1.01, 1.05, 1.1, 1.2]
    assert th.layers == (0, 30, 40, 45, 49)


def test_figures_2_to_4_configurations():
    (crane,) = figure(2)
    assert (crane.operator, crane.prompt) == ("R1", "crane")
    row, reflection, sparse = figure(3)
    assert row.bend(row.rows[0], 40, 64).target.rows == (32, 33)  # row 32 of a 64-row latent
    assert [r.param for r in row.rows] == [1, 10, 100, 1000]
    assert [r.param for r in reflection.rows] == [0, 1, 2, 3]
    assert str(sparse.bend(sparse.rows[1], 20, 64).target) == f"random 0.05 seed={PAPER_SEED}"
    dilation, erosion = figure(4)
    assert [(r.param, r.normalize) for r in dilation.rows] == [(4.0, 0), (4.0, 1), (4.0, 2)]
    assert dilation.layers[-1] == 50 and erosion.operator == "erode"
    b = dilation.bend(dilation.rows[1], 50, 64)
    assert (b.layer, b.step, b.normalize) == ("latent", frozenset({50}), 1)
    with pytest.raises(ValueError, match="the paper's figures are 1, 2, 3, 4"):
        figure(5)


def test_scaled_layers_keep_their_fraction_of_the_schedule():
    assert scaled_layer(40, 50) == 40 and scaled_layer(40, 5) == 4 and scaled_layer(49, 10) == 10


def test_a_cell_equals_a_single_walk_render_with_that_bend(tiny):
    """Shared prefixes and batched columns change nothing: cell (r, layer) is the image a
    plain txt2img of the seed-46 noise bent at that layer gives."""
    panel = Panel("test", "-", "a floating orb", "R1", (Row("0.5", 0.5), Row("2", 2.0)), (0, 20, 50))
    steps = 5
    cells = render_panel(tiny, panel, steps=steps, batch=2)
    for i, row in enumerate(panel.rows):
        for j, layer in enumerate(panel.layers):
            k = scaled_layer(layer, steps)
            pipe = WalkPipeline(tiny, WalkConfig(prompt=panel.prompt, steps=steps, guidance=7.5, seed=PAPER_SEED),
                                [Bend("R1", f"latent@{k}", row.param)])
            torch.testing.assert_close(cells[i][j], pipe.frame(0), atol=2e-4, rtol=0)
    assert not torch.allclose(cells[0][0], cells[1][0])


@pytest.mark.parametrize("n", sorted(FIGURES))
def test_each_figure_sheet_renders_on_tiny(tiny, tmp_path, n, monkeypatch):
    import engine.models
    from live.cli.figures import FigureJob, figure_sheet

    monkeypatch.setattr(engine.models, "load_model", lambda *a, **k: tiny)  # the session's tiny, loaded once
    out = figure_sheet(FigureJob(tmp_path / f"fig{n}.png", n, model="tiny", steps=1, batch=9, progress=False))
    sheet = Image.open(out)
    panels = figure(n)
    widest = max(len(p.layers) for p in panels)
    assert sheet.width >= 120 + widest * 68
    assert sheet.height == 48 + sum(32 + len(p.rows) * 68 + 16 for p in panels)
    assert not (tmp_path / f".fig{n}.png.tmp").exists()


def test_figure_job_errors_come_before_loading_a_model(tmp_path):
    from live.cli.figures import FigureJob, figure_sheet

    with pytest.raises(ValueError, match="must end in .png"):
        figure_sheet(FigureJob(tmp_path / "f.jpg", 1, model="no-such-model"))
    with pytest.raises(ValueError, match="unknown figure 7"):
        figure_sheet(FigureJob(tmp_path / "f.png", 7, model="no-such-model"))
