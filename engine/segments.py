"""The U-Net as a chain of segments with the bends between them, so a compiled U-Net
never has to be rebuilt when the bends change.

    time → conv_in → down.0 … down.3 → mid → up.0 … up.3 → out
             ↑bend      ↑bend            ↑bend  ↑bend         ↑bend (conv_out)

Each segment is one piece of diffusers' ``UNet2DConditionModel.forward`` for SD 1.x/2.x
layouts (no class or addition embeddings), called exactly as diffusers calls it, so with
no bends ``SegmentedUNet(unet)(x, t, encoder_hidden_states=emb).sample`` equals
``unet(x, t, encoder_hidden_states=emb).sample``. After the segment of a block-level
point (``conv_in``, ``down.i``, ``mid``, ``up.i``, ``conv_out``) the bends for that point
act on the hidden state it passes on, the same semantics as ``engine.bending`` hooks: a
down block's skip connections are left as they were, a bend at ``conv_in`` reaches the
first skip too (it bends the conv's output).

Back-ends: ``eager`` calls the segments directly; ``compile`` wraps each segment in
``torch.compile``; ``trace`` runs each segment as a TorchScript graph traced at the first
call of each input shape (``engine.traced.TracedSegment``: a second to make, no compiler,
and no Python left per module); ``onnx`` and ``tensorrt`` call runners made from exported
segments (``engine.export.load_onnx_segments``, ``engine.tensorrt.load_engines``), at the
one shape they were exported for. The bends always run as plain eager code between
segments and are read from ``bends_by_point`` and ``step`` at call time, so changing a
bend's operator, param, target, step, or moving it among block-level points compiles
nothing new.

Points inside blocks (``down.1.attentions.0``) are not segment boundaries. Bends there go
through ``engine.bending.Bender`` hooks and run the segments eagerly for as long as such a
bend is set (noted once in the log); the compiled segments are used again when none is.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch
from torch import Tensor, nn

from .bending import Bender, block_points, unet_points
from .bends import Bend, apply_bends
from .traced import TracedSegment

log = logging.getLogger("netbend.segments")

# The one list of back-ends. A SegmentedUNet runs any of BACKENDS; RUNNER_BACKENDS run
# runners made from exported segments (engine.export, engine.tensorrt) and given to it.
# engine.pipeline_base.PIPELINE_BACKENDS is derived from these: a pipeline makes its own
# runners, which it can for TensorRT (from the engine cache) but not for ONNX.
RUNNER_BACKENDS = ("onnx", "tensorrt")
BACKENDS = ("eager", "compile", "trace", *RUNNER_BACKENDS)

SEGMENT_NAME = re.compile(r"time|conv_in|mid|out|(down|up)\.\d+")


def segment_names(unet: nn.Module) -> list[str]:
    """The segments in the order the chain runs them: time, conv_in, down.*, mid, up.*, out.

    Each segment but ``time`` ends at one block-level point of ``engine.bending`` (the
    source of the names), so a segment boundary is exactly where a block-level bend acts;
    the last one is called ``out`` since it also runs the output norm before ``conv_out``."""
    unet = getattr(unet, "unet", unet)
    return ["time", *("out" if p == "conv_out" else p for p in block_points(unet_points(unet)))]


def segment_kind(name: str) -> str:
    """'time', 'conv_in', 'down', 'mid', 'up' or 'out'."""
    if not SEGMENT_NAME.fullmatch(name):
        raise ValueError(f"unknown segment {name!r}; segments are time, conv_in, down.N, mid, up.N, out")
    return name.split(".")[0]


@dataclass
class SegmentedOutput:
    """Stands in for diffusers' ``UNet2DConditionOutput``: ``.sample`` is (B, C, H, W)."""

    sample: Tensor


def check_supported(unet: nn.Module) -> None:
    """Raise ValueError unless ``unet`` has the SD 1.x/2.x layout the segments reproduce."""
    config = getattr(unet, "config", None)
    if config is None or not all(hasattr(unet, a) for a in ("conv_in", "down_blocks", "up_blocks", "conv_out")):
        raise ValueError(f"SegmentedUNet needs a diffusers UNet2DConditionModel, got {type(unet).__name__}")
    problems = []
    if getattr(unet, "class_embedding", None) is not None:
        problems.append(f"class embeddings (class_embed_type={config.get('class_embed_type')!r}, "
                        f"num_class_embeds={config.get('num_class_embeds')!r})")
    if config.get("addition_embed_type") is not None:
        problems.append(f"addition embeddings (addition_embed_type={config.get('addition_embed_type')!r}, e.g. SDXL)")
    if getattr(unet, "encoder_hid_proj", None) is not None:
        problems.append(f"an encoder_hid_proj (encoder_hid_dim_type={config.get('encoder_hid_dim_type')!r})")
    if getattr(unet, "mid_block", None) is None:
        problems.append("no mid block")
    if getattr(unet, "position_net", None) is not None:
        problems.append("GLIGEN position_net")
    if problems:
        raise ValueError("SegmentedUNet supports SD 1.x/2.x U-Nets (time embedding only, a mid block); "
                         f"this one has {'; '.join(problems)}. Use the eager hook path (engine.bending.Bender) "
                         "for it.")


def default_compile_options(device: torch.device) -> dict:
    """CUDA: inductor with CUDA graphs. CPU: inductor when a C++ compiler is on PATH (it
    needs one to build its kernels), else aot_eager (traced graphs, no code generation).
    ``NETBEND_COMPILE_BACKEND`` (a torch.compile backend name) overrides the choice: e.g.
    ``aot_eager`` to skip inductor's minutes of kernel builds on a small CPU."""
    forced = os.environ.get("NETBEND_COMPILE_BACKEND")
    if forced:
        if forced not in torch.compiler.list_backends(exclude_tags=()):
            raise ValueError(f"NETBEND_COMPILE_BACKEND={forced!r} is not a torch.compile backend; allowed: "
                             f"{', '.join(torch.compiler.list_backends(exclude_tags=()))}")
        return {"backend": forced}
    if device.type == "cuda":
        return {"backend": "inductor", "mode": "reduce-overhead"}
    if any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
        return {"backend": "inductor"}
    return {"backend": "aot_eager"}


class SegmentedUNet(nn.Module):
    """A diffusers U-Net run as segments, with block-level bends applied between them.

    ``bends_by_point`` maps a point name to its bends and ``step`` is the denoising step the
    bends see; both are plain attributes read on every call (``set_bends`` fills the dict
    from any bends, resolving integer layers). ``backend`` is "eager" or "compile";
    ``compile_options`` go to ``torch.compile`` (default: ``default_compile_options``);
    "trace" runs TorchScript graphs of the segments (``TracedSegment``).
    """

    def __init__(self, unet: nn.Module, backend: str = "eager", compile_options: Optional[dict] = None,
                 bender: Optional[Bender] = None, runners: Optional[dict[str, Callable]] = None):
        super().__init__()
        check_supported(unet)
        if backend not in BACKENDS:
            raise ValueError(f"unknown segment backend {backend!r}; allowed: {', '.join(BACKENDS)}")
        self.unet = unet
        self.backend = backend
        # the bends and the step come from a Bender in "inner" mode: it hooks points inside
        # blocks only while a bend is set at one of them
        self.bender = bender if bender is not None else Bender(unet, hooks="inner")
        if self.bender.hooks != "inner":
            raise ValueError("SegmentedUNet needs a Bender made with hooks='inner' (with 'all' its hooks would "
                             "bend the block-level points a second time)")
        self._noted_finer = False
        self.segments: dict[str, Callable] = {  # name -> the eager segment function, in chain order
            name: self._segment(name) for name in segment_names(unet)}
        self.compile_options: dict = {}
        if backend in RUNNER_BACKENDS:
            missing = [n for n in self.segments if runners is None or n not in runners]
            if missing:
                raise ValueError(f"the {backend} back-end needs a runner for every segment; missing: "
                                 f"{', '.join(missing)} (make them with engine.export.load_onnx_segments or "
                                 f"engine.tensorrt.load_engines)")
            self._run = {name: runners[name] for name in self.segments}
        elif backend == "compile":
            device = next(unet.parameters()).device
            self.compile_options = dict(compile_options or default_compile_options(device))
            self._run = {name: torch.compile(fn, dynamic=False, fullgraph=False, **self.compile_options)
                         for name, fn in self.segments.items()}
        elif backend == "trace":
            if not hasattr(torch.jit, "trace"):
                raise ValueError(f"the trace back-end needs torch.jit.trace, which torch {torch.__version__} "
                                 "does not have; use eager or compile")
            self._run = {name: TracedSegment(fn, name, self._parts(name)) for name, fn in self.segments.items()}
        else:
            self._run = self.segments
        log.info("U-Net in %d segments, backend %s %s", len(self._run), backend, self.compile_options or "")

    @property
    def traces(self) -> int:
        """TorchScript graphs traced so far by the segments (the trace back-end; 0 on the
        others): a retrace while the bends change shows here."""
        return sum(getattr(run, "traces", 0) for run in self._run.values())

    # --- pass-throughs so this can stand in for model.unet --------------------------------
    @property
    def config(self):
        return self.unet.config

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def device(self) -> torch.device:
        return self.unet.device

    # --- bends: held by the Bender ---------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """The U-Net's points in forward order (the Bender's): integer layers index these."""
        return self.bender.names

    @property
    def block_names(self) -> frozenset[str]:
        """The block-level points: where the segments end and their bends act."""
        return self.bender.block_names

    @property
    def step(self) -> int:
        """The denoising step the bends see (the pipeline sets it before each call)."""
        return self.bender.step

    @step.setter
    def step(self, step: int) -> None:
        self.bender.step = step

    @property
    def bends_by_point(self) -> dict[str, tuple[Bend, ...]]:
        return self.bender.by_point

    def resolve_layer(self, layer) -> str:
        """A point name for a name or an index into ``names``; anything else lists what exists."""
        return self.bender.resolve_layer(layer)

    def set_bends(self, bends: Iterable[Bend]) -> None:
        """Set the bends (integer layers resolved; latent bends are the sampler's, not applied here)."""
        self.bender.bends = bends

    def _bend(self, x: Tensor, point: str) -> Tensor:
        bends = self.bender.by_point.get(point)
        if not bends:
            return x
        y = apply_bends(x, bends, point, self.bender.step)
        if y.stride() != x.stride():
            # keep the layout (e.g. channels-last) the next segment was compiled for: an
            # operator that returns another layout would otherwise cost a recompile
            y = torch.empty_like(x).copy_(y)
        return y

    def _parts(self, name: str) -> list[nn.Module]:
        """The U-Net modules the segment ``name`` runs."""
        u = self.unet
        if name == "time":
            return [u.time_proj, u.time_embedding, u.time_embed_act]
        if name == "conv_in":
            return [u.conv_in]
        if name == "mid":
            return [u.mid_block]
        if name == "out":
            return [u.conv_norm_out, u.conv_act, u.conv_out]
        kind, index = name.split(".")
        return [(u.down_blocks if kind == "down" else u.up_blocks)[int(index)]]

    # --- segments: pieces of UNet2DConditionModel.forward, called as it calls them ---------
    def _segment(self, name: str) -> Callable:
        """The eager function of segment ``name``."""
        kind = segment_kind(name)
        if kind in ("down", "up"):
            blocks = self.unet.down_blocks if kind == "down" else self.unet.up_blocks
            block = blocks[int(name.split(".")[1])]
            return self._down(block) if kind == "down" else self._up(block)
        return {"time": self._time, "conv_in": self._conv_in, "mid": self._mid, "out": self._out}[kind]

    def _time(self, sample: Tensor, timesteps: Tensor) -> Tensor:
        u = self.unet
        t_emb = u.time_proj(timesteps).to(dtype=sample.dtype)  # (B, C_t), f32 from time_proj
        emb = u.time_embedding(t_emb, None)  # (B, C_emb)
        if u.time_embed_act is not None:
            emb = u.time_embed_act(emb)
        return emb

    def _conv_in(self, sample: Tensor) -> Tensor:
        if self.unet.config.center_input_sample:
            sample = 2 * sample - 1.0
        return self.unet.conv_in(sample)

    def _down(self, block: nn.Module) -> Callable:
        def down(sample: Tensor, emb: Tensor, context: Tensor):
            if getattr(block, "has_cross_attention", False):
                return block(hidden_states=sample, temb=emb, encoder_hidden_states=context)
            return block(hidden_states=sample, temb=emb)

        return down

    def _mid(self, sample: Tensor, emb: Tensor, context: Tensor) -> Tensor:
        block = self.unet.mid_block
        if getattr(block, "has_cross_attention", False):
            return block(sample, emb, encoder_hidden_states=context)
        return block(sample, emb)

    def _up(self, block: nn.Module) -> Callable:
        def up(sample: Tensor, emb: Tensor, context: Tensor, res: tuple, upsample_size):
            if getattr(block, "has_cross_attention", False):
                return block(hidden_states=sample, temb=emb, res_hidden_states_tuple=res,
                             encoder_hidden_states=context, upsample_size=upsample_size)
            return block(hidden_states=sample, temb=emb, res_hidden_states_tuple=res, upsample_size=upsample_size)

        return up

    def _out(self, sample: Tensor) -> Tensor:
        u = self.unet
        if u.conv_norm_out:
            sample = u.conv_act(u.conv_norm_out(sample))
        return u.conv_out(sample)

    # --- the forward pass ------------------------------------------------------------------
    def forward(self, sample: Tensor, timestep, encoder_hidden_states: Tensor, return_dict: bool = True, **kwargs):
        """``unet(sample, timestep, encoder_hidden_states=…)`` with the bends between segments.

        sample (B, C, H, W); timestep a number, a 0-d or (B,) tensor; encoder_hidden_states
        (B, L, D). Other diffusers arguments (masks, ControlNet residuals, …) are refused.
        """
        extra = sorted(k for k, v in kwargs.items() if v is not None)
        if extra:
            raise ValueError(f"SegmentedUNet takes sample, timestep and encoder_hidden_states only; got {extra}")
        self.bender.attach()  # hooks points inside blocks while a bend is set at one of them
        run = self._run
        if self.bender.hooked:
            if not self._noted_finer:
                inner = sorted(p for p in self.bender.by_point if p not in self.block_names)
                log.info("bends inside blocks (%s) are not segment boundaries: they use Bender hooks and the "
                         "segments run eagerly while they are set", ", ".join(inner))
                self._noted_finer = True
            run = self.segments  # hooks inside a compiled segment would be ignored or traced into it
        cudagraphs = self.backend == "compile" and self.compile_options.get("mode") == "reduce-overhead"
        if cudagraphs and run is self._run:
            torch.compiler.cudagraph_mark_step_begin()

        # the timestep as a (B,) tensor, outside the compiled code so a new t is new data, not a new graph
        if not torch.is_tensor(timestep):  # as diffusers makes it (float64 where the device has it)
            float_dtype = torch.float32 if sample.device.type in ("mps", "npu") else torch.float64
            timestep = torch.tensor([timestep], dtype=float_dtype if isinstance(timestep, float) else torch.int64)
        t = timestep
        t = t.reshape(-1).to(sample.device).expand(sample.shape[0])
        up_factor = 2 ** self.unet.num_upsamplers
        odd_size = any(d % up_factor != 0 for d in sample.shape[-2:])

        emb = run["time"](sample, t)  # (B, C_emb)
        h = self._bend(run["conv_in"](sample), "conv_in")  # (B, C0, H, W)
        skips: tuple[Tensor, ...] = (h,)
        for i in range(len(self.unet.down_blocks)):
            h, res = run[f"down.{i}"](h, emb, encoder_hidden_states)
            skips += tuple(res)
            h = self._bend(h, f"down.{i}")  # the state passed on; the skips stay as they were
        h = self._bend(run["mid"](h, emb, encoder_hidden_states), "mid")
        for i, block in enumerate(self.unet.up_blocks):
            n = len(block.resnets)
            res, skips = skips[-n:], skips[:-n]
            size = tuple(skips[-1].shape[2:]) if odd_size and i < len(self.unet.up_blocks) - 1 else None
            h = self._bend(run[f"up.{i}"](h, emb, encoder_hidden_states, res, size), f"up.{i}")
        out = self._bend(run["out"](h), "conv_out")  # (B, C, H, W)
        if cudagraphs and run is self._run:
            out = out.clone()  # the graph's output buffer is overwritten by the next call
        return SegmentedOutput(sample=out) if return_dict else (out,)

    def remove(self) -> None:
        """Forget the bends and take off any hooks for points inside blocks."""
        self.bender.remove()


def segmented_unet(model, backend: str = "eager", compile_options: Optional[dict] = None) -> SegmentedUNet:
    """A ``SegmentedUNet`` for ``model.unet`` (a netbend Model) or for a bare U-Net."""
    unet = getattr(model, "unet", model)
    return SegmentedUNet(unet, backend=backend, compile_options=compile_options)
