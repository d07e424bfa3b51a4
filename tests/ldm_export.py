"""Write diffusers models as an original LDM ("CompVis") single-file checkpoint.

Test data only: lets a test make the kind of `.safetensors` file civitai ships (keys
`model.diffusion_model.*`, `first_stage_model.*`, `cond_stage_model.transformer.*`)
from the tiny model, then load it back through diffusers' `from_single_file`.

This is the inverse of diffusers' `convert_ldm_*_checkpoint`, written from the mapping
in diffusers' `scripts/convert_diffusers_to_original_stable_diffusion.py`, generalised
from SD's fixed block counts to any `layers_per_block` / number of blocks. It is kept
independent of diffusers' own tables on purpose: a test that used the same table both
ways would pass even if the table were wrong.
"""

from __future__ import annotations

import re

from torch import Tensor

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."

_UNET_FIXED = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}

_UNET_RESNET = [  # (diffusers, ldm) inside a resnet
    ("norm1.", "in_layers.0."),
    ("conv1.", "in_layers.2."),
    ("norm2.", "out_layers.0."),
    ("conv2.", "out_layers.3."),
    ("time_emb_proj.", "emb_layers.1."),
    ("conv_shortcut.", "skip_connection."),
]


def _resnet_rest(rest: str) -> str:
    for diffusers_name, ldm_name in _UNET_RESNET:
        if rest.startswith(diffusers_name):
            return ldm_name + rest[len(diffusers_name):]
    return rest


def unet_to_ldm(state: dict[str, Tensor], config) -> dict[str, Tensor]:
    """diffusers `UNet2DConditionModel` state dict → LDM `model.diffusion_model.*` keys."""
    per_block = config["layers_per_block"] + 1  # LDM counts the down/upsampler as a slot
    up_has_attention = ["CrossAttn" in t for t in config["up_block_types"]]
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        new = None
        for diffusers_name, ldm_name in _UNET_FIXED.items():
            if key.startswith(diffusers_name):
                new = ldm_name + key[len(diffusers_name):]
        if m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            i, j, rest = int(m[1]), int(m[2]), m[3]
            new = f"input_blocks.{1 + i * per_block + j}.0.{_resnet_rest(rest)}"
        elif m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", key):
            i, j, rest = int(m[1]), int(m[2]), m[3]
            new = f"input_blocks.{1 + i * per_block + j}.1.{rest}"
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            i, rest = int(m[1]), m[2]
            new = f"input_blocks.{(i + 1) * per_block}.0.op.{rest}"
        elif m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
            new = f"middle_block.{2 * int(m[1])}.{_resnet_rest(m[2])}"
        elif m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
            new = f"middle_block.1.{m[1]}"
        elif m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            i, j, rest = int(m[1]), int(m[2]), m[3]
            new = f"output_blocks.{i * per_block + j}.0.{_resnet_rest(rest)}"
        elif m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", key):
            i, j, rest = int(m[1]), int(m[2]), m[3]
            new = f"output_blocks.{i * per_block + j}.1.{rest}"
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            i, rest = int(m[1]), m[2]
            slot = 2 if up_has_attention[i] else 1
            new = f"output_blocks.{i * per_block + per_block - 1}.{slot}.conv.{rest}"
        if new is None:
            raise KeyError(f"no LDM name for U-Net key {key!r}")
        out[UNET_PREFIX + new] = value
    return out


_VAE_ATTENTION = [  # (diffusers, ldm) inside the mid attention
    ("group_norm.", "norm."),
    ("to_q.", "q."),
    ("to_k.", "k."),
    ("to_v.", "v."),
    ("to_out.0.", "proj_out."),
]


def vae_to_ldm(state: dict[str, Tensor], config) -> dict[str, Tensor]:
    """diffusers `AutoencoderKL` state dict → LDM `first_stage_model.*` keys."""
    n_up = len(config["up_block_types"])
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        new = key
        if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", key):
            rest = m[2]
            for diffusers_name, ldm_name in _VAE_ATTENTION:
                if rest.startswith(diffusers_name):
                    rest = ldm_name + rest[len(diffusers_name):]
            new = f"{m[1]}.mid.attn_1.{rest}"
            if value.ndim == 2:  # LDM's attention projections are 1×1 convolutions
                value = value[:, :, None, None]
        elif m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", key):
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            new = f"encoder.down.{m[1]}.block.{m[2]}.{m[3]}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.*)", key):
            new = f"encoder.down.{m[1]}.downsample.{m[2]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            new = f"decoder.up.{n_up - 1 - int(m[1])}.block.{m[2]}.{m[3]}"  # LDM numbers up blocks from the bottom
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.*)", key):
            new = f"decoder.up.{n_up - 1 - int(m[1])}.upsample.{m[2]}"
        new = new.replace("conv_norm_out.", "norm_out.").replace("conv_shortcut.", "nin_shortcut.")
        out[VAE_PREFIX + new] = value
    return out


def clip_to_ldm(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """transformers `CLIPTextModel` state dict → SD 1.x `cond_stage_model.transformer.*` keys."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        # transformers ≥ 5.6 dropped the `text_model.` wrapper; SD 1.x files still have it.
        inner = key if key.startswith("text_model.") else "text_model." + key
        out[CLIP_PREFIX + inner] = value
    return out


def model_to_ldm(unet, vae, text_encoder) -> dict[str, Tensor]:
    """One SD 1.x-layout state dict (contiguous tensors, ready for `safetensors.torch.save_file`)."""
    state = {
        **unet_to_ldm(unet.state_dict(), unet.config),
        **vae_to_ldm(vae.state_dict(), vae.config),
        **clip_to_ldm(text_encoder.state_dict()),
    }
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
