"""The paper's method 1: txt2img whose initial noise walks a circle.

Frame i starts from  A·sin(2πi/k) + B·cos(2πi/k)  with A and B Gaussian noise drawn from
the seed. sin² + cos² = 1, so every point of the walk is itself unit-variance noise, and
after k frames the walk is back where it began: a loop. Optionally the text embedding moves
linearly from one prompt to another over the frames (the paper's "starry night" to
"forest with river").

The bends act exactly as in the paper: with DDIM and 50 steps, ``Bend(layer="latent",
step=40)`` bends x_t with 10 steps left, once per frame.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Optional

import torch
from torch import Tensor

from .pipeline_base import BentPipeline, check_size
from .bends import Bend
from .sampling import ddim_scheduler, denoise, seeded_noise


@dataclass
class WalkConfig:
    prompt: str = "3D mesh geometry"
    prompt_to: Optional[str] = None  # if set, embeddings interpolate linearly prompt -> prompt_to
    period: int = 100  # k: frames for one full turn of the noise circle
    steps: int = 50  # DDIM steps, as in the paper
    guidance: float = 7.5  # the paper's classifier-free guidance scale
    seed: int = 42  # the paper's seed
    width: Optional[int] = None
    height: Optional[int] = None

    def __post_init__(self) -> None:
        if self.period < 1:
            raise ValueError(f"walk period must be >= 1 frame, got {self.period}")
        if not 1 <= self.steps <= 1000:
            raise ValueError(f"walk steps must be 1..1000, got {self.steps}")
        check_size(self, "walk")

    def to_dict(self) -> dict:
        return asdict(self)


class WalkPipeline(BentPipeline):
    def __init__(self, model, config: Optional[WalkConfig] = None, bends: Iterable[Bend] = (),
                 backend: str = "eager"):
        super().__init__(model, config or WalkConfig(), bends, backend)

    @torch.no_grad()
    def prepare(self) -> None:
        self.claim()
        m, c = self.model, self.config
        shape = self.latent_shape
        self._a = seeded_noise(shape, c.seed, m.device, torch.float32)
        self._b = seeded_noise(shape, c.seed + 1, m.device, torch.float32)
        self._cond_from = m.encode_prompt([c.prompt])
        self._cond_to = m.encode_prompt([c.prompt_to]) if c.prompt_to else self._cond_from
        self._uncond = m.encode_prompt([""]) if c.guidance > 1.0 else None
        self._scheduler = ddim_scheduler(m, c.steps)
        self._prepared = True

    def noise(self, i: int) -> Tensor:
        """The walk's starting latent for frame i: A sin(2πi/k) + B cos(2πi/k). (1, C, h, w)"""
        if not self._prepared:
            self.prepare()
        angle = 2.0 * math.pi * (i % self.config.period) / self.config.period
        x = self._a * math.sin(angle) + self._b * math.cos(angle)
        return x.to(self.model.dtype) * self._scheduler.init_noise_sigma

    def resume(self, image: Tensor, index: int) -> None:
        """Walk frames are computed independently: nothing to restore."""

    @torch.no_grad()
    def frame(self, i: int, total: Optional[int] = None) -> Tensor:
        """Frame i of ``total`` (the prompt interpolation runs over ``total`` frames).
        Returns (1, 3, H, W) in [0, 1]."""
        self.claim()
        if not self._prepared:
            self.prepare()
        m, c = self.model, self.config
        t = 0.0 if not total or total <= 1 else min(1.0, i / (total - 1))
        cond = torch.lerp(self._cond_from, self._cond_to, t) if c.prompt_to else self._cond_from
        latent = denoise(self.unet, self.bender, self.noise(i), self._scheduler, self._scheduler.timesteps,
                         cond, self._uncond, c.guidance)
        return m.decode_latent(latent)
