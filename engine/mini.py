"""mini: netbend's own small diffusion model, trained on engine/patterns.py's images.

It is what a machine with no GPU and no download renders and shows: SD's classes
(`UNet2DConditionModel` with SD's block layout, `AutoencoderTiny`, `CLIPTextModel`,
`CLIPTokenizer`), narrow enough for a laptop CPU at 128×128, and shipped as a diffusers
folder of safetensors inside the package (``MINI_DIR``). ``scripts/train_mini.py`` makes
it from nothing; ``engine.models.load_model("mini")`` loads it like any diffusers folder.

Two choices make the paper's findings hold on a model trained from scratch:
- latent channels 1 and 2 are trained to be the chroma plane (rotating them by θ turns
  the decoded hue by θ), as SD's VAE latents happen to be, so R1 turns colours;
- v-prediction, so that the 1-step stream (which predicts the clean latent from one
  noisy one) is sharp, and 50-step DDIM still works.
"""
from __future__ import annotations

import json
from pathlib import Path

from diffusers import AutoencoderTiny, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from engine.patterns import vocabulary
from engine.sd_layout import sd_unet_config, taesd_config

MINI_DIR = Path(__file__).parent / "weights" / "mini"  # package data: found after `pip install .`
MINI_SIZE = 128  # image side mini is trained and shown at: 16×16 latents
MAX_TOKENS = 16  # captions are a few words; 16 positions instead of CLIP's 77 keep cross-attention cheap

# SD's U-Net topology (4 down / 4 up blocks, cross-attention in SD's places, 1:2:4:4
# widths) with one resnet per block: every block-level bend point of SD (`down.0` …
# `up.3`, `mid`, `conv_in`, `conv_out`) exists, at a training cost a 2-core CPU carries.
MINI_UNET_CONFIG = sd_unet_config(
    (32, 64, 128, 128), layers_per_block=1, norm_num_groups=16,
    cross_attention_dim=64,  # = the text encoder's width
    sample_size=MINI_SIZE // 8,
)

# TAESD's structure (4 stages → ×8, 4 latent channels) at 32 channels: encode + decode of
# a 128×128 frame in ~25 ms on this CPU.
MINI_TAESD_CONFIG = taesd_config(32, encoder_blocks=(1, 2, 2, 2), decoder_blocks=(2, 2, 2, 1))

MINI_TEXT_CONFIG = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=MAX_TOKENS,
    projection_dim=64,
)

# SD's training schedule with "trailing" spacing (1 step starts at t=999, as SD-Turbo's);
# v-prediction (see the module docstring).
MINI_SCHEDULER_CONFIG: dict = {
    "_class_name": "EulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "v_prediction",
    "timestep_spacing": "trailing",
    "steps_offset": 1,
    "set_alpha_to_one": False,
    "clip_sample": False,
}

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789"


def write_tokenizer(folder: str | Path) -> Path:
    """A real CLIPTokenizer (vocab.json + merges.txt) whose whole words are the captions'
    words; any other word falls back to single characters, never to an unknown token."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {}
    merges: list[tuple[str, str]] = []

    def add(token: str) -> None:
        vocab.setdefault(token, len(vocab))

    for c in CHARACTERS:
        add(c)
        add(c + "</w>")
    for word in vocabulary():
        pieces = [*word[:-1], word[-1] + "</w>"]
        left = pieces[0]
        for right in pieces[1:]:
            if (left, right) not in merges:
                merges.append((left, right))
            left = left + right
            add(left)
    add(BOS)
    add(EOS)
    (folder / "vocab.json").write_text(json.dumps(vocab, indent=1) + "\n")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    settings = {"model_max_length": MAX_TOKENS, "bos_token": BOS, "eos_token": EOS, "unk_token": EOS,
                "pad_token": EOS, "do_lower_case": True, "tokenizer_class": "CLIPTokenizer"}
    (folder / "tokenizer_config.json").write_text(json.dumps(settings, indent=1) + "\n")
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}, indent=1) + "\n")
    return folder


def mini_components(tokenizer_folder: str | Path, seed: int = 0):
    """(unet, vae, text_encoder, tokenizer) at random init, seeded; what training starts from."""
    import torch

    tokenizer = CLIPTokenizer.from_pretrained(write_tokenizer(tokenizer_folder))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**MINI_UNET_CONFIG)
        vae = AutoencoderTiny(**MINI_TAESD_CONFIG)
        text_config = CLIPTextConfig(**MINI_TEXT_CONFIG, vocab_size=len(tokenizer),
                                     bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                     pad_token_id=tokenizer.pad_token_id)
        text_encoder = CLIPTextModel(text_config)
    return unet, vae, text_encoder, tokenizer
