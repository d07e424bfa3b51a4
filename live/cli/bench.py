"""`netbend bench`: the live path's performance figures, as one JSON object.

Everything is measured in ONE run on ONE pipeline, after a warm-up, so that ratios
between conditions stay valid on a noisy machine. Each measured cycle does, in turn:

    features   FeatureExtractor.process on a 50 ms window (the feature thread's work)
    off        one end-to-end frame with no bends
    on         one end-to-end frame with N bends whose params follow a mapping of rms
    replica    one more bends-on frame whose step reports its stages to a timer
               (``StreamPipeline.step(timer=...)``): encode, U-Net, decode, then upload
    churn      one end-to-end frame whose bends change operator, layer and param
    eager      (--backend other than eager) one bends-on frame of an eager twin pipeline on
               its own copy of the model, for the back-end's speed-up over eager

("off" and "on" swap places every other cycle so that neither always runs first.)
An end-to-end frame is what the show's render thread does: set the bends, ``pipe.step()``,
packs the frame for the display as the headless show does (``live.display.upload``: a pinned-memory
copy on CUDA, a host conversion on CPU). The bends-on params come from ``MappedBends``
(engine/mappings.py), the show's own feature -> param driver.
Timing is ``perf_counter`` bracketed by ``torch.cuda.synchronize`` on CUDA, so each
interval holds the device work it launched.

With ``--backend compile`` the U-Net runs as torch.compile'd segments; torch.compile's
counters are read before and after the measured frames, so a recompile caused by a bend
change shows up as a number, not as a guess. ``live.cli.bench_report`` turns the measured
seconds into the JSON object.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from engine.atomic import write_atomically
from engine.bending import block_points
from engine.bends import Bend
from engine.features import FeatureExtractor, FeatureFrame
from engine.mappings import MappedBends
from engine.pipeline_base import PIPELINE_BACKENDS
from engine.stream import StreamConfig, StreamPipeline
from live.cli.bench_report import load_average, report
from live.cli.bench_work import (AUDIO_RATE, BEND_PLAN, FEATURE_HOP_S, FEATURE_WINDOW_S, audio_window, churn_bends,
                                 mapped_plan)
from live.display.upload import FramePacker, choose_upload

log = logging.getLogger("netbend.bench")

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # recorded in "command" when set

# what each cycle records, as lists of seconds (step_*: pipe.step() alone, inside a frame)
RECORDS = ("features", "off", "on", "step_on", "step_off", "churn", "latency", "eager", "peer")


class BenchError(ValueError):
    """A bench that cannot start: the message says what was wrong and what is allowed."""


@dataclass
class BenchOptions:
    model: str = "tiny"
    size: Optional[tuple[int, int]] = None  # (width, height); None: the model's native size
    steps: int = 1  # the live default: SD-Turbo at 1 step
    backend: str = "eager"
    bends: int = 2  # rotate at mid, erode at up.1: a typical two-bend show
    frames: Optional[int] = None  # per condition; None: short (see default_counts)
    warmup: Optional[int] = None
    device: Optional[str] = None  # None: cuda if available
    json: Optional[Path] = None
    dtype: Optional[str] = None  # fp16 | bf16 | fp32; None: the model's default for the device (engine.models)
    channels_last: bool = False  # U-Net and VAE weights in channels-last memory format
    peer: Optional[str] = None  # "diffusers": its img2img pipeline timed on the same work (live.cli.peers)

    def __post_init__(self) -> None:
        if self.backend not in PIPELINE_BACKENDS:
            raise BenchError(f"unknown backend {self.backend!r}; allowed: {', '.join(PIPELINE_BACKENDS)}")
        if self.frames is not None and self.frames < 1:
            raise BenchError(f"--frames must be >= 1, got {self.frames}")
        if self.warmup is not None and self.warmup < 0:
            raise BenchError(f"--warmup must be >= 0, got {self.warmup}")
        if self.bends < 0:
            raise BenchError(f"--bends must be >= 0, got {self.bends}")
        StreamConfig(steps=self.steps)  # validates: 1..50
        if self.dtype is not None:
            from engine.models import DTYPES

            if self.dtype not in DTYPES:
                raise BenchError(f"unknown --dtype {self.dtype!r}; allowed: {', '.join(DTYPES)}")
        if self.json is not None and not Path(self.json).expanduser().resolve().parent.is_dir():
            raise BenchError(f"--json {str(self.json)!r}: its folder does not exist")
        from live.cli.peers import PEERS

        if self.peer is not None and self.peer not in PEERS:
            raise BenchError(f"unknown --peer {self.peer!r}; allowed: {', '.join(PEERS)}")

    def command(self) -> str:
        """The equivalent command line, every option explicit (so it reproduces the run), after the
        thread-count variables of the environment it ran in (they change CPU figures several-fold)."""
        env = [f"{k}={os.environ[k]}" for k in THREAD_VARIABLES if k in os.environ]
        args = [*env, "netbend", "bench", "--model", self.model]
        if self.size is not None:
            args += ["--size", f"{self.size[0]}x{self.size[1]}"]
        args += ["--steps", str(self.steps), "--backend", self.backend, "--bends", str(self.bends)]
        if self.frames is not None:
            args += ["--frames", str(self.frames)]
        if self.warmup is not None:
            args += ["--warmup", str(self.warmup)]
        if self.device is not None:
            args += ["--device", self.device]
        if self.dtype is not None:
            args += ["--dtype", self.dtype]
        if self.channels_last:
            args += ["--channels-last"]
        if self.peer is not None:
            args += ["--peer", self.peer]
        if self.json is not None:
            args += ["--json", str(self.json)]
        return shlex.join(args)


def default_counts(model: str, device: torch.device) -> tuple[int, int]:
    """(frames per condition, warm-up frames) that keep a default run short."""
    if device.type == "cuda":
        return 200, 20
    if model == "tiny":
        return 50, 5
    return 3, 1  # a full-size model on CPU takes seconds per frame


def _device(spec: Optional[str]) -> torch.device:
    if spec is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise BenchError(f"bad --device {spec!r}; allowed: cpu, cuda, cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise BenchError(f"bad --device {spec!r}; allowed: cpu, cuda, cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"--device {spec}: torch {torch.__version__} sees no CUDA device here; use --device cpu")
    return device


def _clock(device: torch.device) -> Callable[[], float]:
    if device.type == "cuda":
        def now() -> float:
            torch.cuda.synchronize(device)
            return time.perf_counter()
        return now
    return time.perf_counter


class StageClock:
    """A ``StreamPipeline.step`` timer: each call records the seconds since the last mark
    (``start`` before the step; the caller may add stages of its own after it)."""

    def __init__(self, now: Callable[[], float]):
        self.now = now
        self.seconds: dict[str, float] = {}
        self.last = 0.0

    def start(self) -> None:
        self.last = self.now()

    def __call__(self, stage: str) -> None:
        t = self.now()
        self.seconds[stage] = t - self.last
        self.last = t


@dataclass
class Rig:
    """What one bench run measures with, made once before the warm-up."""

    device: torch.device
    frames: int  # measured cycles
    warmup: int  # cycles before them
    model: object  # the measured pipeline's model (engine.model.Model)
    pipe: StreamPipeline
    eager: Optional[StreamPipeline]  # the eager twin on its own model (--backend other than eager)
    peer: Optional[object]  # live.cli.peers, on its own model (--peer)
    upload: object  # live.display.upload's choice, printed as upload_path
    packer: FramePacker
    driver: MappedBends  # the bends-on frames' bends
    layers: list[str]  # the block points the churn frames move bends between
    now: Callable[[], float]
    size: tuple[int, int]  # (width, height)
    setup_s: float


@dataclass
class Measured:
    """The measured seconds and the counters read around them (live.cli.bench_report reads it)."""

    times: dict[str, list[float]]  # RECORDS
    stages: dict[str, list[float]]  # the replica's encode, unet, decode, upload
    bends: list[Bend]  # the last bends-on frame's
    before: dict  # counters before the warm-up
    measuring: dict  # counters as the measured cycles start
    after: dict  # counters after them
    finite: bool  # the measured pipeline's last frame
    feature_hop_s: float = FEATURE_HOP_S


class Cycles:
    """The measured cycles of the module docstring, each interval appended to a list."""

    def __init__(self, rig: Rig):
        self.rig = rig
        self.times: dict[str, list[float]] = {k: [] for k in RECORDS}
        self.stages: dict[str, list[float]] = {k: [] for k in ("encode", "unet", "decode", "upload")}
        self.extractor = FeatureExtractor(AUDIO_RATE, window=FEATURE_WINDOW_S, hop=FEATURE_HOP_S)
        self.audio_t0 = rig.now()
        self.features_estimate = 0.0  # the simulated feature thread's delay; the running median once measured
        self.last_on: Optional[float] = None
        self.on_bends: list[Bend] = []

    def run(self, cycle: int, measuring: bool) -> None:
        rig = self.rig
        features = self._features(measuring)
        t = rig.now()
        dt = 1 / 30 if self.last_on is None else t - self.last_on
        self.last_on = t
        self.on_bends = rig.driver.update(features, dt)
        for condition in (("off", "on") if cycle % 2 == 0 else ("on", "off")):
            self._frame(rig.pipe, self.on_bends if condition == "on" else [], condition if measuring else None)
        self._replica(measuring)
        churn = churn_bends(len(self.on_bends), cycle, rig.layers, features["rms"])
        self._frame(rig.pipe, churn, "churn" if measuring else None)
        if rig.eager is not None:
            self._frame(rig.eager, self.on_bends, "eager" if measuring else None)
        if rig.peer is not None:
            t_peer = rig.now()
            rig.peer.frame()
            if measuring:
                self.times["peer"].append(rig.now() - t_peer)

    def _features(self, measuring: bool) -> FeatureFrame:
        now = self.rig.now
        t = now()
        capture = (t - self.audio_t0) // FEATURE_HOP_S * FEATURE_HOP_S  # the newest hop boundary
        features = self.extractor.process(audio_window(capture), capture)
        if measuring:
            self.times["features"].append(now() - t)
            self.features_estimate = float(np.median(self.times["features"]))
        return features

    def _frame(self, pipe: StreamPipeline, bends: list[Bend], record: Optional[str]) -> None:
        now = self.rig.now
        t_start = now()
        pipe.bends = bends
        t_set = now()
        image = pipe.step()
        t_step = now()
        self.rig.packer.pack(image)
        ready = now()
        if record is None:
            return
        self.times[record].append(ready - t_start)
        if record in ("on", "off"):
            self.times[f"step_{record}"].append(t_step - t_set)
        if record == "on":
            # the newest feature frame ready at t_start: hop boundaries on the audio clock, each
            # published features_estimate after its window's last sample was captured
            k = math.floor((t_start - self.audio_t0 - self.features_estimate) / FEATURE_HOP_S)
            self.times["latency"].append(ready - (self.audio_t0 + k * FEATURE_HOP_S))

    def _replica(self, measuring: bool) -> None:
        """One bends-on frame, its step timed stage by stage through the pipeline's timer."""
        pipe, clock = self.rig.pipe, StageClock(self.rig.now)
        pipe.bends = self.on_bends
        clock.start()
        image = pipe.step(timer=clock)
        self.rig.packer.pack(image)
        clock("upload")
        if measuring:
            for name, seconds in clock.seconds.items():
                self.stages[name].append(seconds)


def _counts(rig: Rig) -> dict:
    """What must not change while the bends do: hooks, torch.compile's and TorchScript's graphs."""
    return {"load": load_average(), "hooks": rig.pipe.bender.attached, "unet_hooks": rig.pipe.unet_hooks,
            "compiles": _compile_counts() if rig.pipe.backend == "compile" else None, "traces": rig.pipe.traces}


def _compile_counts() -> dict[str, int]:
    """torch.compile's running totals: graphs made, frames compiled (a recompile adds to both).
    torch keeps them only in torch._dynamo's counters; there is no public count."""
    from torch._dynamo.utils import counters

    return {"graphs": int(counters["stats"]["unique_graphs"]), "frames": int(counters["frames"]["total"])}


def _pipelines(opts: BenchOptions, device: torch.device) -> tuple[StreamPipeline, Optional[StreamPipeline], object]:
    """The measured pipeline, its eager twin and the peer, each on its own copy of the model
    so that no pipeline moves another's hooks."""
    from engine.models import load_model

    def model_for_bench():
        model = load_model(opts.model, device=device, dtype=opts.dtype)
        if opts.channels_last:
            for part in (model.unet, model.vae):
                part.to(memory_format=torch.channels_last)
        return model

    width, height = opts.size or (None, None)
    pipe = StreamPipeline(model_for_bench(), StreamConfig(steps=opts.steps, width=width, height=height),
                          backend=opts.backend)
    pipe.prepare()
    eager = None
    if pipe.backend != "eager":  # as resolved: "auto" may be either
        eager = StreamPipeline(model_for_bench(), StreamConfig(steps=opts.steps, width=width, height=height))
        eager.prepare()
    peer = None  # diffusers' own pipeline on a third copy of the model (never bent)
    if opts.peer is not None:
        from live.cli.peers import make_peer

        peer = make_peer(opts.peer, model_for_bench(), pipe)
    return pipe, eager, peer


def _setup(opts: BenchOptions) -> Rig:
    """Load the models, prepare the pipelines, check the bend plan against the model."""
    device = _device(opts.device)
    frames, warmup = default_counts(opts.model, device)
    frames = opts.frames if opts.frames is not None else frames
    warmup = opts.warmup if opts.warmup is not None else warmup
    if device.type == "cpu" and opts.model != "tiny":
        log.warning("benchmarking %s on CPU: expect seconds per frame; %d frames per condition (x3, plus a replica "
                    "each) after %d warm-up; the GPU figures need a GPU", opts.model, frames, warmup)
    started = time.perf_counter()
    pipe, eager, peer = _pipelines(opts, device)
    setup_s = time.perf_counter() - started
    upload, _ = choose_upload(device, headless=True)
    plan = [BEND_PLAN[i % len(BEND_PLAN)] for i in range(opts.bends)]
    for _, layer in plan:
        pipe.bender.resolve_layer(layer)  # a model without this point fails here, with the valid names
    layers = [n for n in block_points(pipe.bender.names) if n not in ("conv_in", "conv_out")]
    height, width = pipe.size
    return Rig(device=device, frames=frames, warmup=warmup, model=pipe.model, pipe=pipe, eager=eager, peer=peer,
               upload=upload, packer=FramePacker(upload.path), driver=mapped_plan(plan), layers=layers,
               now=_clock(device), size=(width, height), setup_s=setup_s)


def _measure(rig: Rig) -> Measured:
    """The warm-up cycles, then the measured ones, with the counters read around them."""
    before = _counts(rig)
    cycles = Cycles(rig)
    for cycle in range(rig.warmup):
        cycles.run(cycle, measuring=False)
    measuring = _counts(rig)
    for cycle in range(rig.warmup, rig.warmup + rig.frames):
        cycles.run(cycle, measuring=True)
    after = _counts(rig)
    return Measured(times=cycles.times, stages=cycles.stages, bends=cycles.on_bends, before=before,
                    measuring=measuring, after=after, finite=bool(torch.isfinite(rig.pipe.image).all()))


def run_bench(opts: BenchOptions) -> dict:
    """Load, prepare, warm up, measure; returns the figures (see live.cli.bench_report.NOTES)."""
    rig = _setup(opts)
    return report(opts, rig, _measure(rig))


def write_json(path: Path, data: dict) -> None:
    """Atomically: the old file or the new one, never half of one (engine.atomic)."""
    write_atomically(Path(path).expanduser(), json.dumps(data, indent=2) + "\n")
