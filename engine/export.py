"""The U-Net's segments as ONNX graphs at one fixed shape, and a runner that plays them
back under onnxruntime with the same call signatures as ``SegmentedUNet.segments``.

    paths = export_segments(unet, SegmentShapes.for_model(model, (512, 512)), folder)  # {segment: .onnx}
    segments = load_onnx_segments(paths)  # {segment: OnnxSegment}, each called like the eager segment

ONNX is the hand-off to TensorRT (``engine.tensorrt``), whose engines are built for one
resolution: every graph here has fixed shapes and no dynamic axes. The flat inputs and
outputs of each segment, and ``SegmentShapes``, are ``engine.segment_io``'s.

Files are written atomically: each export is traced in a temporary folder, saved beside
its target under a temporary name (``engine.atomic.replacing``), checked with
``onnx.checker`` and moved into place, so a crash leaves the old file or the new one,
never half of one. A graph whose weights pass ``EXTERNAL_DATA_BYTES`` is saved with its
weights in one ``<name>.onnx.<token>.data`` file beside it (protobuf cannot hold 2 GB);
the token is new on every export, so an ``.onnx`` always names the data it was written
with, and older data files of that segment are removed after it.

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
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import torch
from torch import nn

from .atomic import replacing
from .bending import forward_hooks
from .segment_io import (DTYPES, ExampleCall, SegmentModule, SegmentShapes, call_result, checked_inputs,
                         example_calls, named_inputs)
from .segments import SegmentedUNet, segment_kind, segment_names

log = logging.getLogger("netbend.export")

OPSET = 17  # LayerNormalization is one op from 17 on (not a chain of ReduceMeans); TensorRT 10 parses it
DYNAMO_OPSET = 18  # the lowest torch.export-based exporter emits without a version conversion
EXTERNAL_DATA_BYTES = 1_800_000_000  # weights above this go to a .data file: protobuf stops at 2 GiB
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
    hooked = [n or "(the U-Net)" for n in forward_hooks(unet)]
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


def _export_one(onnx, module: SegmentModule, call: ExampleCall, path: Path, external_data: Optional[bool]) -> Path:
    """Trace ``module`` into a temporary folder beside ``path``, check it, move it into place."""
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        traced = work / "traced.onnx"
        _trace(module, call, traced)
        model = onnx.load(str(traced))  # reads any external data the exporter wrote beside it
        big = _weight_bytes(model) > EXTERNAL_DATA_BYTES if external_data is None else external_data
        data_name = f"{path.name}.{secrets.token_hex(4)}.data" if big else None
        try:
            with replacing(path) as staged:
                if data_name:  # the data lands beside ``staged``, i.e. already in its final folder
                    onnx.save_model(model, str(staged), save_as_external_data=True, all_tensors_to_one_file=True,
                                    location=data_name, size_threshold=1024)
                else:
                    onnx.save_model(model, str(staged))
                onnx.checker.check_model(str(staged))
        except BaseException:
            if data_name:  # replacing removed the graph; its data file is this function's to remove
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


def _trace(module: SegmentModule, call: ExampleCall, path: Path) -> None:
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
