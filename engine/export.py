"""The U-Net's segments as ONNX graphs at one fixed shape, and a runner that plays them
back under onnxruntime with the same call signatures as ``SegmentedUNet.segments``.

    paths = export_segments(unet, SegmentShapes.for_model(model, (512, 512)), folder)  # {segment: .onnx}
    segments = load_onnx_segments(paths)  # {segment: OnnxSegment}, each called like the eager segment

ONNX is the hand-off to TensorRT (``engine.tensorrt``), whose engines are built for one
resolution: every graph here has fixed shapes and no dynamic axes. Each segment is
wrapped in a ``SegmentModule`` with flat tensor inputs and outputs and stable names:

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

Files are written atomically: each export goes to a temporary folder, is checked with
``onnx.checker``, and is moved into place with ``os.replace``, so a crash leaves the old
file or the new one, never half of one. A graph whose weights pass ``EXTERNAL_DATA_BYTES``
is saved with its weights in one ``<name>.onnx.<token>.data`` file beside it (protobuf
cannot hold 2 GB); the token is new on every export, so an ``.onnx`` always names the
data it was written with, and older data files of that segment are removed after it.

The TorchScript exporter (``dynamo=False``) is tried first: it traces diffusers'
attention as is and takes a fraction of the time of ``torch.export`` (0.2 s against 3 s
for a tiny down block); ``torch.export`` (``dynamo=True``, needs onnxscript) is the
fallback, for a torch that no longer has the TorchScript exporter.
"""
from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import torch
from torch import Tensor, nn

from .segments import SegmentedUNet

log = logging.getLogger("netbend.export")

DTYPES = {"fp16": torch.float16, "fp32": torch.float32}
OPSET = 17  # LayerNormalization is one op from 17 on (not a chain of ReduceMeans); TensorRT 10 parses it
DYNAMO_OPSET = 18  # the lowest torch.export-based exporter emits without a version conversion
EXTERNAL_DATA_BYTES = 1_800_000_000  # weights above this go to a .data file: protobuf stops at 2 GiB
SEGMENT_NAME = re.compile(r"time|conv_in|mid|out|(down|up)\.\d+")
INSTALL_HINT = "pip install onnx onnxruntime"


class MissingDependencyError(ImportError):
    """An optional package this path needs is not installed; the message says how to get it."""


def _require(module: str, purpose: str):
    try:
        return __import__(module)
    except ImportError:
        raise MissingDependencyError(f"{purpose} needs {module}, which is not installed: {INSTALL_HINT}") from None


def require_onnx():
    """The ``onnx`` module, or a MissingDependencyError naming the pip command."""
    return _require("onnx", "ONNX export")


def require_onnxruntime():
    """The ``onnxruntime`` module, or a MissingDependencyError naming the pip command."""
    return _require("onnxruntime", "Running ONNX segments")


# --------------------------------------------------------------------------- shapes

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

def segment_names(unet: nn.Module) -> list[str]:
    """The segments in the order the chain runs them: time, conv_in, down.*, mid, up.*, out."""
    unet = getattr(unet, "unet", unet)
    return ["time", "conv_in", *(f"down.{i}" for i in range(len(unet.down_blocks))), "mid",
            *(f"up.{i}" for i in range(len(unet.up_blocks))), "out"]


def segment_kind(name: str) -> str:
    """'time', 'conv_in', 'down', 'mid', 'up' or 'out'."""
    if not SEGMENT_NAME.fullmatch(name):
        raise ValueError(f"unknown segment {name!r}; segments are time, conv_in, down.N, mid, up.N, out")
    return name.split(".")[0]


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
class _Example:
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


def example_calls(seg: SegmentedUNet, shapes: SegmentShapes, seed: int = 0) -> dict[str, _Example]:
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
        examples[name] = _Example(named_inputs(kind, args), output_names(kind, n_res))
    return examples


# --------------------------------------------------------------------------- export

def export_segments(unet: nn.Module, shapes: SegmentShapes, out_dir: str | os.PathLike,
                    progress: Optional[Callable[[str], None]] = None, names: Optional[Iterable[str]] = None,
                    external_data: Optional[bool] = None) -> dict[str, Path]:
    """Write ``<out_dir>/<segment>.onnx`` for each segment (all, or ``names``) -> paths.

    ``unet`` is a diffusers U-Net (or a netbend Model / SegmentedUNet holding one) whose
    dtype is ``shapes.dtype``; it is traced on its own device. ``progress(name)`` is called
    after each file is in place. ``external_data``: None decides by size (see the module
    doc); True or False forces it.
    """
    onnx = require_onnx()
    unet = getattr(unet, "unet", unet)
    shapes.check(unet)
    if unet.dtype != shapes.torch_dtype:
        raise ValueError(f"the U-Net is {unet.dtype} but the shapes ask for {shapes.dtype}; load the model in "
                         f"{shapes.torch_dtype} or export with dtype={_dtype_name(unet.dtype)!r}")
    hooked = [n or "(the U-Net)" for n, m in unet.named_modules() if m._forward_hooks or m._forward_pre_hooks]
    if hooked:
        raise ValueError(f"the U-Net has forward hooks on {', '.join(hooked[:5])}{' …' if len(hooked) > 5 else ''} "
                         "(bends?); remove them before exporting, or they are traced into the graphs")
    order = segment_names(unet)
    wanted = order if names is None else list(names)
    unknown = [n for n in wanted if n not in order]
    if unknown:
        raise ValueError(f"unknown segments {unknown}; this U-Net has: {', '.join(order)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seg = SegmentedUNet(unet, backend="eager")
    try:
        calls = example_calls(seg, shapes)
        paths: dict[str, Path] = {}
        for name in wanted:
            module = SegmentModule(name, seg.segments[name], unet, shapes.torch_dtype)
            module.training = False  # the wrapper only: the exporters put the U-Net in eval mode and back
            paths[name] = _export_one(onnx, module, calls[name], out_dir / f"{name}.onnx", external_data)
            log.info("exported %s to %s", name, paths[name])
            if progress is not None:
                progress(name)
        return paths
    finally:
        seg.remove()  # its Bender leaves the U-Net as it found it


def _dtype_name(dtype: torch.dtype) -> str:
    return next((k for k, v in DTYPES.items() if v == dtype), str(dtype))


def _export_one(onnx, module: SegmentModule, call: _Example, path: Path, external_data: Optional[bool]) -> Path:
    """Trace ``module`` into a temporary folder beside ``path``, check it, move it into place."""
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        traced = work / "traced.onnx"
        _trace(module, call, traced)
        model = onnx.load(str(traced))  # reads any external data the exporter wrote beside it
        big = _weight_bytes(model) > EXTERNAL_DATA_BYTES if external_data is None else external_data
        data_name = f"{path.name}.{secrets.token_hex(4)}.data" if big else None
        staged = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            if data_name:  # the data lands beside ``staged``, i.e. already in its final folder
                onnx.save_model(model, str(staged), save_as_external_data=True, all_tensors_to_one_file=True,
                                location=data_name, size_threshold=1024)
            else:
                onnx.save_model(model, str(staged))
            onnx.checker.check_model(str(staged))
            os.replace(staged, path)
        except BaseException:
            staged.unlink(missing_ok=True)
            if data_name:
                (path.parent / data_name).unlink(missing_ok=True)
            raise
        for old in path.parent.glob(f"{_glob_escape(path.name)}.*.data"):
            if old.name != data_name:
                old.unlink(missing_ok=True)
        return path
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _glob_escape(text: str) -> str:
    """``text`` matched literally by Path.glob."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def _weight_bytes(model) -> int:
    """Bytes of every weight tensor: initializers and Constant nodes' values."""
    total = sum(len(t.raw_data) for t in model.graph.initializer)
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                total += len(attr.t.raw_data)
    return total


def _trace(module: SegmentModule, call: _Example, path: Path) -> None:
    """TorchScript exporter first, torch.export second; both with fixed shapes."""
    args = tuple(call.inputs.values())
    names = dict(input_names=list(call.inputs), output_names=call.outputs)
    with warnings.catch_warnings():
        # the tracer warns about Python bools taken from shapes; with fixed shapes those are constants
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        try:
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET, do_constant_folding=True,
                              **names)
            return
        except Exception as first:  # noqa: BLE001 - any failure: try the other exporter, report both
            log.warning("TorchScript ONNX export of %s failed (%s); trying torch.export", module.name, first)
            for stray in path.parent.iterdir():
                stray.unlink()
            try:
                torch.onnx.export(module, args, str(path), dynamo=True, opset_version=DYNAMO_OPSET,
                                  external_data=True, verbose=False, **names)
            except Exception as second:  # noqa: BLE001
                raise RuntimeError(f"could not export segment {module.name} to ONNX: TorchScript exporter: "
                                   f"{first}; torch.export exporter: {second}") from second


# --------------------------------------------------------------------------- playback

ORT_DTYPES = {"tensor(float)": torch.float32, "tensor(float16)": torch.float16, "tensor(double)": torch.float64,
              "tensor(int64)": torch.int64, "tensor(int32)": torch.int32}


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


class OnnxSegment:
    """One exported segment under onnxruntime, called like the eager segment it replaces.

    Inputs are copied to the host and outputs come back as torch tensors on the device of
    the first input: a correctness check and a CPU path, not the fast path (TensorRT is).
    """

    def __init__(self, name: str, path: str | os.PathLike, providers: Optional[Sequence[str]] = None):
        ort = require_onnxruntime()
        self.name = name
        self.kind = segment_kind(name)
        self.path = Path(path)
        if providers is None:
            available = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: fp16 graphs warn about every node it cannot fold on CPU
        self.session = ort.InferenceSession(str(self.path), options, providers=list(providers))
        self.inputs = {i.name: (tuple(i.shape), ORT_DTYPES[i.type]) for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]

    def __call__(self, *args):
        given = named_inputs(self.kind, args)
        device = next(iter(given.values())).device
        feed = {name: x.detach().to("cpu", dtype).contiguous().numpy()
                for name, x, dtype in checked_inputs(given, self.inputs, f"ONNX segment {self.name}", "exported",
                                                     "export again for this size")}
        outputs = self.session.run(self.outputs, feed)
        return call_result(self.kind, [torch.from_numpy(o).to(device) for o in outputs])

    def __repr__(self) -> str:
        return f"OnnxSegment({self.name!r}, {str(self.path)!r}, {self.session.get_providers()})"


def load_onnx_segments(paths: dict[str, str | os.PathLike],
                       providers: Optional[Sequence[str]] = None) -> dict[str, OnnxSegment]:
    """Segment name -> an ``OnnxSegment``, a drop-in for ``SegmentedUNet.segments``."""
    return {name: OnnxSegment(name, path, providers) for name, path in paths.items()}
