#!/usr/bin/env python3
"""Measure netbend's own model ("mini") against the bars of docs/MODELS.md.

    python scripts/eval_mini.py --json mini-eval.json --sheet docs/mini-samples.jpg

Prints one markdown table and writes the figures as JSON:
- autoencoder PSNR on 256 held-out generated images, through Model.encode_image/decode_latent;
- prompt adherence: a small CNN trained here on the generator's own images (never on samples)
  classifies the pattern kind and the main colour of images the pipelines generate from
  "<colour> <kind> on <background>" prompts at their default settings on mini;
- diversity: mean distance between seeds of one prompt against the autoencoder's error;
- coupling: on the demo track with the default preset, the frame-to-frame mean change in
  silence and on hits, and its Pearson correlation with the mapped feature.
Speed comes from `netbend bench --model mini` (see docs/MODELS.md), not from here.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.patterns import COLOURS, KINDS, PatternSpec, pattern_batch, render_pattern  # noqa: E402

CLASSIFIER_SIZE = 32  # the classifier sees images at 32×32: kind and colour survive that


class PatternClassifier(nn.Module):
    """Kind and main colour of a pattern image: (B, 3, 32, 32) in [0, 1] → two logit sets."""

    def __init__(self):
        super().__init__()
        chans = [3, 32, 64, 96]
        layers = []
        for a, b in zip(chans, chans[1:]):
            layers += [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(), nn.MaxPool2d(2)]
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.kind = nn.Linear(96, len(KINDS))
        self.colour = nn.Linear(96, len(COLOURS))

    def forward(self, x):
        h = self.body(x)
        return self.kind(h), self.colour(h)


def _labels(specs):
    kinds = torch.tensor([KINDS.index(s.kind) for s in specs])
    colours = torch.tensor([list(COLOURS).index(s.colour) for s in specs])
    return kinds, colours


def _small(images: torch.Tensor) -> torch.Tensor:
    return F.interpolate(images, size=(CLASSIFIER_SIZE, CLASSIFIER_SIZE), mode="area")


def train_classifier(seed: int = 0, steps: int = 500, batch: int = 64) -> tuple[PatternClassifier, dict]:
    """Train on fresh generator images each step (drawn at 64 px, shown at 32), with the
    degradations a generated image has (blur, noise, small colour shifts), so the
    classifier judges what is drawn, not how crisply."""
    torch.manual_seed(seed)
    net = PatternClassifier()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    net.train()
    for step in range(steps):
        rng = np.random.default_rng([seed, 77, step])
        pixels, specs = pattern_batch(rng, batch, 2 * CLASSIFIER_SIZE)
        x = _small(torch.from_numpy(pixels))
        if step % 2:
            x = F.avg_pool2d(x, 3, stride=1, padding=1)  # soft edges, as a decoder makes them
        x = (x + 0.03 * torch.randn_like(x) + 0.04 * torch.randn(len(x), 3, 1, 1)).clamp(0, 1)
        kinds, colours = _labels(specs)
        lk, lc = net(x)
        loss = F.cross_entropy(lk, kinds) + F.cross_entropy(lc, colours)
        for g in opt.param_groups:
            g["lr"] = 3e-3 * 0.5 * (1 + math.cos(math.pi * step / steps))
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    pixels, specs = pattern_batch(np.random.default_rng([seed, 78]), 400, 128)
    kind_acc, colour_acc = accuracy(net, torch.from_numpy(pixels), specs)
    return net, {"kind": kind_acc, "colour": colour_acc, "steps": steps, "batch": batch}


@torch.no_grad()
def accuracy(net: PatternClassifier, images: torch.Tensor, specs) -> tuple[float, float]:
    """Fraction of (B, 3, H, W) images in [0, 1] whose kind / colour the classifier recognises."""
    kinds, colours = _labels(specs)
    lk, lc = net(_small(images.float()))
    return float((lk.argmax(1) == kinds).float().mean()), float((lc.argmax(1) == colours).float().mean())


def prompt_specs(n_per_cell: int = 1, seed: int = 5) -> list[PatternSpec]:
    """Every kind × colour, with a background drawn for each: the prompts generated from."""
    rng = np.random.default_rng(seed)
    return [PatternSpec.random(rng, kind=k, colour=c) for k in KINDS for c in COLOURS for _ in range(n_per_cell)]


@torch.no_grad()
def autoencoder_psnr(model, n: int = 256) -> float:
    pixels, _ = pattern_batch(np.random.default_rng([12345, 9]), n, 128)
    x = torch.from_numpy(pixels)
    errs = []
    for k in range(0, n, 32):
        batch = x[k:k + 32]
        y = model.decode_latent(model.encode_image(batch)).float()
        errs.append(((y - batch) ** 2).mean(dim=(1, 2, 3)))
    mse = torch.cat(errs).mean().item()
    return 10 * math.log10(1 / mse)


@torch.no_grad()
def generate(model, kind: str, prompt: str, seed: int, feedback_frames: int) -> torch.Tensor:
    """One image of ``prompt`` from pipeline ``kind`` at mini's default settings."""
    from engine.pipelines import PIPELINES, make_pipeline

    _, config_cls = PIPELINES[kind]
    config = config_cls(prompt=prompt, seed=seed, **MINI_DEFAULTS[kind])
    pipe = make_pipeline(kind, model, config)
    if kind == "stream":
        image = pipe.image
        for _ in range(feedback_frames):
            image = pipe.step()
        return image
    return pipe.frame(0, 1)


# mini's default settings per pipeline: what the presets' [on.mini] tables use (the stream's
# first picture in eight steps, since mini is not distilled for one; then one step a frame)
MINI_DEFAULTS = {
    "stream": dict(steps=1, first_steps=8, strength=0.5, guidance=0.0),
    "walk": dict(steps=20, guidance=3.0),
    "chain": dict(steps=20, strength=1.0, guidance=3.0),
}


def adherence(model, net, pipelines=("stream", "walk", "chain"), feedback_frames: int = 8) -> dict:
    specs = prompt_specs()
    out = {}
    for kind in pipelines:
        t0 = time.perf_counter()
        images = torch.cat([generate(model, kind, s.caption, 100 + i, feedback_frames) for i, s in enumerate(specs)])
        k, c = accuracy(net, images, specs)
        out[kind] = {"kind": k, "colour": c, "images": len(specs), "seconds": round(time.perf_counter() - t0, 1)}
        print(f"  {kind}: kind {k:.1%}, colour {c:.1%} over {len(specs)} prompts", flush=True)
    return out


@torch.no_grad()
def diversity(model, prompts=("orange rings on deep blue", "cyan spiral on black", "pink plasma on dark green"),
              seeds: int = 6) -> dict:
    """Mean squared difference between seeds of one prompt (walk, defaults) vs the AE's MSE."""
    dists = []
    for prompt in prompts:
        imgs = torch.cat([generate(model, "walk", prompt, s, 0) for s in range(seeds)])
        d = ((imgs[:, None] - imgs[None]) ** 2).mean(dim=(2, 3, 4))
        dists.append(d[~torch.eye(seeds, dtype=bool)].mean().item())
    return {"between_seeds_mse": float(np.mean(dists))}


def coupling(frames_dir: Path, audio: np.ndarray, rate: int, fps: float) -> dict:
    """Frame change vs the demo's loudness: silence, hits and their correlation."""
    from PIL import Image

    from engine.features import analyze

    paths = sorted(frames_dir.glob("*.png"))
    frames = np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32) for p in paths])  # (N, H, W, 3)
    change = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))  # mean |Δ| per frame, in 0..255
    table = analyze(audio, rate, fps=fps)
    rms = table.column("rms")[1:len(frames)]
    onset = table.column("onset")[1:len(frames)] if "onset" in table.names else np.zeros_like(rms)
    n = min(len(change), len(rms))
    change, rms, onset = change[:n], rms[:n], onset[:n]
    loud = rms > 1e-3
    quiet_for = np.zeros(n)  # seconds since the last audible frame
    for i in range(n):
        quiet_for[i] = 0 if loud[i] else (quiet_for[i - 1] + 1 / fps if i else 1 / fps)
    silence = quiet_for >= 0.5  # past the mappings' release
    hits = np.argsort(rms)[-max(1, n // 10):]  # the loudest tenth of the frames
    r = float(np.corrcoef(rms, change)[0, 1]) if rms.std() > 0 and change.std() > 0 else 0.0
    return {"silence_mean_change": float(change[silence].mean()) if silence.any() else None,
            "silence_frames": int(silence.sum()),
            "hits_mean_change": float(change[hits].mean()), "pearson_rms_change": r, "frames": int(n + 1)}


def sample_sheet(model, path: Path, kinds=KINDS, colours=("orange", "cyan", "pink", "yellow")) -> Path:
    """Rows of kinds, columns: the generator's image, then walk and stream samples per colour."""
    from PIL import Image

    rows = []
    for k in kinds:
        cells = []
        for c in colours:
            spec = PatternSpec.random(np.random.default_rng(3), kind=k, colour=c)
            cells.append(torch.from_numpy(render_pattern(spec, 128)).permute(2, 0, 1)[None])
            cells.append(generate(model, "walk", spec.caption, 1, 0).float().cpu())
            cells.append(generate(model, "stream", spec.caption, 1, 8).float().cpu())
        rows.append(torch.cat(cells, dim=3))
    grid = (torch.cat(rows, dim=2)[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mini")
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--sheet", type=Path, help="write a sample sheet PNG here")
    p.add_argument("--frames-dir", type=Path, help="frames of `netbend render` of the demo (for coupling)")
    p.add_argument("--skip", nargs="*", default=(), help="parts to skip: adherence diversity coupling")
    args = p.parse_args(argv)
    from engine.models import load_model

    model = load_model(args.model, device="cpu")
    figures = {"model": args.model, "torch_threads": torch.get_num_threads()}
    figures["autoencoder_psnr_db"] = psnr = autoencoder_psnr(model)
    print(f"autoencoder: {psnr:.2f} dB on 256 held-out images", flush=True)
    net, figures["classifier_on_generator"] = train_classifier()
    print(f"classifier on held-out generator images: {figures['classifier_on_generator']}", flush=True)
    if "adherence" not in args.skip:
        figures["adherence"] = adherence(model, net)
    if "diversity" not in args.skip:
        figures["diversity"] = diversity(model)
        figures["diversity"]["autoencoder_mse"] = 10 ** (-psnr / 10)
    if args.frames_dir and "coupling" not in args.skip:
        from engine.demo_audio import DEMO_RATE, demo_audio

        figures["coupling"] = coupling(args.frames_dir, demo_audio(), DEMO_RATE, fps=20.0)
    if args.sheet:
        sample_sheet(model, args.sheet)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
