"""`netbend bench`: the live path's performance figures, as one JSON object.

Everything is measured in ONE run on ONE pipeline, after a warm-up, so that ratios
between conditions stay valid on a noisy machine. Each measured cycle does, in turn:

    features   FeatureExtractor.process on a 50 ms window (the feature thread's work)
    off        one end-to-end frame with no bends
    on         one end-to-end frame with N bends whose params follow a mapping of rms
    replica    the stream step again, stage by stage: encode, U-Net, decode, upload
    churn      one end-to-end frame whose bends change operator, layer and param
    eager      (--backend other than eager) one bends-on frame of an eager twin pipeline on
               its own copy of the model, for the back-end's speed-up over eager

("off" and "on" swap places every other cycle so that neither always runs first.)
An end-to-end frame is what the show's render thread does: set the bends, ``pipe.step()``,
packs the frame for the display as the headless show does (``live.display.upload``: a pinned-memory
copy on CUDA, a host conversion on CPU).
Timing is ``perf_counter`` bracketed by ``torch.cuda.synchronize`` on CUDA, so each
interval holds the device work it launched.

With ``--backend compile`` the U-Net runs as torch.compile'd segments; torch.compile's
counters are read before and after the measured frames, so a recompile caused by a bend
change shows up as a number, not as a guess.
"""
from __future__ import annotations

import json
import logging
import math
import os
import platform
import shlex
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from engine.bending import block_points
from engine.bends import Bend
from engine.features import FeatureExtractor
from engine.mappings import Mapping, MappingState
from engine.sampling import guided_unet, predict_x0
from engine.stream import StreamConfig, StreamPipeline
from live.display.upload import FramePacker, choose_upload

log = logging.getLogger("netbend.bench")

BACKENDS = ("eager", "compile", "trace", "tensorrt")
SCHEMA = 2  # bump when a key changes meaning
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # recorded in "command" when set

AUDIO_RATE = 44100
FEATURE_WINDOW_S = 0.050  # the paper's window
FEATURE_HOP_S = 0.010  # how often the simulated feature thread publishes a frame
CONSISTENCY_TOLERANCE = 0.15  # stages and step measured moments apart: medians agree to this fraction
CHURN_TARGET = 2.0  # a frame that changes every bend may take at most this many medians

# The bends switched on for "--bends N" (the first N, cycling), each driven by rms as a
# live mapping would drive it. Kernel sizes stay small: a 9x9 erosion is a different
# benchmark, not a bend overhead.
RMS_RANGE = (0.0, 0.4)
OPERATOR_RANGES: dict[str, tuple[tuple[float, float], dict]] = {
    "rotate": ((0.0, 2 * math.pi), {"plane": "R1"}),
    "erode": ((2.0, 3.0), {}),
    "multiply": ((0.8, 1.2), {}),
    "translate": ((0.0, 0.25), {}),
    "dilate": ((2.0, 3.0), {}),
    "add": ((-0.2, 0.2), {}),
    "flip_h": ((0.0, 0.0), {}),
}
BEND_PLAN: tuple[tuple[str, str], ...] = (
    ("rotate", "mid"), ("erode", "up.1"), ("multiply", "down.1"), ("translate", "up.2"),
    ("dilate", "down.2"), ("add", "up.0"), ("flip_h", "down.3"),
)
CHURN_OPERATORS = tuple(OPERATOR_RANGES)  # 7 operators x 9 block points: 63 combinations

NOTES = [
    "frames: measured frames per condition (bends off, bends on, bends changing); each cycle also runs "
    "one stage-by-stage replica of the step and one feature extraction.",
    "frame_ms, fps, jitter_ms and audio_to_frame_ms are for the bends-on condition: N bends whose params "
    "follow a mapping of the rms feature every frame, as in a show. fps = 1000 / mean frame_ms.",
    "an end-to-end frame = set the bends + pipe.step() + the frame packed for the display (uint8 conversion and "
    "the copy named by upload_path), as the live render thread does; it does not include the window's texture "
    "upload, vsync or scan-out.",
    "audio_to_frame_ms: a simulated feature thread publishes a feature frame every 10 ms (hop) of a clock "
    "started with the measurement, each ready features_ms (the measured median) after its window's newest "
    "sample was captured. A frame starting at t uses the newest frame ready by t; its latency is frame ready "
    "minus that window's capture time, i.e. about frame time + feature time + 0..10 ms of hop phase. Audio "
    "device input latency (driver, block size) and display latency (vsync, scan-out) are not included, so "
    "audio-to-photon is this plus both.",
    "stages_ms: the replica calls the model parts directly on the pipeline's prepared tensors (same bends "
    "as the bends-on frames). unet covers all steps, including the latent bends and the x0 arithmetic "
    "between them; upload is the packing for upload_path. consistency compares the replica's per-frame encode+unet+decode "
    "with pipe.step() and the replica's total with the end-to-end frame; consistent when both medians agree "
    "within the tolerance.",
    "bend_overhead: ratio of median frame times, bends on over bends off, interleaved in the same run.",
    "bend_changes: every churn frame gives each bend a new operator, layer and param; max_over_median is "
    "the slowest churn frame over the churn median (target < 2). The Bender hooks every U-Net point once "
    "when it is made; hooks_* count them before and after (forward hooks on the whole U-Net as well).",
    "speedup_over_eager (--backend other than eager): median bends-on frame of an eager twin pipeline (its own "
    "copy of the model, same config and bends, interleaved in the same cycles) over this back-end's median. "
    "compiles counts torch.compile's graphs and frames before and after the measured frames: recompiles_during"
    "_measurement must be 0 however the bends change; traces (--backend trace) counts the TorchScript graphs "
    "traced, and retraces_during_measurement must be 0 as well.",
    "peer (--peer diffusers): diffusers' StableDiffusionImg2ImgPipeline on its own copy of the model, never bent, "
    "one img2img frame on its own previous frame per cycle with the stream's prompt embeddings, steps, strength, "
    "guidance and size (timesteps lists what it ran); ratio = its median frame over netbend's median pipe.step() "
    "with the bends on (ratio_no_bends: with none), measured in the same cycles.",
    "timing: perf_counter, bracketed by torch.cuda.synchronize on CUDA; after the warm-up frames. "
    "load_average_1m near or above device.logical_cpus means other processes competed for the CPU and the "
    "tails (p95, p99, max) are theirs as much as the model's.",
]


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
        if self.backend not in BACKENDS:
            raise BenchError(f"unknown backend {self.backend!r}; allowed: {', '.join(BACKENDS)}")
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


def describe_device(device: torch.device) -> dict:
    """The device in words: the GPU's name, or the CPU model and how many threads torch uses."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return {"type": "cuda", "name": torch.cuda.get_device_name(index), "cuda": torch.version.cuda}
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"type": "cpu", "name": name, "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}


def _clock(device: torch.device) -> Callable[[], float]:
    if device.type == "cuda":
        def now() -> float:
            torch.cuda.synchronize(device)
            return time.perf_counter()
        return now
    return time.perf_counter


def _signal(t: np.ndarray) -> np.ndarray:
    """The test audio at times t (s): a 220 Hz tone swelling at 0.7 Hz and a 3 kHz partial
    pulsing at 2 Hz, so rms (and with it every mapped param) moves from frame to frame."""
    swell = 0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t)
    pulse = 0.5 + 0.5 * np.sin(2 * np.pi * 2.0 * t)
    return 0.5 * swell * np.sin(2 * np.pi * 220 * t) + 0.1 * pulse * np.sin(2 * np.pi * 3000 * t)


def _window(capture: float) -> np.ndarray:
    """The 50 ms of test audio ending at ``capture`` seconds of the simulated audio clock."""
    n = round(FEATURE_WINDOW_S * AUDIO_RATE)
    end = round(capture * AUDIO_RATE)
    return _signal(np.arange(end - n, end) / AUDIO_RATE)


def _mapping(operator: str) -> Mapping:
    out_range, _ = OPERATOR_RANGES[operator]
    return Mapping("rms", in_range=RMS_RANGE, out_range=out_range)


class _Driven:
    """Bends whose params follow rms through live mappings (what the show's render thread does)."""

    def __init__(self, plan: list[tuple[str, str]]):
        self.plan = plan
        self.states = [MappingState(_mapping(op)) for op, _ in plan]

    def bends(self, rms: float, dt: float) -> list[Bend]:
        return [Bend(op, layer, state.update(rms, dt), opts=OPERATOR_RANGES[op][1])
                for (op, layer), state in zip(self.plan, self.states)]


def _churn_bends(n: int, index: int, layers: list[str], rms: float) -> list[Bend]:
    """n bends, each with a different operator, layer and param than at ``index - 1``."""
    bends = []
    for i in range(n):
        op = CHURN_OPERATORS[(index + 2 * i) % len(CHURN_OPERATORS)]
        layer = layers[(index + 3 * i) % len(layers)]
        (lo, hi), opts = OPERATOR_RANGES[op]
        u = min(1.0, max(0.0, rms / RMS_RANGE[1]))
        bends.append(Bend(op, layer, lo + (hi - lo) * ((u + 0.37 * index) % 1.0), opts=opts))
    return bends


@torch.no_grad()
def _replica(pipe: StreamPipeline, now: Callable[[], float], packer) -> dict[str, float]:
    """``pipe.step()`` stage by stage, on its prepared tensors; the pipeline state is left as is.
    Mirrors the default stream config (no colour coherence, no noise floor)."""
    c = pipe.config
    t0 = now()
    x0 = pipe._latent if c.latent_feedback else pipe.encode_image(pipe._image)  # (1, C, h, w)
    t1 = now()
    for k in range(c.steps):
        a = pipe._alpha_bars[k]
        x_t = a ** 0.5 * x0 + (1.0 - a) ** 0.5 * pipe._noise[k]
        x_t = pipe.bender.latent(x_t, k)
        out = guided_unet(pipe.unet, pipe.bender, x_t, pipe._timesteps[k], pipe._emb, pipe._uncond, c.guidance, k)
        x0 = predict_x0(out, x_t, a, pipe._prediction_type)
    x0 = pipe.bender.latent(x0, c.steps)
    t2 = now()
    frame = pipe.decode_latent(x0)  # (1, 3, H, W)
    t3 = now()
    packer.pack(frame)
    t4 = now()
    return {"encode": t1 - t0, "unet": t2 - t1, "decode": t3 - t2, "upload": t4 - t3}


def _summary(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {"p50": _r(np.percentile(ms, 50)), "p95": _r(np.percentile(ms, 95)), "p99": _r(np.percentile(ms, 99)),
            "mean": _r(ms.mean()), "max": _r(ms.max()), "n": int(ms.size)}


def _r(x: float, digits: int = 4) -> float:
    return float(round(float(x), digits))


def _load_average() -> Optional[float]:
    """The host's 1-minute load average: above the core count, other work competed with the bench."""
    try:
        return _r(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _forward_hooks(module: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in module.modules())


def _compile_counts() -> dict[str, int]:
    """torch.compile's running totals: graphs made, frames compiled (a recompile adds to both)."""
    from torch._dynamo.utils import counters

    return {"graphs": int(counters["stats"]["unique_graphs"]), "frames": int(counters["frames"]["total"])}


def _trace_counts(pipe: StreamPipeline) -> int:
    """TorchScript graphs traced so far by the trace back-end's segments and VAE passes."""
    runs = [*getattr(pipe.unet, "_run", {}).values(), pipe.encode_image, pipe.decode_latent]
    return sum(getattr(run, "traces", 0) for run in runs)


def run_bench(opts: BenchOptions) -> dict:
    """Load, prepare, warm up, measure; returns the figures (see NOTES)."""
    from engine.models import attention_kind, load_model

    device = _device(opts.device)
    frames, warmup = default_counts(opts.model, device)
    frames = opts.frames if opts.frames is not None else frames
    warmup = opts.warmup if opts.warmup is not None else warmup
    if device.type == "cpu" and opts.model != "tiny":
        log.warning("benchmarking %s on CPU: expect seconds per frame; %d frames per condition (x3, plus a replica "
                    "each) after %d warm-up; the GPU figures need a GPU", opts.model, frames, warmup)

    started = time.perf_counter()
    def model_for_bench():
        model = load_model(opts.model, device=device, dtype=opts.dtype)
        if opts.channels_last:
            for part in (model.unet, model.vae):
                part.to(memory_format=torch.channels_last)
        return model

    model = model_for_bench()
    width, height = opts.size or (None, None)
    pipe = StreamPipeline(model, StreamConfig(steps=opts.steps, width=width, height=height), backend=opts.backend)
    pipe.prepare()
    eager = None  # the eager twin, on its own model so neither pipeline moves the other's hooks
    if opts.backend != "eager":
        eager = StreamPipeline(model_for_bench(),
                               StreamConfig(steps=opts.steps, width=width, height=height))
        eager.prepare()
    peer = None  # diffusers' own pipeline on a third copy of the model (never bent)
    if opts.peer is not None:
        from live.cli.peers import make_peer

        peer = make_peer(opts.peer, model_for_bench(), pipe)
    if opts.size is None:
        height, width = pipe.size
    setup_s = time.perf_counter() - started

    upload, _ = choose_upload(device, headless=True)
    packer = FramePacker(upload.path)
    layers = [n for n in block_points(pipe.bender.names) if n not in ("conv_in", "conv_out")]
    plan = [BEND_PLAN[i % len(BEND_PLAN)] for i in range(opts.bends)]
    for _, layer in plan:
        pipe.bender.resolve_layer(layer)  # a model without this point fails here, with the valid names
    driven = _Driven(plan)
    extractor = FeatureExtractor(AUDIO_RATE, window=FEATURE_WINDOW_S, hop=FEATURE_HOP_S)
    now = _clock(device)
    hooks_before = pipe.bender.attached
    unet_hooks_before = _forward_hooks(model.unet)

    times: dict[str, list[float]] = {k: [] for k in ("features", "off", "on", "step_on", "step_off", "churn", "latency", "eager",
                                                     "peer")}
    stages: dict[str, list[float]] = {k: [] for k in ("encode", "unet", "decode", "upload")}
    load_before = _load_average()
    audio_t0 = now()
    last_on = None
    features_estimate = 0.0  # the simulated feature thread's delay; the running median once measured
    on_bends: list[Bend] = []

    def frame(bends: list[Bend], record: Optional[str], pipe: StreamPipeline = pipe) -> None:
        t_start = now()
        pipe.bends = bends
        t_set = now()
        image = pipe.step()
        t_step = now()
        packer.pack(image)
        ready = now()
        if record is None:
            return
        times[record].append(ready - t_start)
        if record in ("on", "off"):
            times[f"step_{record}"].append(t_step - t_set)
        if record == "on":
            # the newest feature frame ready at t_start: hop boundaries on the audio clock, each
            # published features_estimate after its window's last sample was captured
            k = math.floor((t_start - audio_t0 - features_estimate) / FEATURE_HOP_S)
            times["latency"].append(ready - (audio_t0 + k * FEATURE_HOP_S))

    compiles_before = None
    for cycle in range(warmup + frames):
        measuring = cycle >= warmup
        if measuring and compiles_before is None:
            compiles_before = _compile_counts()
            traces_before = _trace_counts(pipe)
        t_features = now()
        capture = (t_features - audio_t0) // FEATURE_HOP_S * FEATURE_HOP_S  # the newest hop boundary
        features = extractor.process(_window(capture), capture)
        feature_s = now() - t_features
        rms = features["rms"]
        if measuring:
            times["features"].append(feature_s)
            features_estimate = float(np.median(times["features"]))
        t = now()
        dt = 1 / 30 if last_on is None else t - last_on
        last_on = t
        on_bends = driven.bends(rms, dt)
        order = ("off", "on") if cycle % 2 == 0 else ("on", "off")
        for condition in order:
            frame(on_bends if condition == "on" else [], condition if measuring else None)
        pipe.bends = on_bends
        replica = _replica(pipe, now, packer)
        if measuring:
            for name, seconds in replica.items():
                stages[name].append(seconds)
        frame(_churn_bends(opts.bends, cycle, layers, rms), "churn" if measuring else None)
        if eager is not None:
            frame(on_bends, "eager" if measuring else None, eager)
        if peer is not None:
            t_peer = now()
            peer.frame()
            if measuring:
                times["peer"].append(now() - t_peer)
    compiles_after = _compile_counts()
    traces_after = _trace_counts(pipe)
    load_after = _load_average()
    hooks_after = pipe.bender.attached
    unet_hooks_after = _forward_hooks(model.unet)
    finite = bool(torch.isfinite(pipe._image).all())

    on, off, churn = (_summary(times[k]) for k in ("on", "off", "churn"))
    step = _summary(times["step_on"])
    stage_summary = {name: _summary(v) for name, v in stages.items()}
    stage_summary["features"] = _summary(times["features"])
    model_part = [e + u + d for e, u, d in zip(stages["encode"], stages["unet"], stages["decode"])]
    replica_total = [m + u for m, u in zip(model_part, stages["upload"])]
    ratio = on["p50"] / off["p50"]
    churn_ratio = churn["max"] / churn["p50"]
    return {
        "netbend_bench": SCHEMA,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": opts.command(),
        "device": describe_device(device),
        "load_average_1m": {"before": load_before, "after": load_after},
        "torch": torch.__version__,
        "backend": opts.backend,
        "model": opts.model,
        "dtype": str(model.dtype).replace("torch.", ""),
        "channels_last": opts.channels_last,
        "attention": attention_kind(model.unet),
        "size": [int(width), int(height)],
        "steps": opts.steps,
        "upload_path": str(upload),
        "strength": pipe.config.strength,
        "frames": frames,
        "warmup": warmup,
        "setup_s": _r(setup_s, 2),
        "bends": [str(b) for b in on_bends],  # as on the last bends-on frame
        "fps": _r(1000.0 / on["mean"], 2),
        "fps_no_bends": _r(1000.0 / off["mean"], 2),
        "frame_ms": on,
        "jitter_ms": _r(on["p99"] - on["p50"]),
        "audio_to_frame_ms": {**_summary(times["latency"]), "feature_hop_ms": FEATURE_HOP_S * 1000},
        "step_ms": step,
        "stages_ms": stage_summary,
        "stage_sum_ms": _r(sum(stage_summary[k]["p50"] for k in ("encode", "unet", "decode", "upload"))),
        "consistency": {
            "replica_model_ms_p50": _summary(model_part)["p50"],
            "step_ms_p50": step["p50"],
            "step_over_replica": _r(step["p50"] / _summary(model_part)["p50"]),
            "replica_total_ms_p50": _summary(replica_total)["p50"],
            "frame_ms_p50": on["p50"],
            "frame_over_replica": _r(on["p50"] / _summary(replica_total)["p50"]),
            "tolerance": CONSISTENCY_TOLERANCE,
            "consistent": bool(abs(step["p50"] / _summary(model_part)["p50"] - 1.0) <= CONSISTENCY_TOLERANCE
                               and abs(on["p50"] / _summary(replica_total)["p50"] - 1.0) <= CONSISTENCY_TOLERANCE),
        },
        "bend_overhead": {
            "bends": opts.bends,
            "on_ms_p50": on["p50"],
            "off_ms_p50": off["p50"],
            "ratio": _r(ratio),
            "overhead_pct": _r((ratio - 1.0) * 100.0, 2),
            "off_ms": off,
        },
        "bend_changes": {
            "frames": churn["n"],
            "median_ms": churn["p50"],
            "max_ms": churn["max"],
            "max_over_median": _r(churn_ratio),
            "max_over_bends_on_median": _r(churn["max"] / on["p50"]),
            "target_max_over_median": CHURN_TARGET,
            "within_target": bool(churn_ratio < CHURN_TARGET),
            "hooks_before": hooks_before,
            "hooks_after": hooks_after,
            "unet_forward_hooks_before": unet_hooks_before,
            "unet_forward_hooks_after": unet_hooks_after,
            "hooks_unchanged": hooks_before == hooks_after and unet_hooks_before == unet_hooks_after,
        },
        "speedup_over_eager": _speedup(times["eager"], on) if eager is not None else None,
        "peer": _peer(peer, times) if peer is not None else None,
        "compiles": {
            "before_measurement": compiles_before,
            "after_measurement": compiles_after,
            "recompiles_during_measurement": compiles_after["frames"] - compiles_before["frames"],
        } if opts.backend == "compile" else None,
        "traces": {
            "before_measurement": traces_before,
            "after_measurement": traces_after,
            "retraces_during_measurement": traces_after - traces_before,
        } if opts.backend == "trace" else None,
        "last_frame_finite": finite,
        "notes": NOTES,
    }


def _speedup(eager_seconds: list[float], backend: dict) -> dict:
    eager = _summary(eager_seconds)
    return {"eager_ms_p50": eager["p50"], "backend_ms_p50": backend["p50"], "ratio": _r(eager["p50"] / backend["p50"]),
            "eager_ms": eager}


def _peer(peer, times: dict[str, list[float]]) -> dict:
    """The peer's frame against netbend's ``pipe.step()`` (bends on and off), same cycles."""
    frame, on, off = _summary(times["peer"]), _summary(times["step_on"]), _summary(times["step_off"])
    return {**peer.describe(), "frame_ms": frame, "netbend_step_ms_p50": on["p50"],
            "netbend_step_no_bends_ms_p50": off["p50"], "ratio": _r(frame["p50"] / on["p50"]),
            "ratio_no_bends": _r(frame["p50"] / off["p50"])}


def write_json(path: Path, data: dict) -> None:
    """Atomically: a temporary file in the same folder, then rename over the target."""
    path = Path(path).expanduser()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.resolve().parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
