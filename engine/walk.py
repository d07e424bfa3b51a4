"""The paper's method 1: txt2img whose initial noise walks a circle.

Two walks, because the paper's text and its authors' published code differ:

``walk = "circle"``, the paper's text: frame i starts from  A·sin(2πi/k) + B·cos(2πi/k)
with A and B Gaussian noise drawn from the seed (B from ``seed`` itself, so frame 0 is that
seed's noise). sin² + cos² = 1, so every point is itself unit-variance noise and after k
frames (``period``, 100 by default) the walk is back where it began. A quarter turn apart
two frames share nothing: at 20 fps they lose all resemblance within 1.25 s.

``walk = "base_circle"``, the authors' code (vidgen.py and their DDIM sampler): a fixed base
noise N (``seed``) plus ``amplitude`` times a circle that turns once over the whole render,

    x_i = N + amplitude · (A·cos(2πi/(k−1)) + B·sin(2πi/(k−1)))      (k frames, amplitude 0.3)

so every frame stays near the base image (consecutive frames correlate above 0.99, any
two above 0.8) and the last frame equals the first. ``period`` may set the frames per turn.

The text embedding can move linearly from ``prompt`` to ``prompt_to`` over the whole render
(the paper's "starry night" to "forest with river"), or follow a prompt schedule
(``prompts``: seconds -> prompts, see ``engine.prompts``), timed by ``fps``.

The bends act exactly as in the paper: with DDIM and 50 steps, ``Bend(layer="latent",
step=40)`` bends x_t with 10 steps left, once per frame.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

import torch
from torch import Tensor

from .pipeline_base import BentPipeline, check_size
from .prompts import PromptSchedule
from .sampling import ddim_scheduler, denoise, seeded_noise

WALKS = ("circle", "base_circle")
CIRCLE_PERIOD = 100  # the circle walk's frames per turn when none is given (5 s at 20 fps)


@dataclass
class WalkConfig:
    prompt: str = "3D mesh geometry"
    prompt_to: Optional[str] = None  # if set, embeddings interpolate linearly prompt -> prompt_to
    prompts: Optional[list] = None  # a prompt schedule [[seconds, prompt], ...]; replaces prompt/prompt_to
    walk: str = "circle"  # "circle": the paper's text; "base_circle": the authors' code (module doc)
    period: Optional[int] = None  # frames per turn; None: 100 (circle), the whole render (base_circle)
    amplitude: float = 0.3  # base_circle: the circle's weight on the base noise (the authors' 0.3)
    steps: int = 50  # DDIM steps, as in the paper
    guidance: float = 7.5  # the paper's classifier-free guidance scale
    seed: int = 46  # the paper's seed (their figures and videos; 42 is their script's unused default)
    width: Optional[int] = None
    height: Optional[int] = None

    def __post_init__(self) -> None:
        if self.walk not in WALKS:
            raise ValueError(f"unknown walk {self.walk!r}; allowed: circle (the paper's text), "
                             "base_circle (the authors' code)")
        if self.period is not None and (isinstance(self.period, bool) or int(self.period) != self.period
                                        or self.period < 1):
            raise ValueError(f"walk period must be >= 1 frame (or left out), got {self.period}")
        if not (isinstance(self.amplitude, (int, float)) and math.isfinite(self.amplitude)):
            raise ValueError(f"walk amplitude must be a finite number, got {self.amplitude!r}")
        if not 1 <= self.steps <= 1000:
            raise ValueError(f"walk steps must be 1..1000, got {self.steps}")
        if self.prompts is not None:
            if self.prompt_to is not None:
                raise ValueError("walk: give either prompt_to or a prompts schedule, not both")
            PromptSchedule.parse(self.prompts)  # validates
        check_size(self, "walk")

    def to_dict(self) -> dict:
        return asdict(self)


class WalkPipeline(BentPipeline):
    config_type = WalkConfig

    @torch.no_grad()
    def prepare(self) -> None:
        self.claim()
        m, c = self.model, self.config
        shape = self.latent_shape
        # circle: frame 0 is B, the seed's own noise; base_circle: the seed's noise is the base
        self._base = self._b = seeded_noise(shape, c.seed, m.device, torch.float32)
        self._a = seeded_noise(shape, c.seed + 1, m.device, torch.float32)
        self._c = seeded_noise(shape, c.seed + 2, m.device, torch.float32) if c.walk == "base_circle" else None
        self._schedule = PromptSchedule.parse(c.prompts) if c.prompts is not None else None
        self._embeddings = self._schedule.encode_all(m.encode_prompt) if self._schedule else None
        self._cond_from = m.encode_prompt([c.prompt])
        self._cond_to = m.encode_prompt([c.prompt_to]) if c.prompt_to else self._cond_from
        self._uncond = m.encode_prompt([""]) if c.guidance > 1.0 else None
        self._scheduler = ddim_scheduler(m, c.steps)
        self._prepared = True

    def period(self, total: Optional[int] = None) -> int:
        """Frames per turn: ``config.period``, else 100 for the circle walk and total - 1 for
        the authors' (one turn over a render of ``total`` frames, last frame = first)."""
        c = self.config
        if c.period is not None:
            return int(c.period)
        if c.walk == "circle":
            return CIRCLE_PERIOD
        if total is None:
            raise ValueError("the base_circle walk turns once over the whole render: pass total "
                             "(the render's frame count) or set the walk's period")
        return max(1, int(total) - 1)

    def noise(self, i: int, total: Optional[int] = None) -> Tensor:
        """The walk's starting latent for frame i of ``total``. (1, C, h, w)

        circle: A sin(2πi/k) + B cos(2πi/k); base_circle: N + amplitude (A cos + B sin)."""
        if not self._prepared:
            self.prepare()
        k = self.period(total)
        angle = 2.0 * math.pi * (i % k) / k
        if self.config.walk == "circle":
            x = self._a * math.sin(angle) + self._b * math.cos(angle)
        else:
            x = self._base + self.config.amplitude * (self._a * math.cos(angle) + self._c * math.sin(angle))
        return x.to(self.model.dtype) * self._scheduler.init_noise_sigma

    def condition(self, i: int, total: Optional[int] = None) -> Tensor:
        """The text embedding of frame i: the schedule at i / fps seconds, or the line from
        prompt to prompt_to over the ``total`` frames, or the prompt."""
        c = self.config
        if self._schedule is not None:
            return self._schedule.embedding(i / self.fps, self._embeddings)
        if c.prompt_to:
            t = 0.0 if not total or total <= 1 else min(1.0, i / (total - 1))
            return torch.lerp(self._cond_from, self._cond_to, t)
        return self._cond_from

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
        latent = denoise(self.unet, self.bender, self.noise(i, total), self._scheduler, self._scheduler.timesteps,
                         self.condition(i, total), self._uncond, c.guidance)
        return m.decode_latent(latent)
