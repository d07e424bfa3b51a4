"""What the three pipelines share: a model, a config, and one Bender on the model's U-Net."""
from __future__ import annotations

import logging
from typing import Iterable, Optional

from .bending import Bender
from .bends import Bend
from .segments import BACKENDS, SegmentedUNet
from .traced import TracedSegment

log = logging.getLogger("netbend.pipeline")

# The segment back-ends (engine.segments) but ONNX: a pipeline makes its own runners, and
# ONNX's come from files the caller exported (engine.export). A pipeline's "eager" is the
# hooked U-Net itself rather than eager segments: the same computation.
# "auto", what the commands use unless told: trace on a CPU, where a small U-Net's time is
# mostly diffusers' per-module Python and the traced graphs compute the same numbers;
# eager elsewhere (no traced, compiled or TensorRT path has been measured on a GPU yet).
PIPELINE_BACKENDS = ("auto", *(b for b in BACKENDS if b != "onnx"))


def resolve_backend(backend: str, device) -> str:
    """The back-end ``backend`` means on ``device``: "auto" becomes trace or eager."""
    if backend != "auto":
        return backend
    import torch

    return "trace" if torch.device(device).type == "cpu" and hasattr(torch.jit, "trace") else "eager"


def shared_segments(model, backend: str, bender: Optional[Bender] = None, compile_options: Optional[dict] = None,
                    size: Optional[tuple[int, int]] = None, batch: int = 1) -> SegmentedUNet:
    """The one SegmentedUNet of ``backend`` for this model's U-Net, kept with the U-Net so
    a new pipeline (a new render, a new show) does not compile or load it again. TensorRT
    engines are per shape: ``size`` (width, height) and ``batch`` pick them, and they come
    from the engine cache (``netbend build-engines``), built there first if missing.
    ``bender`` and ``compile_options`` are used when it is first made."""
    unet = getattr(model, "unet", model)
    key = backend if backend != "tensorrt" else f"tensorrt@{size[0]}x{size[1]}x{batch}"
    cache = unet.__dict__.setdefault("_netbend_segments", {})
    if key not in cache:
        runners = None
        if backend == "tensorrt":
            from .tensorrt import build_all, load_engines

            dtype = {"torch.float16": "fp16", "torch.float32": "fp32"}.get(str(unet.dtype))
            if dtype is None:
                raise ValueError(f"TensorRT engines are built in fp16 or fp32; this model is in {unet.dtype}")
            paths = build_all(model, size, dtype=dtype, batch=batch,
                              progress=lambda name, stage: log.info("TensorRT engine %s: %s", name, stage))
            runners = load_engines(paths)
        cache[key] = SegmentedUNet(unet, backend=backend, compile_options=compile_options, bender=bender,
                                   runners=runners)
    return cache[key]


def traced_vae(model) -> tuple[TracedSegment, TracedSegment]:
    """``model.encode_image`` and ``model.decode_latent`` as TorchScript graphs (the trace
    back-end), kept with the VAE so every pipeline on this model shares their traces."""
    cache = model.vae.__dict__
    if "_netbend_traced" not in cache:
        cache["_netbend_traced"] = (TracedSegment(model.encode_image, "vae.encode", [model.vae]),
                                    TracedSegment(model.decode_latent, "vae.decode", [model.vae]))
    return cache["_netbend_traced"]


def check_size(config, pipeline: str) -> None:
    """width/height: None (the model's native size) or a multiple of 8, at least 8."""
    for name in ("width", "height"):
        v = getattr(config, name)
        if v is not None and (int(v) < 8 or int(v) % 8):
            raise ValueError(f"{pipeline} {name} must be a multiple of 8 and >= 8, got {v}")


class BentPipeline:
    """A model, a config, and the bends on the model's U-Net, run by one back-end:

    auto      trace on a CPU, eager elsewhere (``resolve_backend``)
    eager     the U-Net as diffusers runs it, with a Bender hook on every point
    compile   a ``SegmentedUNet`` of torch.compile'd segments with the block-level bends
              between them (hooks only for points inside blocks, while such a bend is set)
    trace     the same segments as TorchScript graphs traced at first use (no compiler,
              a second to make; no Python per module, which is most of a small U-Net's time)
    tensorrt  the same segments as TensorRT engines, at this pipeline's size (CUDA only)
    """

    fps = 20.0  # frames per second of a render: the clock a prompt schedule is read by
    config_type: type  # each pipeline's config dataclass: its defaults when no config is given

    def __init__(self, model, config=None, bends: Iterable[Bend] = (), backend: str = "eager"):
        if backend not in PIPELINE_BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(PIPELINE_BACKENDS)}")
        backend = resolve_backend(backend, model.device)
        self.model = model
        self.config = config if config is not None else self.config_type()
        self.backend = backend  # as resolved: never "auto"
        if backend == "eager":
            self.bender = Bender(model.unet, bends)  # hooks once; bends change freely after
            self.unet = model.unet
        else:
            self.bender = Bender(model.unet, bends, hooks="inner")
            h, w = self.size
            batch = 2 if float(getattr(config, "guidance", 0.0)) > 1.0 else 1  # classifier-free guidance doubles it
            self.unet = shared_segments(model, backend, self.bender, size=(w, h), batch=batch)
            self.unet.bender = self.bender
        # the VAE passes of every frame; (B, 3, H, W) in [0, 1] <-> scaled latents
        self.encode_image, self.decode_latent = (traced_vae(model) if backend == "trace"
                                                 else (model.encode_image, model.decode_latent))
        self._prepared = False

    def claim(self) -> None:
        """Make this pipeline's bends the ones on the model (pipelines sharing a model take
        turns); called before every run, and cheap when nothing changed hands."""
        self.bender.attach()
        if self.unet is not self.model.unet:
            self.unet.bender = self.bender

    @property
    def bends(self) -> tuple[Bend, ...]:
        return self.bender.bends

    @bends.setter
    def bends(self, bends: Iterable[Bend]) -> None:
        self.bender.bends = bends

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        c = self.config
        return (c.height or self.model.default_size, c.width or self.model.default_size)

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        h, w = self.size
        f = self.model.vae_scale_factor
        return (1, self.model.latent_channels, h // f, w // f)
