"""Sampling pieces shared by the pipelines: seeded noise, the noise schedule, the guided
U-Net call with the bend step set, a DDIM-style denoising loop with latent bend points,
and slerp for prompt blends.

Latent bend points are numbered like the paper's layers: point k is x_t just before
denoising step k (point 0 is the starting latent, pure noise for txt2img); point n, after
the last of n steps, is the clean latent just before the VAE.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from .bending import Bender


def seeded_noise(shape: Sequence[int], seed: int, device, dtype) -> Tensor:
    """Gaussian noise from a CPU generator: the same values on every device, so a seed
    reproduces the same frames on a laptop and on the show machine."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn(tuple(shape), generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)


def alphas_cumprod(scheduler_config: dict) -> Tensor:
    """ᾱ_t for t = 0..T-1 from a diffusers scheduler config (float64, CPU)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(scheduler_config).alphas_cumprod.to(torch.float64)


def predict_x0(model_output: Tensor, x_t: Tensor, alpha_bar: float, prediction_type: str) -> Tensor:
    """The clean latent the U-Net implies at x_t (epsilon, v or sample prediction)."""
    a, s = alpha_bar ** 0.5, (1.0 - alpha_bar) ** 0.5
    if prediction_type == "epsilon":
        return (x_t - s * model_output) / a
    if prediction_type == "v_prediction":
        return a * x_t - s * model_output
    if prediction_type == "sample":
        return model_output
    raise ValueError(f"unsupported prediction_type {prediction_type!r}")


def guided_unet(unet, bender: Bender, x: Tensor, t: Tensor, cond: Tensor, uncond: Optional[Tensor],
                guidance: float, step: int) -> Tensor:
    """One U-Net call at denoising step ``step`` (the bends' step), with classifier-free
    guidance when ``guidance > 1`` and an unconditional embedding is given. ``unet`` is the
    model's U-Net or a ``SegmentedUNet``, which reads the step from the same Bender."""
    bender.step = step
    if uncond is not None and guidance > 1.0:
        out = unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample
        out_uncond, out_cond = out.chunk(2)
        return out_uncond + guidance * (out_cond - out_uncond)
    return unet(x, t, encoder_hidden_states=cond).sample


def ddim_scheduler(model, steps: int):
    """A deterministic DDIM scheduler (eta = 0) from the model's schedule, as the paper used."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(model.scheduler_config, clip_sample=False, set_alpha_to_one=False)
    scheduler.set_timesteps(steps, device=model.device)
    return scheduler


def denoise(unet, bender: Bender, x: Tensor, scheduler, timesteps: Tensor, cond: Tensor,
            uncond: Optional[Tensor], guidance: float) -> Tensor:
    """Run ``timesteps`` of ``scheduler`` from x, bending the latent at every point 0..n."""
    for k, t in enumerate(timesteps):
        x = bender.latent(x, k)
        out = guided_unet(unet, bender, scheduler.scale_model_input(x, t), t, cond, uncond, guidance, k)
        x = scheduler.step(out, t, x).prev_sample
    return bender.latent(x, len(timesteps))


def slerp(a: Tensor, b: Tensor, t: float, eps: float = 1e-7) -> Tensor:
    """Spherical interpolation between two embeddings, per token vector (last dim); falls
    back to linear where the two are (anti)parallel."""
    if t <= 0.0:
        return a
    if t >= 1.0:
        return b
    a32, b32 = a.float(), b.float()
    na, nb = a32.norm(dim=-1, keepdim=True), b32.norm(dim=-1, keepdim=True)
    cos = ((a32 / (na + eps)) * (b32 / (nb + eps))).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    so = torch.sin(omega)
    linear = so.abs() < 1e-4
    wa = torch.where(linear, torch.full_like(so, 1.0 - t), torch.sin((1.0 - t) * omega) / torch.where(linear, 1.0, so))
    wb = torch.where(linear, torch.full_like(so, t), torch.sin(t * omega) / torch.where(linear, 1.0, so))
    return (wa * a32 + wb * b32).to(a.dtype)
