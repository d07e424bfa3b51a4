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

The `Model` class is engine/model.py; reading each kind of file (folders, single files,
VAEs, LoRAs, the Hub cache) and the loading errors are engine/model_files.py; the models
built in code (tiny, sd-turbo-arch) are engine/tiny.py.

Device and dtype are chosen once, here: CUDA in float16 when there is one, else CPU in
float32. The pipelines read `model.device` / `model.dtype` and never choose again.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from engine.model import Model
from engine.model_files import (
    PICKLE_SUFFIXES, REPO_ID, SD15_REPO, SD21_BASE_REPO, SD_TURBO_REPO, TAESD_REPO, ModelNotFoundError,
    download_command, find_lora_file, find_vae_folder, fuse_lora, hub_cache_dir, hub_snapshot,
    load_folder, load_single_file, load_vae_folder, quiet_libraries,
)
from engine.tiny import sd_turbo_architecture, tiny_model

log = logging.getLogger(__name__)

__all__ = [
    "ALIAS_LORAS", "DTYPES", "MODEL_ALIASES", "attention_kind", "default_device", "default_dtype", "load_model",
    "parse_dtype",
]

MODEL_ALIASES: dict[str, str] = {
    "sd-turbo": SD_TURBO_REPO,
    "sd-1.5": SD15_REPO,
    "sd-1.4": "CompVis/stable-diffusion-v1-4",  # the checkpoint the paper used (sd-v1-4)
    "sd-2.1": SD21_BASE_REPO,
    "sd-2.1-v": "stabilityai/stable-diffusion-2-1",  # 768×768, v-prediction
    "lcm-sd15": SD15_REPO,  # + ALIAS_LORAS["lcm-sd15"], fused
}
# LoRAs fused into an alias's U-Net at load time (diffusers needs `peft` for this).
ALIAS_LORAS: dict[str, str] = {"lcm-sd15": "latent-consistency/lcm-lora-sdv1-5"}
# sdxl-turbo is left out: SDXL needs a second text encoder and size/crop conditioning
# (added_cond_kwargs) in every U-Net call, which this Model interface does not carry.


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
