"""The `Model`: what the pipelines need of a Stable Diffusion 1.x/2.x model, in one object.

Every way of getting one returns this class: `engine.models.load_model` (folders, single
files, the Hub cache, mini), and the models built in code in engine/tiny.py. It sits in
its own module so that those can all import it without importing each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import diffusers
import torch
from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
from torch import Tensor
from transformers import CLIPTextModel

from engine.model_files import quiet_libraries

__all__ = ["Model"]

@dataclass
class Model:
    """A loaded Stable Diffusion 1.x/2.x model: U-Net, VAE, text encoder and their settings.

    Images are (B, 3, H, W) in [0, 1]; latents are the U-Net's scaled latents
    (B, C, H/8, W/8); prompt embeddings are (B, 77, D).
    """

    name: str
    unet: UNet2DConditionModel
    vae: AutoencoderTiny | AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: object  # CLIPTokenizer, or tiny's ByteTokenizer (same call interface)
    scheduler_config: dict  # its "_class_name" is the model's own scheduler
    device: torch.device
    dtype: torch.dtype
    default_size: int  # image side the U-Net was trained at
    default_steps: int
    default_guidance: float

    @property
    def latent_channels(self) -> int:
        return self.unet.config.in_channels

    @property
    def vae_scale_factor(self) -> int:
        # diffusers' pipelines' rule; AutoencoderTiny registers block_out_channels too.
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @torch.no_grad()
    def encode_prompt(self, prompts: Sequence[str]) -> Tensor:
        """Prompts → (B, 77, D) text embeddings, as diffusers' SD pipelines compute them.

        SD2's "penultimate layer + final layer norm" is built into its text encoder config
        (23 of OpenCLIP's 24 layers), so the last hidden state is right for SD1 and SD2.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        tokens = self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                                truncation=True, return_tensors="pt")
        mask = None
        if getattr(self.text_encoder.config, "use_attention_mask", False):
            mask = tokens.attention_mask.to(self.device)
        hidden = self.text_encoder(tokens.input_ids.to(self.device), attention_mask=mask)[0]  # (B, 77, D)
        return hidden.to(self.dtype)

    @torch.no_grad()
    def encode_image(self, image: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] → scaled latent (B, C, H/8, W/8); deterministic (the mean)."""
        x = image.to(self.device, self.vae.dtype) * 2 - 1  # both VAEs take [-1, 1]
        out = self.vae.encode(x)
        latent = out.latents if isinstance(self.vae, AutoencoderTiny) else out.latent_dist.mean
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        return ((latent - shift) * self.vae.config.scaling_factor).to(self.dtype)

    @torch.no_grad()
    def decode_latent(self, latent: Tensor) -> Tensor:
        """Scaled latent (B, C, h, w) → (B, 3, 8h, 8w) in [0, 1], clamped."""
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        z = latent.to(self.device, self.vae.dtype) / self.vae.config.scaling_factor + shift
        image = self.vae.decode(z).sample  # (B, 3, H, W), about [-1, 1]
        return (image / 2 + 0.5).clamp(0, 1).to(self.dtype)

    def to(self, device=None, dtype=None) -> "Model":
        """Move every part in place; returns self, like nn.Module.to."""
        device = self.device if device is None else torch.device(device)
        dtype = self.dtype if dtype is None else dtype
        for part in (self.unet, self.vae, self.text_encoder):
            part.to(device)
            if part.dtype != dtype:
                with quiet_libraries():  # diffusers 0.42 warns on every dtype cast, even with nothing to keep
                    part.to(dtype)
        self.device, self.dtype = device, dtype
        return self

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write a diffusers pipeline folder (safetensors) that `load_model(folder)` reads back."""
        folder = Path(folder)
        with quiet_libraries():
            self.unet.save_pretrained(folder / "unet")
            self.vae.save_pretrained(folder / "vae")
            self.text_encoder.save_pretrained(folder / "text_encoder")
            self.tokenizer.save_pretrained(folder / "tokenizer")
        scheduler_class = self.scheduler_config.get("_class_name", "EulerDiscreteScheduler")
        _write_json(folder / "scheduler" / "scheduler_config.json",
                    {**self.scheduler_config, "_class_name": scheduler_class,
                     "_diffusers_version": diffusers.__version__})
        tokenizer_class = type(self.tokenizer)
        module = tokenizer_class.__module__
        tokenizer_library = "transformers" if module.startswith("transformers") else module
        _write_json(folder / "model_index.json", {
            "_class_name": "StableDiffusionPipeline",
            "_diffusers_version": diffusers.__version__,
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", type(self.vae).__name__],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": [tokenizer_library, tokenizer_class.__name__],
            "scheduler": ["diffusers", scheduler_class],
            "safety_checker": [None, None],
            "feature_extractor": [None, None],
            "requires_safety_checker": False,
        })
        return folder

    @classmethod
    def from_parts(cls, name: str, unet, vae, text_encoder, tokenizer, scheduler_config: dict, *,
                   device, dtype, steps: int | None = None, guidance: float | None = None) -> "Model":
        """Check that the parts fit together, then make the Model on its device and dtype.

        steps/guidance default from the name and scheduler (turbo 1/0.0, LCM 4/1.0, else 50/7.5).
        """
        if vae.config.latent_channels != unet.config.in_channels:
            raise ValueError(f"{name}: the U-Net takes {unet.config.in_channels} latent channels but the VAE "
                             f"makes {vae.config.latent_channels}; inpainting and depth models are not supported")
        if text_encoder.config.hidden_size != unet.config.cross_attention_dim:
            raise ValueError(f"{name}: text encoder width {text_encoder.config.hidden_size} does not match the "
                             f"U-Net's cross_attention_dim {unet.config.cross_attention_dim} (SD 1.x and 2.x mixed?)")
        default_steps, default_guidance = _default_steps_guidance(name, scheduler_config)
        for part in (unet, vae, text_encoder):
            part.eval().requires_grad_(False)
        model = cls(name=name, unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                    scheduler_config=dict(scheduler_config), device=torch.device(device), dtype=dtype, default_size=0,
                    default_steps=default_steps if steps is None else steps,
                    default_guidance=default_guidance if guidance is None else guidance)
        model.default_size = unet.config.sample_size * model.vae_scale_factor
        return model.to(device, dtype)

    def __repr__(self) -> str:
        params = sum(p.numel() for p in self.unet.parameters()) / 1e6
        return (f"Model({self.name!r}, U-Net {params:.1f}M, {type(self.vae).__name__}, {self.device}, "
                f"{self.dtype}, {self.default_size}px, {self.default_steps} steps, guidance {self.default_guidance})")


def _default_steps_guidance(name: str, scheduler_config: dict) -> tuple[int, float]:
    if scheduler_config.get("_class_name") == "LCMScheduler":
        return 4, 1.0  # LCM: a few steps, guidance distilled in
    if "turbo" in str(name).lower():
        return 1, 0.0  # adversarial distillation: one step, no CFG
    return 50, 7.5  # SD's own defaults


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
