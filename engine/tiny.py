"""Models built in code, with random weights: `tiny` and SD-Turbo's full architecture.

`tiny` is what every test and CI run uses, so it has the *same classes and U-Net
topology* as the real model (`UNet2DConditionModel` laid out as SD's, `AutoencoderTiny`
or `AutoencoderKL`, `CLIPTextModel`), only narrow. Weights are random and seeded.

`sd_turbo_architecture` is the real compute (SD 2.1-base U-Net, OpenCLIP ViT-H text
tower, TAESD or SD's VAE) with random weights, for GPU benchmarks without a download.
Both return an `engine.model.Model`, with engine/tokenizer.py's `ByteTokenizer` (a real
`CLIPTokenizer` needs vocabulary files from the Hub).
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from engine.model import Model
from engine.model_files import SD_SCHEDULER_CONFIG
from engine.sd_layout import kl_config, sd_unet_config, taesd_config
from engine.tokenizer import ByteTokenizer

# SD 1.x/2.x's U-Net topology at toy width: 4 down and 4 up blocks, 2 resnets each,
# SD's cross-attention placement and SD's 1:2:4:4 width ratio, so the module tree has
# exactly SD's names and every bend point a preset can name on SD (`down.3`,
# `up.2.attentions.1`, …) exists on tiny: CI renders the shipped presets. 16…64
# channels instead of 320…1280 keep a 64×64 frame at ~15 ms on one CPU thread;
# 8 norm groups because SD's 32 would leave under one channel per group.
TINY_UNET_CONFIG = sd_unet_config(
    (16, 32, 64, 64), layers_per_block=2, norm_num_groups=8,
    cross_attention_dim=32,  # = the tiny text encoder's hidden size
    sample_size=8,  # latent 8×8 → default image 64×64
)

TINY_TEXT_ENCODER_CONFIG = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    vocab_size=258,  # 256 bytes + BOS + EOS of ByteTokenizer
    max_position_embeddings=77,  # SD's prompt length
    bos_token_id=256,
    eos_token_id=257,
    pad_token_id=257,
    projection_dim=32,
)

# TAESD's structure (4 stages → ×8) with one block per stage and 16 channels.
TINY_TAESD_CONFIG = taesd_config(16, encoder_blocks=(1, 1, 1, 1), decoder_blocks=(1, 1, 1, 1))

# SD's KL autoencoder (4 stages → ×8, mid attention) with one resnet per stage; its
# LDM checkpoint layout is what single-file tests export.
TINY_KL_CONFIG = kl_config((8, 16, 16, 16), layers_per_block=1, norm_num_groups=8, sample_size=64)


# SD 2.1-base's U-Net, which SD-Turbo distils: 865.9M parameters.
SD21_BASE_UNET_CONFIG = sd_unet_config(
    (320, 640, 1280, 1280), layers_per_block=2, norm_num_groups=32, cross_attention_dim=1024,
    sample_size=64,  # latent 64×64 → 512×512 images
    attention_head_dim=(5, 10, 20, 20),  # SD2 stores head *counts* here (64-dim heads)
    use_linear_projection=True, flip_sin_to_cos=True, freq_shift=0,
)

# OpenCLIP ViT-H/14 text tower as SD 2.x ships it in transformers' CLIPTextModel: 23 of
# its 24 layers, because SD2 conditions on the penultimate layer (then final layer norm).
OPENCLIP_VIT_H_TEXT_CONFIG = dict(
    hidden_size=1024,
    intermediate_size=4096,
    num_attention_heads=16,
    num_hidden_layers=23,
    projection_dim=512,
    vocab_size=49408,
    max_position_embeddings=77,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
    bos_token_id=0,  # as SD2's config.json has them: eos 2 makes CLIP pool at argmax(id) = EOS
    eos_token_id=2,
    pad_token_id=1,
)

# SD's KL autoencoder (83.7M parameters), for sd_turbo_architecture(vae="full").
SD_VAE_CONFIG = kl_config((128, 256, 512, 512), layers_per_block=2, norm_num_groups=32, sample_size=512)


def _seeded(seed: int, build):
    # fork_rng: building tiny must not move the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


@torch.no_grad()
def _calibrated(taesd: AutoencoderTiny) -> AutoencoderTiny:
    """Rescale the two output convolutions of a random TAESD (no RNG used).

    At random init TAESD's decoder outputs ≈0 in its [0, 1] space, i.e. black frames
    with half the pixels clamped, and its latents have std ≈0.07. Tests need frames
    that show structure and change when bent: this centres frames on mid-grey
    (std ≈0.15, nothing clamped) and gives latents std ≈0.7, near SD's.
    """
    taesd.encoder.layers[-1].weight.mul_(10)
    taesd.encoder.layers[-1].bias.mul_(10)
    taesd.decoder.layers[-1].weight.mul_(8)
    taesd.decoder.layers[-1].bias.add_(0.5)
    return taesd


def tiny_components(seed: int = 0, vae: str = "taesd"):
    """(unet, vae, text_encoder, tokenizer) with random weights; same seed → same weights.

    Each part is seeded on its own, so the U-Net is the same whichever VAE is chosen.
    """
    if vae not in ("taesd", "full"):
        raise ValueError(f"tiny has vae 'taesd' (AutoencoderTiny) or 'full' (AutoencoderKL), got {vae!r}")
    unet = _seeded(seed, lambda: UNet2DConditionModel(**TINY_UNET_CONFIG))
    text_encoder = _seeded(seed, lambda: CLIPTextModel(CLIPTextConfig(**TINY_TEXT_ENCODER_CONFIG)))
    if vae == "taesd":
        autoencoder = _calibrated(_seeded(seed, lambda: AutoencoderTiny(**TINY_TAESD_CONFIG)))
    else:
        autoencoder = _seeded(seed, lambda: AutoencoderKL(**TINY_KL_CONFIG))
    tokenizer = ByteTokenizer(bos_token_id=256, eos_token_id=257)
    return unet.eval(), autoencoder.eval(), text_encoder.eval(), tokenizer


def tiny_model(seed: int = 0, *, vae: str = "taesd", device="cpu", dtype=torch.float32):
    """The tiny `engine.model.Model`: SD's classes and topology at toy width, 64×64 images.

    Same seed → identical weights. Steps/guidance mirror SD-Turbo (1, 0.0), the live
    default it stands in for. vae: "taesd" (AutoencoderTiny) or "full" (AutoencoderKL).
    """
    unet, autoencoder, text_encoder, tokenizer = tiny_components(seed, vae)
    return Model.from_parts("tiny", unet, autoencoder, text_encoder, tokenizer, SD_SCHEDULER_CONFIG,
                            device=device, dtype=dtype, steps=1, guidance=0.0)


def sd_turbo_architecture(*, device="cpu", dtype=torch.float32, vae: str = "taesd", seed: int = 0):
    """SD-Turbo's full architecture with random weights: the real compute, no download.

    SD 2.1-base U-Net (865.9M parameters), OpenCLIP ViT-H text encoder (23 layers, width
    1024) and TAESD (or SD's AutoencoderKL with vae="full"); the byte tokenizer with
    CLIP's BOS/EOS ids. Built directly on `device`: seconds on CUDA, ~20 s on CPU, and
    instant on "meta" (no memory; for counting parameters).
    """
    if vae not in ("taesd", "full"):
        raise ValueError(f"sd_turbo_architecture has vae 'taesd' or 'full', got {vae!r}")
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), device:
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**SD21_BASE_UNET_CONFIG)
        text_encoder = CLIPTextModel(CLIPTextConfig(**OPENCLIP_VIT_H_TEXT_CONFIG))
        autoencoder = AutoencoderTiny() if vae == "taesd" else AutoencoderKL(**SD_VAE_CONFIG)  # defaults = TAESD
    tokenizer = ByteTokenizer(bos_token_id=49406, eos_token_id=49407)
    return Model.from_parts("sd-turbo-arch", unet, autoencoder, text_encoder, tokenizer, SD_SCHEDULER_CONFIG,
                            device=device, dtype=dtype, steps=1, guidance=0.0)
