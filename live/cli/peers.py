"""Peers on the same work: diffusers' own img2img pipeline, timed beside netbend's stream step.

`netbend bench --peer diffusers` builds diffusers' ``StableDiffusionImg2ImgPipeline`` from a
second copy of the same model (its own U-Net, VAE and text encoder, never bent) and, in
every measured cycle, gives it the work one netbend stream step does:

- the same prompt embeddings (``prompt_embeds``: neither side encodes text per frame);
- the same denoising steps at the same strength: img2img runs ``int(n * strength)`` of
  ``n`` scheduled steps, so ``n = ceil(steps / strength)``, on a trailing-spaced Euler
  schedule, which puts them at netbend's timesteps (``timesteps`` in the report says so);
- the same size and guidance, img2img on its own previous frame, the frame returned as a
  (1, 3, H, W) tensor in [0, 1] (``output_type="pt"``: no PIL conversion on either side).

The ratio is the peer's median frame time over netbend's median ``pipe.step()`` time,
both measured in the same cycles of one run.
"""
from __future__ import annotations

import math

import torch

from engine.stream import StreamPipeline, stream_timesteps

PEERS = ("diffusers",)


class DiffusersPeer:
    """diffusers' StableDiffusionImg2ImgPipeline on its own copy of the model, set up to do
    what ``pipe.step()`` does (see the module docstring)."""

    name = "diffusers"

    def __init__(self, model, pipe: StreamPipeline):
        import diffusers
        from diffusers import EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline

        c = pipe.config
        self.version = diffusers.__version__
        self.strength = float(c.strength)
        self.guidance = float(c.guidance)
        # img2img runs int(n * strength) of n steps; the epsilon keeps 1 / 0.5 at 2, not 3
        self.num_inference_steps = math.ceil(c.steps / c.strength - 1e-9)
        scheduler = EulerDiscreteScheduler.from_config(model.scheduler_config, timestep_spacing="trailing")
        self.pipeline = StableDiffusionImg2ImgPipeline(
            vae=model.vae, text_encoder=model.text_encoder, tokenizer=model.tokenizer, unet=model.unet,
            scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        self.pipeline.set_progress_bar_config(disable=True)
        self.prompt_embeds = pipe.prompt_embeds.to(model.device)  # (1, 77, D), the stream's own
        self.image = pipe.image.clone()  # (1, 3, H, W): both loops start from the same frame
        self.generator = torch.Generator(device=model.device).manual_seed(c.seed)
        scheduler.set_timesteps(self.num_inference_steps, device=model.device)
        ran, _ = self.pipeline.get_timesteps(self.num_inference_steps, self.strength, model.device)
        self.timesteps = [int(round(float(t))) for t in ran]
        self.netbend_timesteps = stream_timesteps(c.steps, c.strength, int(model.scheduler_config.get(
            "num_train_timesteps", 1000)))

    @torch.no_grad()
    def frame(self) -> torch.Tensor:
        """One img2img frame on the peer's previous frame: (1, 3, H, W) in [0, 1]."""
        self.image = self.pipeline(
            prompt_embeds=self.prompt_embeds, image=self.image, strength=self.strength,
            num_inference_steps=self.num_inference_steps, guidance_scale=self.guidance,
            output_type="pt", generator=self.generator).images
        return self.image

    def describe(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "pipeline": type(self.pipeline).__name__,
            "scheduler": f"{type(self.pipeline.scheduler).__name__} (timestep_spacing=trailing)",
            "num_inference_steps": self.num_inference_steps,
            "strength": self.strength,
            "guidance_scale": self.guidance,
            "timesteps": self.timesteps,
            "netbend_timesteps": self.netbend_timesteps,
            "same_timesteps": self.timesteps == self.netbend_timesteps,
        }


def make_peer(name: str, model, pipe: StreamPipeline) -> DiffusersPeer:
    """The peer called ``name`` on ``model`` (a second copy of the bench's model)."""
    if name not in PEERS:
        raise ValueError(f"unknown --peer {name!r}; allowed: {', '.join(PEERS)}")
    return DiffusersPeer(model, pipe)
