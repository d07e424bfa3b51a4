"""TensorRT engines for the U-Net's segments, built once per shape and cached on disk.

    build_all(model, (512, 512))        -> {segment: engine path}   (exports and builds what is missing)
    load_engines(paths)                 -> {segment: TrtSegment}    (a drop-in for SegmentedUNet.segments)

Each engine is cached under an ``EngineKey`` that makes a stale engine impossible to pick
up (``engine.trt_cache``: the key, the U-Net's fingerprint, the sidecar checks).

The cache folder is ``$NETBEND_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/netbend/engines``,
else ``~/.cache/netbend/engines``. It also holds one TensorRT timing cache per TensorRT
version and GPU, which makes rebuilding a segment at a new size much faster.

Building and running need ``tensorrt`` (TensorRT 10 Python API) and a CUDA GPU; it is
imported only when used (``runtime_identity`` reads the TensorRT version and GPU name a
key records).
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional

import torch
from torch import Tensor

from .atomic import write_atomically
from .export import export_segments
from .segment_io import SegmentShapes, call_result, checked_inputs, named_inputs, output_names
from .segments import segment_kind, segment_names
from .trt_cache import EngineKey, find_engine, timing_cache_path, unet_fingerprint, write_engine

log = logging.getLogger("netbend.tensorrt")

WORKSPACE_BYTES = 4 << 30  # scratch for tactics; SD's attention at 512x512 needs well under this
TRT_INSTALL_HINT = "TensorRT is not installed: pip install tensorrt (needs an NVIDIA GPU and driver)"
NO_GPU = "no CUDA GPU: TensorRT engines are built on, and for, an NVIDIA GPU (torch.cuda.is_available() is False)"


class TensorRTUnavailable(ImportError):
    """TensorRT cannot be imported here; the message says how to install it."""


def require_tensorrt():
    """The ``tensorrt`` module, or TensorRTUnavailable with the pip command."""
    try:
        import tensorrt
    except ImportError:
        raise TensorRTUnavailable(TRT_INSTALL_HINT) from None
    return tensorrt


def default_cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    """``$NETBEND_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/netbend/engines``, else ``~/.cache/netbend/engines``."""
    if env.get("NETBEND_ENGINE_CACHE"):
        return Path(env["NETBEND_ENGINE_CACHE"]).expanduser()
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]).expanduser() / "netbend" / "engines"
    return Path.home() / ".cache" / "netbend" / "engines"


def runtime_identity(device=None) -> dict[str, str]:
    """``trt_version``, ``gpu_name`` and ``compute_capability`` of this machine, for EngineKey."""
    trt = require_tensorrt()
    if not torch.cuda.is_available():
        raise RuntimeError(NO_GPU)
    device = torch.device("cuda", torch.cuda.current_device()) if device is None else torch.device(device)
    props = torch.cuda.get_device_properties(device)
    return {"trt_version": trt.__version__, "gpu_name": props.name,
            "compute_capability": f"{props.major}.{props.minor}"}


# --------------------------------------------------------------------------- building

_LOGGER = None


def _trt_logger(trt):
    global _LOGGER
    if _LOGGER is None:  # TensorRT wants one logger per process
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def build_engine(onnx_path: str | os.PathLike, key: EngineKey, cache_dir: str | os.PathLike | None = None,
                 timing_cache: bool | str | os.PathLike = True, workspace_bytes: int = WORKSPACE_BYTES) -> Path:
    """Build the engine for ``key`` from ``onnx_path`` into the cache -> its path.

    Precision is the key's: the ONNX graph's dtype, plus ``BuilderFlag.FP16`` when
    ``key.fp16``. ``timing_cache``: True for the cache folder's shared file, a path for
    another file, False for none. The timing cache is loaded before and saved after the
    build; one that TensorRT refuses is replaced.
    """
    trt = require_tensorrt()
    if not torch.cuda.is_available():
        raise RuntimeError(NO_GPU)
    cache_dir = Path(default_cache_dir() if cache_dir is None else cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    logger = _trt_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode, no flag needed
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # resolves external weights beside the file
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if any(d < 0 for d in tensor.shape):
            raise ValueError(f"{onnx_path}: input {tensor.name} has a dynamic shape {tuple(tensor.shape)}; "
                             "netbend's engines are built from fixed-shape exports")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if key.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    cache_file = None
    if timing_cache:
        cache_file = timing_cache_path(cache_dir, key) if timing_cache is True else Path(timing_cache)
        blob = cache_file.read_bytes() if cache_file.is_file() else b""
        cache = config.create_timing_cache(blob)
        if not config.set_timing_cache(cache, False):
            log.warning("TensorRT refused the timing cache %s; starting a new one", cache_file)
            config.set_timing_cache(config.create_timing_cache(b""), False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT could not build {key.segment} from {onnx_path} (see its log above)")
    if cache_file is not None:
        write_atomically(cache_file, config.get_timing_cache().serialize())
    seconds = time.perf_counter() - started
    path = write_engine(key, cache_dir, serialized, build_seconds=round(seconds, 2), onnx=Path(onnx_path).name)
    log.info("built %s in %.1f s", path, seconds)
    return path


def build_all(model, size: tuple[int, int], cache_dir: str | os.PathLike | None = None, dtype: str = "fp16",
              progress: Optional[Callable[[str, str], None]] = None, *, batch: int = 1, force: bool = False,
              names: Optional[Iterable[str]] = None, workspace_bytes: int = WORKSPACE_BYTES) -> dict[str, Path]:
    """Engines for every segment (or ``names``) at ``size`` = (width, height) pixels -> paths.

    ``model`` is a netbend Model or a U-Net in ``dtype``, on any device (exporting is
    quickest on the GPU; the engines are built for the current CUDA device). A segment
    whose cached engine is valid is not touched (unless ``force``); the others are
    exported to ONNX in a temporary folder in the cache and built one at a time, so an
    interruption keeps the engines already built. ``progress(segment, stage)`` reports
    stage "cached" or "export", "build", "built" as each happens.
    """
    require_tensorrt()
    if not torch.cuda.is_available():
        raise RuntimeError(NO_GPU)
    unet = getattr(model, "unet", model)
    shapes = SegmentShapes.for_model(model, size, batch=batch, dtype=dtype)
    if unet.dtype != shapes.torch_dtype:
        raise ValueError(f"the model is in {unet.dtype}; load it in {shapes.torch_dtype} to build {dtype} engines")
    cache_dir = Path(default_cache_dir() if cache_dir is None else cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    identity = runtime_identity()
    model_hash = unet_fingerprint(unet)
    order = segment_names(unet)
    wanted = order if names is None else list(names)
    unknown = [n for n in wanted if n not in order]
    if unknown:
        raise ValueError(f"unknown segments {unknown}; this U-Net has: {', '.join(order)}")
    report = progress or (lambda name, stage: None)
    paths: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix=".onnx-", dir=cache_dir) as onnx_dir:
        for name in wanted:
            key = EngineKey(model_hash=model_hash, segment=name, shapes=shapes, fp16=dtype == "fp16", **identity)
            cached = None if force else find_engine(key, cache_dir)
            if cached is not None:
                paths[name] = cached
                report(name, "cached")
                continue
            report(name, "export")
            onnx_path = export_segments(unet, shapes, onnx_dir, names=[name])[name]
            report(name, "build")
            paths[name] = build_engine(onnx_path, key, cache_dir, workspace_bytes=workspace_bytes)
            for leftover in Path(onnx_dir).iterdir():  # SD's weights: do not keep a second copy per segment
                leftover.unlink()
            report(name, "built")
    return paths


# --------------------------------------------------------------------------- running

def _torch_dtypes(trt) -> dict:
    pairs = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32,
             "INT64": torch.int64, "INT8": torch.int8, "BOOL": torch.bool, "UINT8": torch.uint8}
    return {getattr(trt.DataType, k): v for k, v in pairs.items() if hasattr(trt.DataType, k)}


class TrtSegment:
    """One engine, called exactly like the eager segment it replaces (``SegmentedUNet.segments``).

    Inputs are bound by name to the caller's CUDA tensors (cast and made contiguous only
    when they are not already); outputs are allocated once and rebound never. So an
    output is valid until this segment runs again, which within one U-Net call it does
    not; the ``out`` segment's result leaves the U-Net, so it is returned as a copy.
    Work is queued on torch's current CUDA stream; nothing synchronizes.
    """

    def __init__(self, name: str, engine_path: str | os.PathLike, device=None):
        trt = require_tensorrt()
        if not torch.cuda.is_available():
            raise RuntimeError(NO_GPU)
        self.name = name
        self.kind = segment_kind(name)
        self.path = Path(engine_path)
        self.device = torch.device("cuda", torch.cuda.current_device()) if device is None else torch.device(device)
        with torch.cuda.device(self.device):
            self.runtime = trt.Runtime(_trt_logger(trt))
            self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
            if self.engine is None:
                raise RuntimeError(f"TensorRT could not load {self.path} (built by another TensorRT or GPU?)")
            self.context = self.engine.create_execution_context()
        dtypes = _torch_dtypes(trt)
        self.inputs: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
        self.outputs: dict[str, Tensor] = {}
        for i in range(self.engine.num_io_tensors):
            tensor = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(tensor))
            dtype = dtypes[self.engine.get_tensor_dtype(tensor)]
            if self.engine.get_tensor_mode(tensor) == trt.TensorIOMode.INPUT:
                self.inputs[tensor] = (shape, dtype)
            else:
                buffer = torch.empty(shape, dtype=dtype, device=self.device)
                self.outputs[tensor] = buffer
                self.context.set_tensor_address(tensor, buffer.data_ptr())
        n_res = sum(1 for t in self.outputs if t.startswith("res"))
        self.output_order = output_names(self.kind, n_res)
        missing = [t for t in self.output_order if t not in self.outputs]
        if missing:
            raise RuntimeError(f"{self.path} has outputs {list(self.outputs)}, expected {self.output_order}")

    def __call__(self, *args):
        given = named_inputs(self.kind, args)
        bound = []  # keeps cast copies alive until the call is queued (the allocator is stream-ordered)
        for tensor, x, dtype in checked_inputs(given, self.inputs, f"engine {self.name}", "built",
                                               "build engines for this size"):
            x = x.to(device=self.device, dtype=dtype).contiguous()
            bound.append(x)
            self.context.set_tensor_address(tensor, x.data_ptr())
        if not self.context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise RuntimeError(f"TensorRT failed to run engine {self.name} ({self.path})")
        outputs = [self.outputs[t] for t in self.output_order]
        if self.kind == "out":
            outputs = [outputs[0].clone()]
        return call_result(self.kind, outputs)

    def __repr__(self) -> str:
        return f"TrtSegment({self.name!r}, {str(self.path)!r})"


def load_engines(paths: Mapping[str, str | os.PathLike], device=None) -> dict[str, TrtSegment]:
    """Segment name -> a ``TrtSegment``, a drop-in for ``SegmentedUNet.segments``."""
    return {name: TrtSegment(name, path, device) for name, path in paths.items()}
