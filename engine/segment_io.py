"""A U-Net segment as flat tensors at one fixed shape: what the exported graphs and their
runners (``engine.export``'s ONNX, ``engine.tensorrt``'s engines) take and give.

``SegmentShapes`` is the one shape every exported segment (and its TensorRT engine) is
fixed to. Each segment is wrapped in a ``SegmentModule`` with flat tensor inputs and
outputs and stable names:

    segment   inputs                              outputs
    time      t (B,) float32                      emb (B, C_emb)
    conv_in   sample (B, C, H, W)                 h_out (B, C0, H, W)
    down.i    h, emb, context (B, L, D)           h_out, res0 … res{n-1}   (n skips: resnets + downsampler)
    mid       h, emb, context                     h_out
    up.i      h, emb, context, res0 … res{n-1}    h_out                    (n = len(block.resnets))
    out       h                                   sample_out (B, C, H, W)

Every tensor but ``t`` has the shapes' dtype (fp16 or fp32). ``t`` is float32 because
diffusers' ``Timesteps`` casts it to float32 first, so an int64 or float64 timestep gives
the same embedding. Inputs a segment does not use (``context`` in DownBlock2D and
UpBlock2D) may be dropped from the graph by the exporter; the runners feed by name.
``res`` are listed oldest first, as ``SegmentedUNet.forward`` slices them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from .segments import SegmentedUNet, segment_kind

DTYPES = {"fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class SegmentShapes:
    """The one shape every exported segment (and its TensorRT engine) is fixed to."""

    latent_height: int
    latent_width: int
    batch: int = 1  # one frame at a time, as the live path runs; 2 for CFG (uncond + cond)
    latent_channels: int = 4  # SD's VAE
    context_length: int = 77  # CLIP's prompt length
    context_dim: int = 1024  # SD 2.x's text width (SD 1.x: 768)
    dtype: str = "fp16"  # what TensorRT runs fastest; fp32 for the CPU checks

    def __post_init__(self):
        for name in ("latent_height", "latent_width", "batch", "latent_channels", "context_length", "context_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SegmentShapes.{name} must be a positive integer, got {value!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"SegmentShapes.dtype {self.dtype!r} is not one of: {', '.join(DTYPES)}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def tag(self) -> str:
        """Short and readable, for file names: ``b1-64x64-fp16`` (latent height x width)."""
        return f"b{self.batch}-{self.latent_height}x{self.latent_width}-{self.dtype}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SegmentShapes":
        return cls(**data)

    @classmethod
    def for_model(cls, model, size: tuple[int, int], *, batch: int = 1, dtype: str = "fp16",
                  vae_scale_factor: Optional[int] = None, context_length: Optional[int] = None) -> "SegmentShapes":
        """The shapes for images of ``size`` = (width, height) pixels.

        ``model`` is a netbend Model (its VAE's scale factor and its tokenizer's length are
        used) or a bare U-Net (then SD's 8 and 77 unless given). Raises ValueError when the
        size does not map to a latent the U-Net takes without an ``upsample_size``.
        """
        unet = getattr(model, "unet", model)
        if vae_scale_factor is None:
            vae_scale_factor = getattr(model, "vae_scale_factor", 8)
        if context_length is None:
            context_length = getattr(getattr(model, "tokenizer", None), "model_max_length", 77)
        width, height = size
        if width % vae_scale_factor or height % vae_scale_factor:
            raise ValueError(f"image size {width}x{height} is not a multiple of the VAE's scale factor "
                             f"{vae_scale_factor}")
        context_dim = unet.config.cross_attention_dim
        if not isinstance(context_dim, int):
            raise ValueError(f"cross_attention_dim {context_dim!r} varies by block; SD 1.x/2.x have one value")
        shapes = cls(latent_height=height // vae_scale_factor, latent_width=width // vae_scale_factor, batch=batch,
                     latent_channels=unet.config.in_channels, context_length=context_length,
                     context_dim=context_dim, dtype=dtype)
        shapes.check(unet, vae_scale_factor)
        return shapes

    def check(self, unet: nn.Module, vae_scale_factor: int = 8) -> None:
        """Raise ValueError unless ``unet`` takes these shapes as one fixed-shape graph."""
        multiple = 2 ** unet.num_upsamplers
        if self.latent_height % multiple or self.latent_width % multiple:
            raise ValueError(
                f"latent {self.latent_width}x{self.latent_height} is not a multiple of {multiple} (the U-Net "
                f"upsamples {unet.num_upsamplers} times), so it has no fixed-shape export; use images whose width "
                f"and height are multiples of {multiple * vae_scale_factor} pixels")
        problems = []
        if self.latent_channels != unet.config.in_channels:
            problems.append(f"latent_channels {self.latent_channels} != the U-Net's in_channels "
                            f"{unet.config.in_channels}")
        if self.context_dim != unet.config.cross_attention_dim:
            problems.append(f"context_dim {self.context_dim} != the U-Net's cross_attention_dim "
                            f"{unet.config.cross_attention_dim}")
        if problems:
            raise ValueError("these shapes do not fit the U-Net: " + "; ".join(problems))


# --------------------------------------------------------------------------- segment I/O

def named_inputs(kind: str, args: Sequence) -> dict[str, Tensor]:
    """A segment's call arguments (as ``SegmentedUNet.segments`` take them) -> tensors by name."""
    if kind == "time":
        _sample, t = args  # sample gives eager its dtype; the graph has it built in
        return {"t": t.to(torch.float32)}
    if kind == "conv_in":
        return {"sample": args[0]}
    if kind == "out":
        return {"h": args[0]}
    if kind in ("down", "mid"):
        h, emb, context = args
        return {"h": h, "emb": emb, "context": context}
    h, emb, context, res, upsample_size = args
    if upsample_size is not None:
        raise ValueError(f"exported up blocks are fixed to latents divisible by 2**num_upsamplers; got "
                         f"upsample_size={upsample_size}")
    return {"h": h, "emb": emb, "context": context, **{f"res{i}": r for i, r in enumerate(res)}}


def output_names(kind: str, n_res: int = 0) -> list[str]:
    first = {"time": "emb", "out": "sample_out"}.get(kind, "h_out")
    return [first, *(f"res{i}" for i in range(n_res if kind == "down" else 0))]


def call_result(kind: str, outputs: Sequence[Tensor]):
    """Flat outputs in ``output_names`` order -> what the eager segment returns."""
    if kind == "down":
        return outputs[0], tuple(outputs[1:])
    return outputs[0]


class SegmentModule(nn.Module):
    """One segment with flat tensor inputs and outputs (see the table in the module doc).

    ``fn`` is the eager segment from ``SegmentedUNet.segments``, called exactly as the
    chain calls it, so the graph is what the eager U-Net computes.
    """

    def __init__(self, name: str, fn: Callable, unet: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.unet = unet  # registered so its weights export as named initializers, not Constant nodes
        self.name = name
        self.kind = segment_kind(name)
        self.fn = fn
        self._like = torch.empty(0, dtype=dtype)  # the time segment reads only its dtype

    def forward(self, *inputs: Tensor):
        kind = self.kind
        if kind == "time":
            return self.fn(self._like, inputs[0])
        if kind in ("conv_in", "out", "mid"):
            return self.fn(*inputs)
        if kind == "down":
            h, res = self.fn(*inputs)
            return (h, *res)
        h, emb, context, *res = inputs
        return self.fn(h, emb, context, tuple(res), None)


@dataclass
class ExampleCall:
    """One segment's example call: flat inputs by name and its output names."""

    inputs: dict[str, Tensor]
    outputs: list[str]


@torch.no_grad()
def chain_calls(seg: SegmentedUNet, sample: Tensor, t: Tensor, context: Tensor) -> dict[str, tuple[tuple, object]]:
    """Run ``seg.segments`` as ``SegmentedUNet.forward`` chains them (no bends, a latent
    divisible by 2**num_upsamplers) -> segment name -> (its call arguments, its result).

    sample (B, C, H, W); t (B,); context (B, L, D).
    """
    run, unet = seg.segments, seg.unet
    calls: dict[str, tuple[tuple, object]] = {}

    def call(name: str, *args):
        calls[name] = (args, run[name](*args))
        return calls[name][1]

    emb = call("time", sample, t)  # (B, C_emb)
    h = call("conv_in", sample)  # (B, C0, H, W)
    skips: tuple[Tensor, ...] = (h,)
    for i in range(len(unet.down_blocks)):
        h, res = call(f"down.{i}", h, emb, context)
        skips += tuple(res)
    h = call("mid", h, emb, context)
    for i, block in enumerate(unet.up_blocks):
        n = len(block.resnets)
        res, skips = skips[-n:], skips[:-n]
        h = call(f"up.{i}", h, emb, context, res, None)
    call("out", h)
    return calls


def example_calls(seg: SegmentedUNet, shapes: SegmentShapes, seed: int = 0) -> dict[str, ExampleCall]:
    """Every segment's flat inputs at ``shapes``, from one seeded run of the eager chain."""
    device, dtype = seg.unet.device, shapes.torch_dtype
    g = torch.Generator().manual_seed(seed)
    b = shapes.batch
    sample = torch.randn(b, shapes.latent_channels, shapes.latent_height, shapes.latent_width, generator=g)
    context = torch.randn(b, shapes.context_length, shapes.context_dim, generator=g)  # (B, L, D)
    t = torch.full((b,), 999.0, device=device)  # (B,) float32
    calls = chain_calls(seg, sample.to(device, dtype), t, context.to(device, dtype))
    examples = {}
    for name, (args, result) in calls.items():
        kind = segment_kind(name)
        n_res = len(result[1]) if kind == "down" else 0
        examples[name] = ExampleCall(named_inputs(kind, args), output_names(kind, n_res))
    return examples


def checked_inputs(given: dict, expected: dict, who: str, made: str, fix: str):
    """(name, tensor, dtype) for each input a fixed-shape runner expects, after checking the
    call gave it at the shape it was ``made`` (exported, built) for."""
    for name, (shape, dtype) in expected.items():
        x = given.get(name)
        if x is None:
            raise ValueError(f"{who} needs input {name!r}; the call gave {list(given)}")
        if tuple(x.shape) != shape:
            raise ValueError(f"{who} was {made} for {name} of shape {shape}, got {tuple(x.shape)}; {fix}")
        yield name, x, dtype

