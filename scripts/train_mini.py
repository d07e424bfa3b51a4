#!/usr/bin/env python3
"""Train netbend's own small diffusion model ("mini") from nothing, on images made in code.

    python scripts/train_mini.py --work ~/.cache/netbend/train-mini --out engine/weights/mini

Two stages, each resumable from the checkpoint it writes every few minutes into --work:
1. the autoencoder (AutoencoderTiny, ×8): L1 + MSE reconstruction of random 64×64 crops
   of 128×128 pattern images, plus a chroma-plane loss: decoding the latent with channels
   1 and 2 rotated by θ must give the image with its hue turned by θ (a rotation of YIQ's
   I/Q plane), so the paper's R1 bend turns colours on mini as it does on SD;
2. the U-Net and text encoder together: v-prediction on the frozen autoencoder's
   latents of 128×128 images captioned by their generator, min-SNR-5 weighting, 10 % empty
   captions for classifier-free guidance, an EMA of the U-Net's weights.
Every image comes from engine/patterns.py with a seed derived from (--seed, stage, step),
so a resumed run sees the same data as an uninterrupted one. At the end the EMA weights are
written as a diffusers folder (safetensors) with TRAINING.json, the record of how.
Uses CUDA with bf16 autocast when there is a GPU.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.atomic import replacing  # noqa: E402
from engine.mini import MINI_SCHEDULER_CONFIG, MINI_SIZE, mini_components  # noqa: E402
from engine.patterns import pattern_batch  # noqa: E402

# YIQ: Y is luminance, (I, Q) the chroma plane; a hue turn is a rotation of (I, Q).
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def hue_rotate(image: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [-1, 1] with its hue turned by theta (B,) radians (clamped to gamut)."""
    rgb = (image + 1) / 2
    yiq = torch.einsum("ij,bjhw->bihw", _RGB_TO_YIQ.to(image), rgb)
    c, s = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    i, q = yiq[:, 1], yiq[:, 2]
    yiq = torch.stack([yiq[:, 0], c * i - s * q, s * i + c * q], 1)
    return (torch.einsum("ij,bjhw->bihw", _YIQ_TO_RGB.to(image), yiq).clamp(0, 1)) * 2 - 1


def rotate_chroma_plane(z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) latent with channels 1 and 2 rotated by theta (B,): the paper's R1."""
    c, s = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    a, b = z[:, 1], z[:, 2]
    return torch.stack([z[:, 0], c * a - s * b, s * a + c * b, *z[:, 3:].unbind(1)], 1)


def images(seed: int, stage: int, step: int, n: int, size: int = MINI_SIZE):
    """The batch of one training step: (n, 3, size, size) in [-1, 1] and its captions."""
    rng = np.random.default_rng([seed, stage, step])
    pixels, specs = pattern_batch(rng, n, size)
    x = torch.from_numpy(pixels) * 2 - 1
    flip = torch.from_numpy(rng.random(n) < 0.5)
    x[flip] = x[flip].flip(-1)
    return x, [s.caption for s in specs], rng


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (peak 1 in [0, 1] terms)."""
    mse = (((a - b) / 2) ** 2).mean().item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def lr_at(step: int, total: int, peak: float, warmup: int = 200) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


class Checkpoint:
    """The training state in one file under --work, written atomically, stamped with the
    seconds trained so far (over every resumed run)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / "checkpoint.pt"
        folder.mkdir(parents=True, exist_ok=True)
        self._started = time.monotonic()

    def load(self) -> dict | None:
        if not self.path.is_file():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=True)

    def resume_clock(self, state: dict) -> None:
        """Count training time from now on top of what ``state`` already holds."""
        self._started = time.monotonic() - state.get("seconds", 0.0)

    def stamp(self, state: dict) -> dict:
        state["seconds"] = time.monotonic() - self._started
        return state

    def save(self, state: dict) -> None:
        with replacing(self.path) as tmp:
            torch.save(self.stamp(state), tmp)


def train_autoencoder(args, vae, state: dict, ckpt: Checkpoint, device, autocast) -> None:
    opt = torch.optim.AdamW(vae.parameters(), lr=args.ae_lr, weight_decay=0.0)
    if "ae_opt" in state:
        opt.load_state_dict(state["ae_opt"])
    step = state.get("ae_step", 0)
    bar = tqdm(total=args.ae_steps, initial=step, desc="autoencoder", dynamic_ncols=True)
    last_save = time.monotonic()
    vae.train()
    while step < args.ae_steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.ae_steps, args.ae_lr)
        x, _, rng = images(args.seed, 1, step, args.ae_batch)
        top, left = rng.integers(0, MINI_SIZE - args.ae_crop + 1, 2)
        x = x[:, :, top:top + args.ae_crop, left:left + args.ae_crop].to(device)  # (B, 3, crop, crop)
        theta = torch.from_numpy(rng.uniform(-math.pi, math.pi, len(x))).float().to(device)
        with autocast():
            z = vae.encode(x).latents  # (B, 4, crop/8, crop/8)
            recon = vae.decode(z).sample
            turned = vae.decode(rotate_chroma_plane(z, theta)).sample
        recon, turned, z = recon.float(), turned.float(), z.float()
        loss_rec = F.l1_loss(recon, x) + F.mse_loss(recon, x)
        loss_hue = F.l1_loss(turned, hue_rotate(x, theta))
        loss_reg = 1e-3 * (z ** 2).mean() + 1e-2 * z.mean(dim=(0, 2, 3)).pow(2).sum()  # near-centred, unit-ish
        loss = loss_rec + args.hue_weight * loss_hue + loss_reg
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(rec=f"{loss_rec.item():.4f}", hue=f"{loss_hue.item():.4f}", psnr=f"{psnr(recon, x):.1f}")
        state["ae_losses"] = {"reconstruction": loss_rec.item(), "hue": loss_hue.item()}
        if time.monotonic() - last_save > args.save_every or step == args.ae_steps:
            state.update(ae_step=step, vae=vae.state_dict(), ae_opt=opt.state_dict())
            ckpt.save(state)
            last_save = time.monotonic()
    bar.close()
    vae.eval()


@torch.no_grad()
def held_out_psnr(vae, seed: int, device, n: int = 256) -> float:
    """PSNR over n held-out 128×128 images (a seed the training never uses)."""
    total = 0.0
    for k in range(0, n, 32):
        x, _, _ = images(seed + 1_000_003, 9, k, min(32, n - k))
        x = x.to(device)
        total += psnr(vae.decode(vae.encode(x).latents).sample.float().clamp(-1, 1), x) * len(x)
    return total / n


@torch.no_grad()
def latent_scale(vae, seed: int, device) -> float:
    """1 / std of the autoencoder's latents over 256 images: SD's scaling_factor, measured."""
    zs = []
    for k in range(0, 256, 32):
        x, _, _ = images(seed + 2_000_003, 9, k, 32)
        zs.append(vae.encode(x.to(device)).latents.float())
    return float(1.0 / torch.cat(zs).std())


def train_unet(args, unet, text_encoder, tokenizer, vae, state: dict, ckpt: Checkpoint, device, autocast) -> None:
    from diffusers import DDPMScheduler

    acp = DDPMScheduler.from_config(MINI_SCHEDULER_CONFIG).alphas_cumprod.to(device)  # (T,)
    scale = state["scaling_factor"]
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=args.unet_lr, weight_decay=1e-2)
    ema = [p.detach().clone() for p in unet.parameters()]
    if "unet_opt" in state:
        opt.load_state_dict(state["unet_opt"])
        ema = [t.to(device) for t in state["ema"]]
    step = state.get("unet_step", 0)
    bar = tqdm(total=args.unet_steps, initial=step, desc="u-net", dynamic_ncols=True)
    last_save = time.monotonic()
    unet.train()
    text_encoder.train()
    vae.requires_grad_(False)
    while step < args.unet_steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.unet_steps, args.unet_lr)
        x, captions, rng = images(args.seed, 2, step, args.unet_batch)
        captions = ["" if u < 0.1 else c for c, u in zip(captions, rng.random(len(captions)))]
        with torch.no_grad():
            x0 = vae.encode(x.to(device)).latents.float() * scale  # (B, 4, 16, 16)
        tokens = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                           truncation=True, return_tensors="pt").input_ids.to(device)
        t = torch.from_numpy(rng.integers(0, len(acp), len(x))).to(device)
        noise = torch.from_numpy(rng.standard_normal(x0.shape).astype(np.float32)).to(device)
        a = acp[t][:, None, None, None].float()
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        target = a.sqrt() * noise - (1 - a).sqrt() * x0  # v
        with autocast():
            emb = text_encoder(tokens)[0]
            v = unet(x_t, t, encoder_hidden_states=emb).sample
        snr = a / (1 - a)
        weight = torch.clamp(snr, max=5.0) / (snr + 1)  # min-SNR-5 for v-prediction
        loss = (weight * (v.float() - target) ** 2).mean(dim=(1, 2, 3)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema, unet.parameters()):
                e.lerp_(p.detach(), 1 - decay)
        step += 1
        bar.update(1)
        state["unet_loss_avg"] = 0.98 * state.get("unet_loss_avg", loss.item()) + 0.02 * loss.item()
        if step % 10 == 0:
            bar.set_postfix(loss=f"{state['unet_loss_avg']:.4f}")
        if time.monotonic() - last_save > args.save_every or step == args.unet_steps:
            state.update(unet_step=step, unet=unet.state_dict(), text_encoder=text_encoder.state_dict(),
                         unet_opt=opt.state_dict(), ema=[e.cpu() for e in ema])
            ckpt.save(state)
            last_save = time.monotonic()
            if args.export_every:
                export(args, state, args.out)
    bar.close()


def export(args, state: dict, out: Path) -> Path:
    """The EMA weights as a diffusers folder, written beside ``out`` and renamed into place."""
    from engine.model import Model

    unet, vae, text_encoder, tokenizer = mini_components(args.work / "tokenizer", args.seed)
    vae.load_state_dict(state["vae"])
    vae.register_to_config(scaling_factor=state["scaling_factor"])
    if "unet" in state:
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text_encoder"])
        with torch.no_grad():
            for p, e in zip(unet.parameters(), state["ema"]):
                p.copy_(e)
    model = Model.from_parts("mini", unet, vae, text_encoder, tokenizer, MINI_SCHEDULER_CONFIG,
                             device="cpu", dtype=torch.float32, steps=1, guidance=0.0)
    record = {
        "command": " ".join(["python", "scripts/train_mini.py", *sys.argv[1:]]),
        "seed": args.seed,
        "commit": _commit(),
        "device": state.get("device"),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "training_seconds": round(state.get("seconds", 0.0)),
        "autoencoder_steps": state.get("ae_step", 0),
        "autoencoder_batch": args.ae_batch,
        "unet_steps": state.get("unet_step", 0),
        "unet_batch": args.unet_batch,
        "final_losses": {**state.get("ae_losses", {}), "unet_v_loss_ema": state.get("unet_loss_avg")},
        "held_out_psnr_db": state.get("psnr"),
        "scaling_factor": state["scaling_factor"],
    }
    with replacing(out) as tmp:
        model.save_pretrained(tmp)
        (tmp / "TRAINING.json").write_text(json.dumps(record, indent=2) + "\n")
    return out


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("~/.cache/netbend/train-mini").expanduser(),
                   help="checkpoint folder (resumed from when it holds one)")
    p.add_argument("--out", type=Path, default=Path("engine/weights/mini"), help="the diffusers folder to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ae-steps", type=int, default=4000)
    p.add_argument("--ae-batch", type=int, default=16)
    p.add_argument("--ae-crop", type=int, default=64)
    p.add_argument("--ae-lr", type=float, default=2e-3)
    p.add_argument("--hue-weight", type=float, default=0.5)
    p.add_argument("--unet-steps", type=int, default=8000)
    p.add_argument("--unet-batch", type=int, default=32)
    p.add_argument("--unet-lr", type=float, default=6e-4)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--unet-threads", type=int, default=0, help="threads for the U-Net stage (0: as --threads)")
    p.add_argument("--save-every", type=float, default=300.0, help="seconds between checkpoints")
    p.add_argument("--export-every", action="store_true", help="also write --out at every checkpoint")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when there is one)")
    args = p.parse_args(argv)
    args.work = args.work.expanduser()
    return args


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA; nothing on the CPU."""
    if device.type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def resumed_state(ckpt: Checkpoint, seed: int, device: torch.device) -> dict:
    """The checkpoint's state (or a fresh one), refused when it was trained with another seed."""
    state = ckpt.load() or {"seed": seed}
    if state.get("seed") != seed:
        raise SystemExit(f"{ckpt.path} was trained with seed {state.get('seed')}, not {seed}; "
                         "use another --work folder")
    state["device"] = (torch.cuda.get_device_name(device) if device.type == "cuda"
                       else f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
    return state


def measure_autoencoder(vae, state: dict, ckpt: Checkpoint, seed: int, device) -> None:
    """Held-out PSNR and the latents' scaling factor, once the autoencoder is trained."""
    vae.eval()
    state["psnr"] = held_out_psnr(vae, seed, device)
    state["scaling_factor"] = latent_scale(vae, seed, device)
    state.pop("ae_opt", None)
    ckpt.save(state)
    print(f"autoencoder: {state['psnr']:.2f} dB on 256 held-out images, scaling_factor "
          f"{state['scaling_factor']:.4f}", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    autocast = autocast_for(device)
    ckpt = Checkpoint(args.work)
    state = resumed_state(ckpt, args.seed, device)
    unet, vae, text_encoder, tokenizer = mini_components(args.work / "tokenizer", args.seed)
    if "vae" in state:
        vae.load_state_dict(state["vae"])
    unet, vae, text_encoder = unet.to(device), vae.to(device), text_encoder.to(device)
    ckpt.resume_clock(state)
    if state.get("ae_step", 0) < args.ae_steps:
        train_autoencoder(args, vae, state, ckpt, device, autocast)
    if "psnr" not in state:
        measure_autoencoder(vae, state, ckpt, args.seed, device)
    vae.eval()
    if "unet" in state:
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text_encoder"])
    if args.unet_threads:
        torch.set_num_threads(args.unet_threads)
    train_unet(args, unet, text_encoder, tokenizer, vae, state, ckpt, device, autocast)
    out = export(args, ckpt.stamp(state), args.out)
    print(f"wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
