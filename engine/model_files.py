"""Model files: where a model's weights are (a local path or the Hugging Face cache) and
how each kind of file is read into the parts an ``engine.model.Model`` is made of.

  diffusers folder    load_folder: model_index.json with unet/, vae/, text_encoder/, …
  single file         load_single_file: an LDM- or diffusers-layout checkpoint, built with
                      the configs of a diffusers repo of its family
  VAE                 find_vae_folder (TAESD, a folder or a repo id), load_vae_folder
  LoRA                find_lora_file, fuse_lora (fused into the weights)
  Hub cache           hub_cache_dir, hub_snapshot, and download_command: the shell command
                      that puts a missing repo where it is looked for

Choosing among these by name or alias is ``engine.models.load_model``'s job; that module
re-exports the public names here. Only safetensors load unless allow_pickle=True, and
anything missing raises ModelNotFoundError saying what to download and where it was
looked for.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
from pathlib import Path

import diffusers
import huggingface_hub
import transformers
from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
from huggingface_hub import constants as hub_constants
from packaging import version
from transformers import CLIPTextModel, CLIPTokenizer

from engine.tokenizer import BYTE_TOKENIZER_FILE, ByteTokenizer

log = logging.getLogger("engine.models")  # one logger for everything model loading says

__all__ = [
    "LDM_CLIP_POSITIONS", "ModelNotFoundError", "PICKLE_SUFFIXES", "PickleRefusedError", "REPO_ID",
    "SD15_REPO", "SD21_BASE_REPO", "SD_SCHEDULER_CONFIG", "SD_TURBO_REPO", "TAESD_REPO",
    "download_command", "find_lora_file", "find_vae_folder", "fuse_lora", "hub_cache_dir", "hub_snapshot",
    "load_folder", "load_single_file", "load_vae_folder", "quiet_libraries",
]


class ModelNotFoundError(FileNotFoundError):
    """Weights or configs are not on this machine; the message says what to get and where."""


class PickleRefusedError(ValueError):
    """A pickled checkpoint (.ckpt/.pt/.pth/.bin) was given without allow_pickle=True."""


TAESD_REPO = "madebyollin/taesd"  # tiny VAE for SD 1.x/2.x latents, far cheaper than their KL VAE
# The configs a single-file checkpoint borrows when none is given, by family; engine.models'
# aliases sd-1.5, sd-2.1 and sd-turbo name these same repos.
SD15_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SD21_BASE_REPO = "stabilityai/stable-diffusion-2-1-base"
SD_TURBO_REPO = "stabilityai/sd-turbo"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
# SD-Turbo's scheduler (SD's training schedule; "trailing" so 1 step starts at t=999).
# tiny, sd-turbo-arch and LoRA fusing use it; only keys every SD scheduler class accepts.
SD_SCHEDULER_CONFIG: dict = {
    "_class_name": "EulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "timestep_spacing": "trailing",
    "steps_offset": 1,
    "set_alpha_to_one": False,
    "clip_sample": False,
}

# What to fetch per kind of repo: configs, tokenizer files and one safetensors copy of
# each component (not the 4–7 GB root checkpoints or the safety checker).
_DOWNLOAD_PATTERNS = {
    "pipeline": ["*.json", "*.txt", "unet/diffusion_pytorch_model.safetensors",
                 "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"],
    "vae": ["*.json", "diffusion_pytorch_model.safetensors"],
    "config": ["*.json", "*.txt"],
    "lora": ["*.json", "*.safetensors"],
}
REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")

# ------------------------------------------------------------------------- the Hub cache

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


def hub_snapshot(repo_id: str, kind: str, what: str, *, local_files_only: bool, cache_dir,
                 alternative: str = "or pass a local diffusers folder or a .safetensors checkpoint path instead"
                 ) -> Path:
    """The local snapshot folder of ``repo_id`` in the Hub cache; downloaded (only the files
    ``kind`` needs) when not there and local_files_only is off, else ModelNotFoundError
    with the download command and ``alternative``."""
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


# ------------------------------------------------------------------------- pipelines

def load_folder(folder: Path, *, dtype, own_vae: bool, allow_pickle: bool):
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
    if (folder / "tokenizer" / BYTE_TOKENIZER_FILE).is_file():
        return ByteTokenizer.from_pretrained(folder, subfolder="tokenizer")
    return CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")


def load_single_file(path: Path, *, config, dtype, own_vae: bool, allow_pickle: bool,
                     local_files_only: bool, cache_dir):
    """A single-file checkpoint → the same parts as `load_folder`.

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
    if suffix not in (*SAFETENSORS_SUFFIXES, *PICKLE_SUFFIXES):
        raise ValueError(f"{path}: not a checkpoint netbend knows ({suffix or 'no suffix'}); expected .safetensors")
    try:
        if suffix in SAFETENSORS_SUFFIXES:
            # read here, never by diffusers: it treats only an exact ".safetensors" suffix as
            # safetensors and torch.loads (unpickles) anything else, ".sft" and ".SAFETENSORS" too
            checkpoint = _read_safetensors(path)
        else:
            checkpoint = load_single_file_checkpoint(str(path))  # allow_pickle: torch.load(weights_only=True)
    except Exception as err:
        raise ValueError(f"could not read checkpoint {path}: {_first_line(err)}") from err
    if any(key.startswith("unet.") for key in checkpoint):  # diffusers' names: split, no conversion
        unet_state, vae_state, clip_state = _split_diffusers_layout(checkpoint)
        if LDM_CLIP_POSITIONS not in clip_state or not vae_state and own_vae:
            parts = sorted({key.split(".")[0] for key in checkpoint})
            raise ValueError(f"{path} holds only {', '.join(parts)} weights; a single-file checkpoint needs the "
                             "U-Net (unet.*), the text encoder (text_encoder.*) and, unless a TAESD or --vae is "
                             "used, the VAE (vae.*). For a U-Net alone use a diffusers folder")
        if config is None:  # CLIP width tells SD 1.x (768) from SD 2.x (1024)
            width = clip_state[LDM_CLIP_POSITIONS].shape[-1]
            config = SD15_REPO if width == 768 else SD21_BASE_REPO
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
        repo = SD_TURBO_REPO  # SD-Turbo is SD2 at 512 px, epsilon; not SD 2.1-v's 768 px v-prediction
    log.info("%s: SD %s checkpoint, using the configs of %s", path.name, model_type[1], repo)
    return repo


def _config_folder(config: str, path: Path, *, local_files_only: bool, cache_dir) -> Path:
    if Path(config).expanduser().is_dir():
        return Path(config).expanduser()
    return hub_snapshot(config, "config", f"{config}, whose configs {path.name} needs,",
                        local_files_only=local_files_only, cache_dir=cache_dir,
                        alternative="or pass config=<a local diffusers folder of the same model family>")


# ------------------------------------------------------------------------- VAEs and LoRAs

def find_vae_folder(vae: str, *, local_files_only: bool, cache_dir) -> Path | None:
    """Where the chosen VAE lives; None means "the model's own VAE"."""
    if vae == "full":
        return None
    if vae == "default":
        try:
            return hub_snapshot(TAESD_REPO, "vae", "TAESD", local_files_only=local_files_only, cache_dir=cache_dir)
        except ModelNotFoundError:
            return None  # load_model warns once the model itself has loaded
    repo = TAESD_REPO if vae == "taesd" else vae
    path = Path(repo).expanduser()
    if path.is_dir():
        return path
    if path.exists() or not REPO_ID.fullmatch(repo):
        raise ModelNotFoundError(f"VAE {vae!r}: expected 'default', 'full', 'taesd', a diffusers VAE folder "
                                 "(config.json + weights) or a Hugging Face repo id; that path does not exist "
                                 "or is not a folder")
    return hub_snapshot(repo, "vae", f"VAE {repo}", local_files_only=local_files_only, cache_dir=cache_dir,
                        alternative="or pass vae='full' to use the model's own VAE")


def load_vae_folder(folder: Path, *, dtype):
    """The AutoencoderTiny or AutoencoderKL in a VAE folder (or a pipeline folder's vae/)."""
    subfolder = "vae" if (folder / "vae" / "config.json").is_file() else None
    class_name = _read_json(folder / (subfolder or "") / "config.json").get("_class_name")
    vae_class = AutoencoderTiny if class_name == "AutoencoderTiny" else AutoencoderKL
    try:
        return vae_class.from_pretrained(folder, subfolder=subfolder, torch_dtype=dtype, use_safetensors=True)
    except (OSError, ValueError) as err:
        raise ModelNotFoundError(f"VAE folder {folder} is incomplete: {_first_line(err)}") from err


def find_lora_file(lora: str, *, allow_pickle: bool, local_files_only: bool, cache_dir) -> Path:
    """A LoRA's weights file from a file, a folder (pytorch_lora_weights.safetensors first)
    or a repo id in the Hub cache."""
    path = Path(lora).expanduser()
    if not path.exists():
        if not REPO_ID.fullmatch(lora):
            raise ModelNotFoundError(f"LoRA path {path} does not exist")
        path = hub_snapshot(lora, "lora", f"LoRA {lora}", local_files_only=local_files_only,
                            cache_dir=cache_dir, alternative="or pass the path of its .safetensors file")
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        preferred = [f for f in files if f.name == "pytorch_lora_weights.safetensors"]
        if not files:
            raise ModelNotFoundError(f"LoRA folder {path} has no .safetensors file")
        path = (preferred or files)[0]
    if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
        raise PickleRefusedError(f"LoRA {path} is pickled; pass allow_pickle=True (--allow-pickle) if you trust it")
    return path


def fuse_lora(unet, text_encoder, tokenizer, lora_file: Path, scale: float) -> None:
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


# ------------------------------------------------------------------------- shared by every loader

@contextlib.contextmanager
def quiet_libraries():
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


SAFETENSORS_SUFFIXES = (".safetensors", ".sft")  # compared lower-cased


def _read_safetensors(path: Path) -> dict:
    """Every tensor of a safetensors file (CPU); a file that is not one (a pickle renamed
    .sft, say) fails here with safetensors' reason, and is never unpickled."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except SafetensorError as err:
        raise ValueError(f"not a safetensors file ({_first_line(err)}); netbend never unpickles a file "
                         "named .safetensors or .sft") from None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ModelNotFoundError(f"{path} is missing") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelNotFoundError(f"{path} is not valid JSON ({err}); restore it from the model's download") \
            from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
