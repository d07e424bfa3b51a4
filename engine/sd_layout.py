"""Stable Diffusion 1.x/2.x's layout as config builders, so the models netbend builds in
code (``engine.tiny``: tiny and SD-Turbo's full size; ``engine.mini``) state only their
widths and depths, and keep SD's module names and bend points (``down.3``,
``up.2.attentions.1``, …) because the layout itself is written once, here.

Each builder returns the keyword arguments of the diffusers or transformers class it is
named for (``UNet2DConditionModel``, ``AutoencoderTiny``, ``AutoencoderKL``).
"""
from __future__ import annotations

from typing import Sequence

# SD's U-Net: cross-attention in the first three down blocks and the last three up blocks.
SD_DOWN_BLOCKS = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
SD_UP_BLOCKS = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")
SD_LATENT_CHANNELS = 4  # SD's VAE latents; every autoencoder here matches them
SD_VAE_SCALING = 0.18215  # SD's KL latent scale, so latents have SD's spread


def sd_unet_config(widths: Sequence[int], *, layers_per_block: int, cross_attention_dim: int,
                   norm_num_groups: int, sample_size: int, attention_head_dim=8, **extra) -> dict:
    """``UNet2DConditionModel`` arguments for SD's topology (4 down / 4 up blocks, SD's
    cross-attention placement) at ``widths`` channels per block; ``extra`` adds or
    overrides arguments (SD 2's linear projections, for instance)."""
    return dict(
        sample_size=sample_size,
        in_channels=SD_LATENT_CHANNELS,
        out_channels=SD_LATENT_CHANNELS,
        block_out_channels=tuple(widths),
        layers_per_block=layers_per_block,
        down_block_types=SD_DOWN_BLOCKS,
        up_block_types=SD_UP_BLOCKS,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=attention_head_dim,
        norm_num_groups=norm_num_groups,
        **extra,
    )


def taesd_config(channels: int, encoder_blocks: Sequence[int], decoder_blocks: Sequence[int]) -> dict:
    """``AutoencoderTiny`` arguments for TAESD's structure (4 stages, x8) at ``channels``
    per stage, with ``encoder_blocks`` / ``decoder_blocks`` blocks in each stage."""
    return dict(
        encoder_block_out_channels=(channels,) * 4,
        decoder_block_out_channels=(channels,) * 4,
        num_encoder_blocks=tuple(encoder_blocks),
        num_decoder_blocks=tuple(decoder_blocks),
        latent_channels=SD_LATENT_CHANNELS,
    )


def kl_config(widths: Sequence[int], *, layers_per_block: int, norm_num_groups: int, sample_size: int) -> dict:
    """``AutoencoderKL`` arguments for SD's KL autoencoder (4 stages, x8, mid attention)
    at ``widths`` channels per stage."""
    return dict(
        block_out_channels=tuple(widths),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=layers_per_block,
        norm_num_groups=norm_num_groups,
        latent_channels=SD_LATENT_CHANNELS,
        sample_size=sample_size,
        scaling_factor=SD_VAE_SCALING,
    )
