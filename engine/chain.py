"""The paper's method 2: img2img where frame i + 1 starts from frame i.

Frame 0 comes from an init image (img2img) or, without one, from the prompt alone
(txt2img). Every later frame noises the previous frame to ``strength`` of the schedule
and denoises it with DDIM (50 steps by default, as in the paper; at strength 0.5 that
runs the last 25). Latent bend points count the steps actually run: point 0 is the noised
previous frame, point n the clean latent before the VAE (the paper's "floating orb"
bends point 1).

The noise of each frame comes from one generator seeded once, so a seed reproduces the
whole chain.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Optional

import torch
from torch import Tensor

from .pipeline_base import BentPipeline, check_size
from .bends import Bend
from .sampling import ddim_scheduler, denoise


@dataclass
class ChainConfig:
    prompt: str = "a floating orb"
    strength: float = 0.5  # the paper's img2img strength between frames
    steps: int = 50  # DDIM steps over the full schedule, as in the paper
    guidance: float = 7.5
    seed: int = 42
    width: Optional[int] = None
    height: Optional[int] = None

    def __post_init__(self) -> None:
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"chain strength must be in (0, 1], got {self.strength}")
        if not 1 <= self.steps <= 1000:
            raise ValueError(f"chain steps must be 1..1000, got {self.steps}")
        if int(self.steps * self.strength) < 1:
            raise ValueError(f"chain runs steps*strength = {self.steps * self.strength:g} steps; needs >= 1")
        check_size(self, "chain")

    def to_dict(self) -> dict:
        return asdict(self)


class ChainPipeline(BentPipeline):
    def __init__(self, model, config: Optional[ChainConfig] = None, bends: Iterable[Bend] = (),
                 backend: str = "eager"):
        super().__init__(model, config or ChainConfig(), bends, backend)
        self._image: Optional[Tensor] = None

    @torch.no_grad()
    def prepare(self, init_image: Optional[Tensor] = None) -> None:
        self.claim()
        m, c = self.model, self.config
        self._shape = self.latent_shape
        self._generator = torch.Generator().manual_seed(c.seed)
        self._cond = m.encode_prompt([c.prompt])
        self._uncond = m.encode_prompt([""]) if c.guidance > 1.0 else None
        self._scheduler = ddim_scheduler(m, c.steps)
        timesteps = self._scheduler.timesteps
        self._img2img_timesteps = timesteps[c.steps - int(c.steps * c.strength):]
        self._image = None
        if init_image is not None:
            image = init_image.to(device=m.device, dtype=m.dtype)
            image = image.unsqueeze(0) if image.dim() == 3 else image
            self._image = torch.nn.functional.interpolate(image, size=self.size, mode="bilinear", align_corners=False)
        self._prepared = True

    def _noise(self) -> Tensor:
        m = self.model
        return torch.randn(self._shape, generator=self._generator).to(device=m.device, dtype=m.dtype)

    @torch.no_grad()
    def resume(self, image: Tensor, index: int) -> None:
        """Continue the chain from saved frame ``index - 1`` (an interrupted render): the
        noise generator skips the draws of the frames already made, so frame ``index``
        gets the noise it would have had."""
        if not self._prepared:
            self.prepare()
        for _ in range(index):
            self._noise()
        image = image.to(device=self.model.device, dtype=self.model.dtype)
        self._image = image.unsqueeze(0) if image.dim() == 3 else image

    @torch.no_grad()
    def frame(self, i: int = 0, total: Optional[int] = None) -> Tensor:
        """The next frame of the chain, (1, 3, H, W) in [0, 1] (i is not needed)."""
        self.claim()
        if not self._prepared:
            self.prepare()
        m, c, sched = self.model, self.config, self._scheduler
        noise = self._noise()
        if self._image is None:
            x, timesteps = noise * sched.init_noise_sigma, sched.timesteps
        else:
            timesteps = self._img2img_timesteps
            x = sched.add_noise(m.encode_image(self._image), noise, timesteps[:1])
        latent = denoise(self.unet, self.bender, x, sched, timesteps, self._cond, self._uncond, c.guidance)
        self._image = m.decode_latent(latent)
        return self._image
