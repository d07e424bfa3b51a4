"""Models: one `Model` holding what the pipelines need, and the ways to get one.

`load_model(name)` takes, in this order:
  "tiny"            the random toy model built in code (engine/tiny.py), for tests and CI;
  "sd-turbo-arch"   SD-Turbo's full architecture with random weights, for GPU benchmarks;
  an alias          from MODEL_ALIASES ("sd-turbo", "sd-1.5", "sd-2.1", "lcm-sd15", …);
  a local path      a diffusers folder (model_index.json) or a single-file checkpoint;
  a repo id         "owner/name", from the local Hugging Face cache (downloaded only when
                    local_files_only=False).
Weights that are not there raise ModelNotFoundError saying what to download and where it
was looked for. Only safetensors load unless allow_pickle=True (`--allow-pickle`).

Reading each kind of file (folders, single files, VAEs, LoRAs, the Hub cache) is in
engine/model_files.py; the names that used to be defined here stay importable from here.

Device and dtype are chosen once, here: CUDA in float16 when there is one, else CPU in
float32. The pipelines read `model.device` / `model.dtype` and never choose again.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import diffusers
import torch
from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
from torch import Tensor
from transformers import CLIPTextModel

from engine.model_files import (
    PICKLE_SUFFIXES, REPO_ID, SD15_REPO, SD21_BASE_REPO, SD_TURBO_REPO, TAESD_REPO, ModelNotFoundError,
    PickleRefusedError, download_command, find_lora_file, find_vae_folder, fuse_lora, hub_cache_dir, hub_snapshot,
    load_folder, load_single_file, load_vae_folder, quiet_libraries,
)
from engine.model_files import LDM_CLIP_POSITIONS, SD_SCHEDULER_CONFIG  # noqa: F401  (were defined here)
from engine.tiny import sd_turbo_architecture, tiny_model  # models built in code; they return a Model

log = logging.getLogger(__name__)

__all__ = [
    "ALIAS_LORAS", "LDM_CLIP_POSITIONS", "MODEL_ALIASES", "Model", "ModelNotFoundError", "PICKLE_SUFFIXES",
    "DTYPES", "PickleRefusedError", "SD_SCHEDULER_CONFIG", "TAESD_REPO", "attention_kind", "default_device",
    "default_dtype", "parse_dtype",
    "download_command", "hub_cache_dir", "load_model", "sd_turbo_architecture", "tiny_model",
]

MODEL_ALIASES: dict[str, str] = {
    "sd-turbo": SD_TURBO_REPO,
    "sd-1.5": SD15_REPO,
    "sd-2.1": SD21_BASE_REPO,
    "sd-2.1-v": "stabilityai/stable-diffusion-2-1",  # 768×768, v-prediction
    "lcm-sd15": SD15_REPO,  # + ALIAS_LORAS["lcm-sd15"], fused
}
# LoRAs fused into an alias's U-Net at load time (diffusers needs `peft` for this).
ALIAS_LORAS: dict[str, str] = {"lcm-sd15": "latent-consistency/lcm-lora-sdv1-5"}
# sdxl-turbo is left out: SDXL needs a second text encoder and size/crop conditioning
# (added_cond_kwargs) in every U-Net call, which this Model interface does not carry.


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


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def default_dtype(device: torch.device) -> torch.dtype:
    return torch.float16 if device.type == "cuda" else torch.float32  # half only where it is fast


def parse_dtype(name) -> torch.dtype:
    """'fp16' | 'bf16' | 'fp32' (or a torch.dtype among them) -> the torch dtype."""
    if isinstance(name, torch.dtype) and name in DTYPES.values():
        return name
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; allowed: {', '.join(DTYPES)}")
    return DTYPES[name]


def attention_kind(unet) -> str:
    """The attention implementation the U-Net runs, e.g. 'AttnProcessor2_0' (torch's fused SDPA)."""
    kinds = sorted({type(p).__name__ for p in unet.attn_processors.values()})
    return ", ".join(kinds) or "none"


# ------------------------------------------------------------------------- loading

def load_model(name: str | os.PathLike = "sd-turbo", *, vae: str | os.PathLike = "default", device=None,
               dtype=None, allow_pickle: bool = False, local_files_only: bool = True, cache_dir=None,
               config: str | os.PathLike | None = None, lora: str | os.PathLike | None = None,
               lora_scale: float = 1.0) -> Model:
    """Load a model by name, alias, local path or Hub repo id (see the module docstring).

    vae: "default" (TAESD when available, else the model's own VAE with a warning),
      "full" (the model's AutoencoderKL), "taesd", or a folder / repo id of an
      AutoencoderTiny or AutoencoderKL.
    config: for a single-file checkpoint, a diffusers folder or cached repo id with the
      component configs; inferred from the checkpoint's keys (SD 1.x / 2.x) when omitted.
    lora: a LoRA (.safetensors path, folder or repo id) fused into the model at lora_scale.
    """
    name, vae = os.fspath(name), os.fspath(vae)  # paths may come as pathlib.Path
    config = None if config is None else os.fspath(config)
    lora = None if lora is None else os.fspath(lora)
    device = default_device() if device is None else torch.device(device)
    dtype = default_dtype(device) if dtype is None else parse_dtype(dtype)
    if name in ("tiny", "sd-turbo-arch"):
        choice = {"default": "taesd", "taesd": "taesd", "full": "full"}.get(vae)
        if choice is None:
            raise ValueError(f"{name} has vae 'default'/'taesd' (AutoencoderTiny) or 'full' (AutoencoderKL), "
                             f"got {vae!r}")
        if name == "tiny":
            return tiny_model(vae=choice, device=device, dtype=dtype)
        return sd_turbo_architecture(vae=choice, device=device, dtype=dtype)

    if name == "mini":
        return _load_mini(vae=vae, device=device, dtype=dtype)

    where = dict(local_files_only=local_files_only, cache_dir=cache_dir)
    lora = lora or ALIAS_LORAS.get(name)
    with quiet_libraries():
        source = _resolve(name, **where)
        vae_folder = find_vae_folder(vae, **where)  # None: use the model's own VAE
        if source.is_dir():
            unet, text_encoder, tokenizer, scheduler_config, own_vae = load_folder(
                source, dtype=dtype, own_vae=vae_folder is None, allow_pickle=allow_pickle)
        else:
            unet, text_encoder, tokenizer, scheduler_config, own_vae = load_single_file(
                source, config=config, dtype=dtype, own_vae=vae_folder is None, allow_pickle=allow_pickle, **where)
        autoencoder = own_vae if vae_folder is None else load_vae_folder(vae_folder, dtype=dtype)
        if lora is not None:
            lora_file = find_lora_file(lora, allow_pickle=allow_pickle, **where)
            fuse_lora(unet, text_encoder, tokenizer, lora_file, lora_scale)
            if "lcm" in lora.lower():
                scheduler_config = _lcm_scheduler_config(scheduler_config)
    if vae == "default" and vae_folder is None:
        log.warning("TAESD (%s) is not in the Hugging Face cache at %s, so the model's own, slower VAE is used. "
                    "Get TAESD with: %s", TAESD_REPO, hub_cache_dir(cache_dir),
                    download_command(TAESD_REPO, "vae", cache_dir))
    log.info("loaded %s from %s (vae %s)", name, source, type(autoencoder).__name__)
    return Model.from_parts(name, unet, autoencoder, text_encoder, tokenizer, scheduler_config,
                            device=device, dtype=dtype)


def _load_mini(*, vae: str, device, dtype) -> Model:
    """netbend's own trained model, from the package's data (engine/weights/mini)."""
    from engine.mini import MINI_DIR

    if vae not in ("default", "taesd"):
        raise ValueError(f"mini has its own AutoencoderTiny only (vae 'default' or 'taesd'), got {vae!r}")
    if not (MINI_DIR / "model_index.json").is_file():
        raise ModelNotFoundError(f"mini's weights are missing from this installation ({MINI_DIR}); reinstall "
                                 "netbend, or train them with: python scripts/train_mini.py --out " + str(MINI_DIR))
    with quiet_libraries():
        unet, text_encoder, tokenizer, scheduler_config, own_vae = load_folder(
            MINI_DIR, dtype=dtype, own_vae=True, allow_pickle=False)
    return Model.from_parts("mini", unet, own_vae, text_encoder, tokenizer, scheduler_config,
                            device=device, dtype=dtype, steps=1, guidance=0.0)


def _default_steps_guidance(name: str, scheduler_config: dict) -> tuple[int, float]:
    if scheduler_config.get("_class_name") == "LCMScheduler":
        return 4, 1.0  # LCM: a few steps, guidance distilled in
    if "turbo" in str(name).lower():
        return 1, 0.0  # adversarial distillation: one step, no CFG
    return 50, 7.5  # SD's own defaults


def _resolve(name: str, *, local_files_only: bool, cache_dir) -> Path:
    """An alias, path or repo id → a local diffusers folder or checkpoint file."""
    target = MODEL_ALIASES.get(name, name)
    path = Path(target).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelNotFoundError(f"{path} is a folder but not a diffusers pipeline folder "
                                     "(it has no model_index.json)")
        return path
    if path.is_file():
        return path
    looks_like_path = (path.suffix.lower() in (".safetensors", *PICKLE_SUFFIXES) or target.startswith((".", "/", "~"))
                       or "\\" in target or target.count("/") > 1)
    if looks_like_path:
        raise ModelNotFoundError(f"model path {path} does not exist")
    if not REPO_ID.fullmatch(target):
        raise ModelNotFoundError(
            f"unknown model {name!r}: not 'mini', 'tiny', 'sd-turbo-arch', an alias ({', '.join(MODEL_ALIASES)}), "
            "an existing path, or a Hugging Face repo id (owner/name)")
    what = f"model {name!r} ({target})" if target != name else f"model {target}"
    return hub_snapshot(target, "pipeline", what, local_files_only=local_files_only, cache_dir=cache_dir)


def _lcm_scheduler_config(base: dict) -> dict:
    from diffusers import LCMScheduler

    config = {k: v for k, v in dict(LCMScheduler.from_config(base).config).items() if not k.startswith("_")}
    return {"_class_name": "LCMScheduler", **config}


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

