"""The paper's method 2: img2img where frame i + 1 starts from frame i.

Frame 0 comes from an init image (img2img) or, without one, from the prompt alone
(txt2img). Every later frame noises the previous frame to ``strength`` of the schedule
and denoises it with DDIM (50 steps by default, as in the paper; at strength 0.5 that
runs the last 25). Latent bend points count the steps actually run: point 0 is the noised
previous frame, point n the clean latent before the VAE (the paper's "floating orb"
bends point 1).

The noise of each frame comes from one generator seeded once, so a seed reproduces the
whole chain.

Where the paper's text and the authors' code (audio2video.py) differ, both are options:
the text runs the frames after the first with an empty prompt (``prompt_after_first = ""``),
the code keeps the prompt; the code makes frame 0 by plain txt2img, unbent
(``bend_first = false``). A prompt schedule (``prompts``: seconds -> prompts, read at
i / fps) replaces the single prompt.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import torch
from torch import Tensor

from .pipeline_base import BentPipeline, check_size
from .prompts import PromptSchedule
from .sampling import ddim_scheduler, denoise


@dataclass
class ChainConfig:
    prompt: str = "a floating orb"
    prompts: Optional[list] = None  # a prompt schedule [[seconds, prompt], ...]; replaces prompt
    prompt_after_first: Optional[str] = None  # frames 1.. use this prompt ("" is the paper's text); None: prompt
    bend_first: bool = True  # False: frame 0 is plain txt2img, unbent, as in the authors' code
    strength: float = 0.5  # the paper's img2img strength between frames
    steps: int = 50  # DDIM steps over the full schedule, as in the paper
    guidance: float = 7.5
    seed: int = 46  # the paper's seed
    width: Optional[int] = None
    height: Optional[int] = None

    def __post_init__(self) -> None:
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"chain strength must be in (0, 1], got {self.strength}")
        if not 1 <= self.steps <= 1000:
            raise ValueError(f"chain steps must be 1..1000, got {self.steps}")
        if int(self.steps * self.strength) < 1:
            raise ValueError(f"chain runs steps*strength = {self.steps * self.strength:g} steps; needs >= 1")
        if self.prompts is not None:
            if self.prompt_after_first is not None:
                raise ValueError("chain: give either prompt_after_first or a prompts schedule, not both")
            PromptSchedule.parse(self.prompts)  # validates
        if not isinstance(self.bend_first, bool):
            raise ValueError(f"chain bend_first must be true or false, got {self.bend_first!r}")
        check_size(self, "chain")

    def to_dict(self) -> dict:
        return asdict(self)


class ChainPipeline(BentPipeline):
    config_type = ChainConfig
    _image: Optional[Tensor] = None  # the frame the next one starts from; None: start from the prompt

    @torch.no_grad()
    def prepare(self, init_image: Optional[Tensor] = None) -> None:
        self.claim()
        m, c = self.model, self.config
        self._shape = self.latent_shape
        self._generator = torch.Generator().manual_seed(c.seed)
        self._cond = m.encode_prompt([c.prompt])
        self._cond_later = m.encode_prompt([c.prompt_after_first]) if c.prompt_after_first is not None else self._cond
        self._schedule = PromptSchedule.parse(c.prompts) if c.prompts is not None else None
        self._embeddings = self._schedule.encode_all(m.encode_prompt) if self._schedule else None
        self._uncond = m.encode_prompt([""]) if c.guidance > 1.0 else None
        self._scheduler = ddim_scheduler(m, c.steps)
        timesteps = self._scheduler.timesteps
        self._img2img_timesteps = timesteps[c.steps - int(c.steps * c.strength):]
        self._image = None
        self._index = 0
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
        self._index = index
        image = image.to(device=self.model.device, dtype=self.model.dtype)
        self._image = image.unsqueeze(0) if image.dim() == 3 else image

    def condition(self, i: int) -> Tensor:
        """The text embedding of frame i: the schedule at i / fps seconds, else the prompt
        (``prompt_after_first`` from frame 1 on)."""
        if self._schedule is not None:
            return self._schedule.embedding(i / self.fps, self._embeddings)
        return self._cond if i == 0 else self._cond_later

    @torch.no_grad()
    def frame(self, i: Optional[int] = None, total: Optional[int] = None) -> Tensor:
        """The next frame of the chain, (1, 3, H, W) in [0, 1]. ``i`` (default: the count
        so far) only times the prompt schedule; frames always follow one another."""
        self.claim()
        if not self._prepared:
            self.prepare()
        m, c, sched = self.model, self.config, self._scheduler
        i = self._index if i is None else i
        noise = self._noise()
        if self._image is None:
            x, timesteps = noise * sched.init_noise_sigma, sched.timesteps
        else:
            timesteps = self._img2img_timesteps
            x = sched.add_noise(m.encode_image(self._image), noise, timesteps[:1])
        saved = None
        if self._image is None and self._index == 0 and not c.bend_first:
            saved, self.bender.bends = self.bender.bends, ()  # frame 0 unbent: latent and U-Net points
        try:
            latent = denoise(self.unet, self.bender, x, sched, timesteps, self.condition(i), self._uncond, c.guidance)
        finally:
            if saved is not None:
                self.bender.bends = saved
        self._image = m.decode_latent(latent)
        self._index += 1
        return self._image
