"""The live path: few-step img2img on its own previous frame (StreamDiffusion-like).

    pipe = StreamPipeline(model, StreamConfig(prompt="stained glass"))
    pipe.prepare()                  # embeddings, timesteps, noise, first frame: once
    pipe.bends = [Bend("rotate", "mid", 0.8)]
    frame = pipe.step()             # (1, 3, H, W) in [0, 1], fed back into the next step

``step()`` is straight-line tensor code: no sleeps, no prints, no host syncs. Each of the
``steps`` denoising steps re-noises the current clean estimate to its timestep with noise
drawn once at ``prepare`` (fixed noise is what keeps consecutive frames coherent) and asks
the U-Net for a new estimate, as LCM / SD-Turbo sampling does.

A feedback loop drifts: colours saturate and detail washes out over minutes. Two optional
guards keep an hour of quiet input alive: ``color_coherence`` pulls each frame's per-channel
mean and standard deviation towards the first frame's, and ``noise_floor`` mixes a little
fresh noise into the fed-back latent so the loop never settles into one flat colour.

``step(timer=...)`` is the stage-timing seam: the timer is called with each name of
``STAGES`` once that stage's work is launched (on CUDA it may still be running), so a clock
that synchronises and reads the time when called (``netbend bench``) or records a CUDA
event times every stage of the real step. Without a timer nothing extra runs: no call, no
sync, no allocation.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Optional

import torch
from torch import Tensor

from .pipeline_base import BentPipeline, check_size
from .bending import forward_hooks
from .bends import Bend
from .prompts import PromptSchedule
from .sampling import alphas_cumprod, guided_unet, predict_x0, seeded_noise, slerp

# What step() reports to a timer, in order: "encode" holds the prompt blend, the fed-back
# latent (a VAE encode unless latent_feedback) and the noise floor; "unet" every denoising
# step with its latent bends; "decode" the VAE decode and colour coherence.
STAGES = ("encode", "unet", "decode")
Timer = Callable[[str], None]  # called with a name of STAGES as that stage ends


@dataclass
class StreamConfig:
    prompt: str = "an abstract colourful painting, highly detailed"
    steps: int = 1  # SD-Turbo is distilled for 1-4 steps; 1 is the real-time default
    strength: float = 0.5  # fraction of the noise schedule the fed-back frame is pushed into
    seed: int = 0
    width: Optional[int] = None  # None: the model's native size (512 for SD-Turbo, 64 for tiny)
    height: Optional[int] = None
    guidance: float = 0.0  # turbo models are trained without classifier-free guidance
    latent_feedback: bool = False  # feed the clean latent back instead of decode -> encode
    prompt_blend_frames: int = 8  # a prompt change slerps over this many frames instead of cutting
    color_coherence: float = 0.0  # 0..1 pull of each frame's colour statistics to the first frame's
    noise_floor: float = 0.0  # std of fresh noise added to the fed-back latent
    prompts: Optional[list] = None  # a prompt schedule [[seconds, prompt], ...], read at frame_index / fps
    # steps of the first frame, drawn from the prompt alone (None: steps). A model that is not
    # distilled for one step (mini) draws its first picture with several, then feeds it back.
    first_steps: Optional[int] = None

    def __post_init__(self) -> None:
        if not 1 <= int(self.steps) <= 50:
            raise ValueError(f"stream steps must be 1..50 (1-4 for turbo models), got {self.steps}")
        if self.first_steps is not None and not 1 <= int(self.first_steps) <= 50:
            raise ValueError(f"stream first_steps must be 1..50 (or unset: as steps), got {self.first_steps}")
        if not 0.0 < float(self.strength) <= 1.0:
            raise ValueError(f"stream strength must be in (0, 1], got {self.strength}")
        check_size(self, "stream")
        if self.prompt_blend_frames < 0:
            raise ValueError("prompt_blend_frames must be >= 0")
        if not 0.0 <= self.color_coherence <= 1.0:
            raise ValueError(f"color_coherence must be in 0..1, got {self.color_coherence}")
        if self.noise_floor < 0 or not math.isfinite(self.noise_floor):
            raise ValueError(f"noise_floor must be >= 0, got {self.noise_floor}")
        if self.prompts is not None:
            PromptSchedule.parse(self.prompts)  # validates

    def to_dict(self) -> dict:
        return asdict(self)


def stream_timesteps(steps: int, strength: float, num_train_timesteps: int = 1000) -> list[int]:
    """Evenly spaced, trailing timesteps from strength*T down: (1, 1.0) -> [999] as
    SD-Turbo's txt2img; (1, 0.5) -> [499] as its img2img; (2, 0.5) -> [499, 249]."""
    top = strength * num_train_timesteps
    return [max(0, int(round(top * (1.0 - k / steps))) - 1) for k in range(steps)]


class StreamPipeline(BentPipeline):
    config_type = StreamConfig

    def __init__(self, model, config: Optional[StreamConfig] = None, bends: Iterable[Bend] = (),
                 backend: str = "eager"):
        super().__init__(model, config, bends, backend)
        self.frame_index = 0

    @torch.no_grad()
    def prepare(self, init_image: Optional[Tensor] = None) -> Tensor:
        """One-time work: embeddings, timesteps, fixed noise, the first frame. Returns it."""
        self.claim()
        m, c = self.model, self.config
        self._latent_shape = self.latent_shape
        self._acp = acp = alphas_cumprod(m.scheduler_config)
        self._prediction_type = m.scheduler_config.get("prediction_type", "epsilon")
        T = len(acp)
        self._set_schedule()
        self._set_noise()
        self._schedule = PromptSchedule.parse(c.prompts) if c.prompts is not None else None
        self._embeddings = self._schedule.encode_all(m.encode_prompt) if self._schedule else None
        self._emb = self._schedule.embedding(0.0, self._embeddings) if self._schedule else m.encode_prompt([c.prompt])
        self._emb_from, self._emb_to, self._blend_left = self._emb, self._emb, 0
        self._uncond = m.encode_prompt([""]) if c.guidance > 1.0 else None
        if init_image is None:
            # first frame from the prompt alone: the same sampler from pure noise (strength 1)
            x0 = self._denoise_from_noise(T)
        else:
            x0 = self.encode_image(self._fit(init_image))
        self._latent = x0
        self._image = self.decode_latent(x0)
        if self.backend == "trace":
            self._warm_traces(T)
        self._reference = self._stats(self._image)
        self.frame_index = 0
        self._prepared = True
        return self._image

    def _warm_traces(self, T: int) -> None:
        """Trace the encoder and run every graph twice now, not in the show's first frames:
        TorchScript's profiling executor optimises a graph on its second run (a quarter of
        a second on tiny). The work is pure (fixed noise, the same inputs) and is discarded."""
        for _ in range(2):
            self.decode_latent(self.encode_image(self._image))
        self._denoise_from_noise(T)

    def _set_schedule(self) -> None:
        c, acp = self.config, self._acp
        ts = stream_timesteps(c.steps, c.strength, len(acp))
        self._timesteps = [torch.tensor([t], device=self.model.device) for t in ts]
        self._alpha_bars = [float(acp[t]) for t in ts]

    def _set_noise(self) -> None:
        # one fixed noise tensor per step, drawn from the seed
        m, c = self.model, self.config
        self._noise = [seeded_noise(self._latent_shape, c.seed + k, m.device, m.dtype) for k in range(c.steps)]
        self._fresh = torch.Generator(device=m.device)  # re-seeded per frame: see _fresh_noise

    def set_strength(self, strength: float) -> None:
        """A new img2img strength from the next frame on (a few scalars; nothing rebuilt)."""
        self.config.strength = StreamConfig(strength=strength).strength  # validates
        self._set_schedule()

    def set_seed(self, seed: int) -> None:
        """New fixed noise from the next frame on; the picture carries on from the current frame."""
        self.config.seed = int(seed)
        self._set_noise()

    def _fit(self, image: Tensor) -> Tensor:
        m = self.model
        image = image.to(device=m.device, dtype=m.dtype)
        if image.dim() == 3:
            image = image.unsqueeze(0)
        if tuple(image.shape[-2:]) != self.size:
            image = torch.nn.functional.interpolate(image, size=self.size, mode="bilinear", align_corners=False)
        return image

    def _denoise_from_noise(self, T: int) -> Tensor:
        m, c, acp = self.model, self.config, self._acp
        ts = stream_timesteps(c.first_steps or c.steps, 1.0, T)
        x0 = torch.zeros(self._latent_shape, device=m.device, dtype=m.dtype)
        for k, t in enumerate(ts):
            a = float(acp[t])
            noise = self._noise[k] if k < len(self._noise) else seeded_noise(self._latent_shape, c.seed + k,
                                                                             m.device, m.dtype)
            x_t = a ** 0.5 * x0 + (1 - a) ** 0.5 * noise
            out = guided_unet(self.unet, self.bender, x_t, torch.tensor([t], device=m.device), self._emb,
                              self._uncond, c.guidance, k)
            x0 = predict_x0(out, x_t, a, self._prediction_type)
        return x0

    def set_prompt(self, prompt: str) -> None:
        """Blend to a new prompt over ``prompt_blend_frames`` frames (slerp), from wherever
        the current blend is. A prompt schedule stops here: the performer has taken over."""
        self._schedule = None
        self.config.prompt = prompt
        self._emb_from = self._emb
        self._emb_to = self.model.encode_prompt([prompt])
        self._blend_left = self.config.prompt_blend_frames
        if self._blend_left == 0:
            self._emb = self._emb_to

    def _advance_prompt(self) -> None:
        if self._schedule is not None:
            self._emb = self._schedule.embedding(self.frame_index / self.fps, self._embeddings)
        elif self._blend_left > 0:
            n = self.config.prompt_blend_frames
            self._blend_left -= 1
            self._emb = slerp(self._emb_from, self._emb_to, (n - self._blend_left) / n)

    @staticmethod
    def _stats(image: Tensor) -> tuple[Tensor, Tensor]:
        return image.mean(dim=(-2, -1), keepdim=True), image.std(dim=(-2, -1), keepdim=True)

    def _cohere(self, image: Tensor) -> Tensor:
        """Pull per-channel mean/std towards the reference frame's by ``color_coherence``."""
        mean, std = self._stats(image)
        ref_mean, ref_std = self._reference
        matched = (image - mean) / (std + 1e-5) * ref_std + ref_mean
        return torch.lerp(image, matched, self.config.color_coherence).clamp(0.0, 1.0)

    @property
    def image(self) -> Optional[Tensor]:
        """The current frame of the feedback loop (the prepared first frame before any step)."""
        return self._image if self._prepared else None

    @property
    def prompt_embeds(self) -> Optional[Tensor]:
        """The prompt embeddings the next step uses (B, 77, D); None before ``prepare()``."""
        return self._emb if self._prepared else None

    @property
    def unet_hooks(self) -> int:
        """Forward hooks on the model's U-Net and its modules, whoever made them (torch has no
        public count): changing the bends must never change it."""
        return sum(forward_hooks(self.model.unet).values())

    @property
    def traces(self) -> int:
        """TorchScript graphs traced so far by this pipeline's U-Net segments and VAE passes
        (the trace back-end; 0 on the others): a retrace while the bends change shows here."""
        runs = [self.unet, self.encode_image, self.decode_latent]
        return sum(getattr(run, "traces", 0) for run in runs)

    def frame(self, i: int = 0, total: Optional[int] = None) -> Tensor:
        """The next frame of the feedback loop (the common pipeline call; i is not needed)."""
        return self.step()

    def _fresh_noise(self, like: Tensor) -> Tensor:
        """Frame ``frame_index``'s fresh noise: seeded from (seed, index), not drawn from a
        running stream, so ``resume`` at any index costs nothing and keeps the sequence."""
        self._fresh.manual_seed(self.config.seed * 1_000_003 + 10_000 + self.frame_index)
        return torch.randn(like.shape, generator=self._fresh, device=like.device, dtype=like.dtype)

    @torch.no_grad()
    def resume(self, image: Tensor, index: int) -> None:
        """Continue the feedback loop from saved frame ``index - 1`` (an interrupted render,
        or the last good frame after a failed one). Constant time whatever ``index``."""
        self.frame_index = index
        self._image = self._fit(image)
        self._latent = self.encode_image(self._image)

    @torch.no_grad()
    def step(self, image: Optional[Tensor] = None, timer: Optional[Timer] = None) -> Tensor:
        """One frame: img2img on ``image`` (default: the previous frame). (1, 3, H, W) in [0, 1].

        ``timer``, when given, is called with "encode", "unet" and "decode" (``STAGES``) as
        each stage ends; the frame is the same with or without it."""
        self.claim()
        if not self._prepared:
            raise RuntimeError("call prepare() before step()")
        c = self.config
        self._advance_prompt()
        if image is not None:
            x0 = self.encode_image(self._fit(image))
        elif c.latent_feedback:
            x0 = self._latent
        else:
            x0 = self.encode_image(self._image)
        if c.noise_floor > 0:
            x0 = x0 + c.noise_floor * self._fresh_noise(x0)
        if timer is not None:
            timer("encode")
        for k in range(c.steps):
            a = self._alpha_bars[k]
            x_t = a ** 0.5 * x0 + (1.0 - a) ** 0.5 * self._noise[k]  # (1, C, h, w)
            x_t = self.bender.latent(x_t, k)
            out = guided_unet(self.unet, self.bender, x_t, self._timesteps[k], self._emb, self._uncond, c.guidance, k)
            x0 = predict_x0(out, x_t, a, self._prediction_type)
        x0 = self.bender.latent(x0, c.steps)
        if timer is not None:
            timer("unet")
        frame = self.decode_latent(x0)
        if c.color_coherence > 0:
            frame = self._cohere(frame)
        if timer is not None:
            timer("decode")
        self._latent, self._image = x0, frame
        self.frame_index += 1
        return frame
