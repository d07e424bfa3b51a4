"""The training program of mini: runs from nothing on CPU, resumes from its checkpoint,
and writes a diffusers folder that netbend loads like any other."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import train_mini  # noqa: E402

from engine.models import load_model  # noqa: E402
from engine.patterns import KINDS, PatternSpec, render_pattern  # noqa: E402

SMALL = ["--ae-batch", "2", "--ae-crop", "32", "--unet-batch", "2", "--save-every", "0"]


def test_trains_from_nothing_then_resumes(tmp_path):
    work, out = tmp_path / "work", tmp_path / "mini"
    assert train_mini.main(["--work", str(work), "--out", str(out), "--ae-steps", "2", "--unet-steps", "2", *SMALL]) == 0
    record = json.loads((out / "TRAINING.json").read_text())
    assert record["autoencoder_steps"] == 2 and record["unet_steps"] == 2 and record["seed"] == 0
    assert set(record["final_losses"]) >= {"reconstruction", "hue", "unet_v_loss_ema"}
    model = load_model(out, device="cpu")
    assert model.latent_channels == 4 and model.default_size == 128
    assert type(model.tokenizer).__name__.startswith("CLIPTokenizer")
    first = {k: v.clone() for k, v in model.unet.state_dict().items()}

    # a second run with more U-Net steps continues from the checkpoint: the autoencoder is
    # not trained again (same weights) and the U-Net moves on from where it stopped
    vae_before = {k: v.clone() for k, v in model.vae.state_dict().items()}
    assert train_mini.main(["--work", str(work), "--out", str(out), "--ae-steps", "2", "--unet-steps", "4", *SMALL]) == 0
    record = json.loads((out / "TRAINING.json").read_text())
    assert record["unet_steps"] == 4
    resumed = load_model(out, device="cpu")
    assert all(torch.equal(v, resumed.vae.state_dict()[k]) for k, v in vae_before.items())
    assert any(not torch.equal(v, resumed.unet.state_dict()[k]) for k, v in first.items())


def test_refuses_a_checkpoint_of_another_seed(tmp_path):
    work = tmp_path / "work"
    train_mini.main(["--work", str(work), "--out", str(tmp_path / "o"), "--ae-steps", "1", "--unet-steps", "1", *SMALL])
    with pytest.raises(SystemExit, match="seed 0, not 3"):
        train_mini.main(["--work", str(work), "--out", str(tmp_path / "o"), "--seed", "3", *SMALL])


def test_batches_are_a_function_of_seed_stage_and_step():
    a, captions_a, _ = train_mini.images(0, 2, 17, 4, 32)
    b, captions_b, _ = train_mini.images(0, 2, 17, 4, 32)
    c, _, _ = train_mini.images(0, 2, 18, 4, 32)
    assert torch.equal(a, b) and captions_a == captions_b and not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1


def test_hue_rotation_and_chroma_plane_rotation_are_rotations():
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    theta = torch.tensor([0.0, 2 * np.pi])
    assert torch.allclose(train_mini.hue_rotate(x, theta), x.clamp(-1, 1), atol=1e-5)
    z = torch.randn(2, 4, 3, 3)
    turned = train_mini.rotate_chroma_plane(z, torch.tensor([0.5, 0.5]))
    assert torch.allclose(turned[:, [0, 3]], z[:, [0, 3]])
    assert torch.allclose(turned[:, 1:3].norm(dim=1), z[:, 1:3].norm(dim=1), atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_every_pattern_kind_draws_its_colour_on_its_background(kind):
    spec = PatternSpec.random(np.random.default_rng(1), kind=kind, colour="orange")
    image = render_pattern(spec, 64)
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()
    assert spec.caption.startswith(f"orange {kind} on ")
    # neither flat nor noise: some spread, and neighbouring pixels agree far more than not
    assert image.std() > 0.05
    assert np.abs(np.diff(image, axis=1)).mean() < 0.5 * image.std() * 2
