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

Device and dtype are chosen once, here: CUDA in float16 when there is one, else CPU in
float32. The pipelines read `model.device` / `model.dtype` and never choose again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import diffusers
import huggingface_hub
import torch
import transformers
from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
from huggingface_hub import constants as hub_constants
from packaging import version
from torch import Tensor
from transformers import CLIPTextModel, CLIPTokenizer

from engine import tiny as _tiny
from engine.tiny import sd_turbo_architecture, tiny_model  # models built in code; they return a Model

log = logging.getLogger(__name__)


class ModelNotFoundError(FileNotFoundError):
    """Weights or configs are not on this machine; the message says what to get and where."""


class PickleRefusedError(ValueError):
    """A pickled checkpoint (.ckpt/.pt/.pth/.bin) was given without allow_pickle=True."""


MODEL_ALIASES: dict[str, str] = {
    "sd-turbo": "stabilityai/sd-turbo",
    "sd-1.5": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd-2.1": "stabilityai/stable-diffusion-2-1-base",
    "sd-2.1-v": "stabilityai/stable-diffusion-2-1",  # 768×768, v-prediction
    "lcm-sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",  # + ALIAS_LORAS["lcm-sd15"], fused
}
# LoRAs fused into an alias's U-Net at load time (diffusers needs `peft` for this).
ALIAS_LORAS: dict[str, str] = {"lcm-sd15": "latent-consistency/lcm-lora-sdv1-5"}
# sdxl-turbo is left out: SDXL needs a second text encoder and size/crop conditioning
# (added_cond_kwargs) in every U-Net call, which this Model interface does not carry.

TAESD_REPO = "madebyollin/taesd"  # tiny VAE for SD 1.x/2.x latents, far cheaper than their KL VAE
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
SD_SCHEDULER_CONFIG = _tiny.SD_TURBO_SCHEDULER_CONFIG  # SD's schedule, SD-Turbo's "trailing" spacing

# What to fetch per kind of repo: configs, tokenizer files and one safetensors copy of
# each component (not the 4–7 GB root checkpoints or the safety checker).
_DOWNLOAD_PATTERNS = {
    "pipeline": ["*.json", "*.txt", "unet/diffusion_pytorch_model.safetensors",
                 "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"],
    "vae": ["*.json", "diffusion_pytorch_model.safetensors"],
    "config": ["*.json", "*.txt"],
    "lora": ["*.json", "*.safetensors"],
}
_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")


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
                with _quiet_libraries():  # diffusers 0.42 warns on every dtype cast, even with nothing to keep
                    part.to(dtype)
        self.device, self.dtype = device, dtype
        return self

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write a diffusers pipeline folder (safetensors) that `load_model(folder)` reads back."""
        folder = Path(folder)
        with _quiet_libraries():
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


def default_dtype(device: torch.device) -> torch.dtype:
    return torch.float16 if device.type == "cuda" else torch.float32  # half only where it is fast


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
    dtype = default_dtype(device) if dtype is None else dtype
    if name in ("tiny", "sd-turbo-arch"):
        choice = {"default": "taesd", "taesd": "taesd", "full": "full"}.get(vae)
        if choice is None:
            raise ValueError(f"{name} has vae 'default'/'taesd' (AutoencoderTiny) or 'full' (AutoencoderKL), "
                             f"got {vae!r}")
        if name == "tiny":
            return tiny_model(vae=choice, device=device, dtype=dtype)
        return sd_turbo_architecture(vae=choice, device=device, dtype=dtype)

    where = dict(local_files_only=local_files_only, cache_dir=cache_dir)
    lora = lora or ALIAS_LORAS.get(name)
    with _quiet_libraries():
        source = _resolve(name, **where)
        vae_folder = _vae_folder(vae, **where)  # None: use the model's own VAE
        if source.is_dir():
            unet, text_encoder, tokenizer, scheduler_config, own_vae = _load_folder(
                source, dtype=dtype, own_vae=vae_folder is None, allow_pickle=allow_pickle)
        else:
            unet, text_encoder, tokenizer, scheduler_config, own_vae = _load_single_file(
                source, config=config, dtype=dtype, own_vae=vae_folder is None, allow_pickle=allow_pickle, **where)
        autoencoder = own_vae if vae_folder is None else _load_vae_folder(vae_folder, dtype=dtype)
        if lora is not None:
            _fuse_lora(unet, text_encoder, tokenizer, _lora_file(lora, allow_pickle=allow_pickle, **where), lora_scale)
            if "lcm" in lora.lower():
                scheduler_config = _lcm_scheduler_config(scheduler_config)
    if vae == "default" and vae_folder is None:
        log.warning("TAESD (%s) is not in the Hugging Face cache at %s, so the model's own, slower VAE is used. "
                    "Get TAESD with: %s", TAESD_REPO, hub_cache_dir(cache_dir),
                    download_command(TAESD_REPO, "vae", cache_dir))
    log.info("loaded %s from %s (vae %s)", name, source, type(autoencoder).__name__)
    return Model.from_parts(name, unet, autoencoder, text_encoder, tokenizer, scheduler_config,
                            device=device, dtype=dtype)


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
    if not _REPO_ID.fullmatch(target):
        raise ModelNotFoundError(
            f"unknown model {name!r}: not 'tiny', 'sd-turbo-arch', an alias ({', '.join(MODEL_ALIASES)}), "
            "an existing path, or a Hugging Face repo id (owner/name)")
    what = f"model {name!r} ({target})" if target != name else f"model {target}"
    return _snapshot(target, "pipeline", what, local_files_only=local_files_only, cache_dir=cache_dir)


def hub_cache_dir(cache_dir=None) -> Path:
    """The Hugging Face hub cache in effect now (cache_dir, else HF_HUB_CACHE, else HF_HOME/hub)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return Path(env).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(hub_constants.HF_HUB_CACHE)


def download_command(repo_id: str, kind: str = "pipeline", cache_dir=None) -> str:
    """The shell command that puts `repo_id` where load_model looks for it."""
    patterns = [shlex.quote(p) for p in _DOWNLOAD_PATTERNS[kind]]
    if version.parse(huggingface_hub.__version__) >= version.parse("0.34"):  # `hf` replaced huggingface-cli
        command = ["hf", "download", repo_id, *(f"--include {p}" for p in patterns)]  # repeated flag
    else:
        command = ["huggingface-cli", "download", repo_id, "--include", *patterns]
    if cache_dir is not None:
        command.append(f"--cache-dir {shlex.quote(str(hub_cache_dir(cache_dir)))}")
    return " ".join(command)


def _snapshot(repo_id: str, kind: str, what: str, *, local_files_only: bool, cache_dir,
              alternative: str = "or pass a local diffusers folder or a .safetensors checkpoint path instead") -> Path:
    cache = hub_cache_dir(cache_dir)
    try:
        return Path(huggingface_hub.snapshot_download(repo_id, cache_dir=cache, local_files_only=True))
    except Exception as err:  # LocalEntryNotFoundError, or HFValidationError for a malformed id
        if local_files_only:
            raise ModelNotFoundError(
                f"{what} is not in the Hugging Face cache at {cache} (HF_HUB_CACHE, or HF_HOME/hub).\n"
                f"  Download it with:\n    {download_command(repo_id, kind, cache_dir)}\n  {alternative}") from err
    try:
        return Path(huggingface_hub.snapshot_download(repo_id, cache_dir=cache,
                                                      allow_patterns=_DOWNLOAD_PATTERNS[kind]))
    except Exception as err:
        raise ModelNotFoundError(f"could not download {what} ({repo_id!r}) into {cache}: {err}") from err


def _load_folder(folder: Path, *, dtype, own_vae: bool, allow_pickle: bool):
    """A diffusers SD pipeline folder → (unet, text_encoder, tokenizer, scheduler_config, vae|None)."""
    index = _read_json(folder / "model_index.json")
    if "text_encoder_2" in index or "XL" in index.get("_class_name", ""):
        raise ValueError(f"{folder} is an SDXL pipeline; netbend loads SD 1.x / 2.x models "
                         "(sdxl-turbo is not supported)")
    only_safetensors = dict(use_safetensors=None if allow_pickle else True)
    try:
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=dtype,
                                                    variant=_variant(folder / "unet"), **only_safetensors)
        text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", dtype=dtype,
                                                     variant=_variant(folder / "text_encoder"), **only_safetensors)
        tokenizer = _load_tokenizer(folder)
        vae = None
        if own_vae:
            vae_class = AutoencoderTiny if index.get("vae", [None, ""])[1] == "AutoencoderTiny" else AutoencoderKL
            vae = vae_class.from_pretrained(folder, subfolder="vae", torch_dtype=dtype,
                                            variant=_variant(folder / "vae"), **only_safetensors)
        scheduler_config = _read_json(folder / "scheduler" / "scheduler_config.json")
    except (OSError, ValueError) as err:
        hint = "" if allow_pickle else " (pickled .bin weights load only with allow_pickle=True / --allow-pickle)"
        raise ModelNotFoundError(f"{folder} is incomplete: {_first_line(err)}{hint}") from err
    return unet, text_encoder, tokenizer, scheduler_config, vae


def _variant(component: Path) -> str | None:
    """"fp16" when a component folder has only the half-precision variant of its weights."""
    full = list(component.glob("*.safetensors")) + list(component.glob("*.bin"))
    if full and all(".fp16." in p.name for p in full):
        return "fp16"
    return None


def _load_tokenizer(folder: Path):
    if (folder / "tokenizer" / _tiny.BYTE_TOKENIZER_FILE).is_file():
        return _tiny.ByteTokenizer.from_pretrained(folder, subfolder="tokenizer")
    return CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")


def _load_single_file(path: Path, *, config, dtype, own_vae: bool, allow_pickle: bool,
                      local_files_only: bool, cache_dir):
    """A single-file checkpoint → the same parts as `_load_folder`.

    Original LDM layout (civitai, `model.diffusion_model.*`) goes through diffusers'
    from_single_file machinery one component at a time, as StableDiffusionPipeline.
    from_single_file does it: the file is read once and the VAE is not converted when
    TAESD is used. A diffusers-layout file (`unet.*`, `vae.*`, `text_encoder.*`) takes
    the same path with nothing to convert.
    """
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm, load_single_file_checkpoint

    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES and not allow_pickle:
        raise PickleRefusedError(
            f"{path} is a pickled checkpoint ({suffix}); unpickling can run code hidden in the file, so netbend "
            "loads only .safetensors by default. Convert it to .safetensors, or if you trust its source pass "
            "allow_pickle=True (command line: --allow-pickle)")
    if suffix not in (".safetensors", ".sft", *PICKLE_SUFFIXES):
        raise ValueError(f"{path}: not a checkpoint netbend knows ({suffix or 'no suffix'}); expected .safetensors")
    try:
        checkpoint = load_single_file_checkpoint(str(path))  # safetensors, or torch.load(weights_only=True)
    except Exception as err:
        raise ValueError(f"could not read checkpoint {path}: {_first_line(err)}") from err
    if any(key.startswith("unet.") for key in checkpoint):  # diffusers' names: split, no conversion
        unet_state, vae_state, clip_state = _split_diffusers_layout(checkpoint)
        if config is None:  # CLIP width tells SD 1.x (768) from SD 2.x (1024)
            width = clip_state[LDM_CLIP_POSITIONS].shape[-1]
            config = MODEL_ALIASES["sd-1.5" if width == 768 else "sd-2.1"]
    else:
        unet_state = vae_state = clip_state = checkpoint
        if config is None:
            config = _infer_config_repo(checkpoint, path)
    folder = _config_folder(config, path, local_files_only=local_files_only, cache_dir=cache_dir)
    options = dict(config=str(folder), torch_dtype=dtype, local_files_only=True)
    try:
        unet = UNet2DConditionModel.from_single_file(unet_state, subfolder="unet", **options)
        text_encoder = create_diffusers_clip_model_from_ldm(CLIPTextModel, clip_state, subfolder="text_encoder",
                                                            **options)
        vae = AutoencoderKL.from_single_file(vae_state, subfolder="vae", **options) if own_vae else None
    except Exception as err:  # diffusers raises ValueError/RuntimeError/KeyError on a mismatch
        raise ValueError(f"{path} does not fit the configs in {folder}: {_first_line(err)}") from err
    for what, module in (("U-Net", unet), ("text encoder", text_encoder), ("VAE", vae)):
        # from_single_file builds on the meta device; a tensor the file lacks stays there.
        missing = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta] if module else []
        if missing:
            raise ValueError(f"{path} has no weights for {len(missing)} tensors of the {what} "
                             f"(e.g. {missing[:3]}); does it match the configs in {folder}?")
    scheduler_config = _read_json(folder / "scheduler" / "scheduler_config.json")
    return unet, text_encoder, _load_tokenizer(folder), scheduler_config, vae


LDM_CLIP_POSITIONS = "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight"


def _split_diffusers_layout(checkpoint: dict) -> tuple[dict, dict, dict]:
    """`unet.*`, `vae.*`, `text_encoder.*` → per-component dicts; the text encoder in SD 1.x's
    layout (HF CLIP under `cond_stage_model.transformer.`), which diffusers' CLIP loader reads."""
    def part(prefix):
        return {k[len(prefix):]: v for k, v in checkpoint.items() if k.startswith(prefix)}

    clip = {"cond_stage_model.transformer.text_model." + k.removeprefix("text_model."): v
            for k, v in part("text_encoder.").items()}
    return part("unet."), part("vae."), clip


def _infer_config_repo(checkpoint: dict, path: Path) -> str:
    """The diffusers repo whose configs fit an LDM checkpoint, as diffusers infers it."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_DEFAULT_PIPELINE_PATHS, infer_diffusers_model_type

    model_type = infer_diffusers_model_type(checkpoint)
    if model_type not in ("v1", "v2"):
        raise ValueError(f"{path} looks like a {model_type!r} checkpoint; netbend loads SD 1.x / 2.x "
                         "(pass config=<diffusers folder> if it is one)")
    repo = DIFFUSERS_DEFAULT_PIPELINE_PATHS[model_type]["pretrained_model_name_or_path"]
    if model_type == "v2" and "turbo" in path.name.lower():
        repo = MODEL_ALIASES["sd-turbo"]  # SD-Turbo is SD2 at 512 px, epsilon; not SD 2.1-v's 768 px v-prediction
    log.info("%s: SD %s checkpoint, using the configs of %s", path.name, model_type[1], repo)
    return repo


def _config_folder(config: str, path: Path, *, local_files_only: bool, cache_dir) -> Path:
    if Path(config).expanduser().is_dir():
        return Path(config).expanduser()
    return _snapshot(config, "config", f"{config}, whose configs {path.name} needs,",
                     local_files_only=local_files_only, cache_dir=cache_dir,
                     alternative="or pass config=<a local diffusers folder of the same model family>")


def _vae_folder(vae: str, *, local_files_only: bool, cache_dir) -> Path | None:
    """Where the chosen VAE lives; None means "the model's own VAE"."""
    if vae == "full":
        return None
    if vae == "default":
        try:
            return _snapshot(TAESD_REPO, "vae", "TAESD", local_files_only=local_files_only, cache_dir=cache_dir)
        except ModelNotFoundError:
            return None  # load_model warns once the model itself has loaded
    repo = TAESD_REPO if vae == "taesd" else vae
    path = Path(repo).expanduser()
    if path.is_dir():
        return path
    if path.exists() or not _REPO_ID.fullmatch(repo):
        raise ModelNotFoundError(f"VAE {vae!r}: expected 'default', 'full', 'taesd', a diffusers VAE folder "
                                 "(config.json + weights) or a Hugging Face repo id; that path does not exist "
                                 "or is not a folder")
    return _snapshot(repo, "vae", f"VAE {repo}", local_files_only=local_files_only, cache_dir=cache_dir,
                     alternative="or pass vae='full' to use the model's own VAE")


def _load_vae_folder(folder: Path, *, dtype):
    subfolder = "vae" if (folder / "vae" / "config.json").is_file() else None
    class_name = _read_json(folder / (subfolder or "") / "config.json").get("_class_name")
    vae_class = AutoencoderTiny if class_name == "AutoencoderTiny" else AutoencoderKL
    try:
        return vae_class.from_pretrained(folder, subfolder=subfolder, torch_dtype=dtype, use_safetensors=True)
    except (OSError, ValueError) as err:
        raise ModelNotFoundError(f"VAE folder {folder} is incomplete: {_first_line(err)}") from err


def _lora_file(lora: str, *, allow_pickle: bool, local_files_only: bool, cache_dir) -> Path:
    path = Path(lora).expanduser()
    if not path.exists():
        if not _REPO_ID.fullmatch(lora):
            raise ModelNotFoundError(f"LoRA path {path} does not exist")
        path = _snapshot(lora, "lora", f"LoRA {lora}", local_files_only=local_files_only, cache_dir=cache_dir,
                         alternative="or pass the path of its .safetensors file")
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        preferred = [f for f in files if f.name == "pytorch_lora_weights.safetensors"]
        if not files:
            raise ModelNotFoundError(f"LoRA folder {path} has no .safetensors file")
        path = (preferred or files)[0]
    if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
        raise PickleRefusedError(f"LoRA {path} is pickled; pass allow_pickle=True (--allow-pickle) if you trust it")
    return path


def _fuse_lora(unet, text_encoder, tokenizer, lora_file: Path, scale: float) -> None:
    """Fuse a LoRA (any format diffusers reads: diffusers, peft, kohya) into the weights."""
    try:
        import peft  # noqa: F401  (diffusers' LoRA loading needs it)
    except ImportError as err:
        raise ModuleNotFoundError("fusing a LoRA (lcm-sd15, lora=…) needs peft: pip install peft") from err
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    # A throwaway pipeline only to reach diffusers' LoRA loader; it shares our modules.
    pipe = StableDiffusionPipeline(vae=None, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=EulerDiscreteScheduler.from_config(SD_SCHEDULER_CONFIG),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    try:
        pipe.load_lora_weights(str(lora_file), adapter_name="netbend")
        pipe.fuse_lora(lora_scale=scale, adapter_names=["netbend"])
        pipe.unload_lora_weights()  # drops the adapter layers; the fused weights stay
    except Exception as err:  # a LoRA for another architecture fails deep inside peft
        raise ValueError(f"LoRA {lora_file} does not fit this model: {_first_line(err)}") from err


def _lcm_scheduler_config(base: dict) -> dict:
    from diffusers import LCMScheduler

    config = {k: v for k, v in dict(LCMScheduler.from_config(base).config).items() if not k.startswith("_")}
    return {"_class_name": "LCMScheduler", **config}


@contextlib.contextmanager
def _quiet_libraries():
    """Loading prints nothing but our own messages: no progress bars or library warnings."""
    libraries = (diffusers.utils.logging, transformers.utils.logging)
    levels = [lib.get_verbosity() for lib in libraries]
    bars = [lib.is_progress_bar_enabled() for lib in libraries]
    for lib in libraries:
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib, level, bar in zip(libraries, levels, bars):
            lib.set_verbosity(level)
            if bar:
                lib.enable_progress_bar()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ModelNotFoundError(f"{path} is missing") from err


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
