"""The JSON object `netbend bench` prints: its notes, its summaries, and what it says about
the machine it ran on. ``live.cli.bench`` measures; this file only turns the measured
seconds into the figures, so a key's meaning is read in one place (see NOTES)."""
from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch

if TYPE_CHECKING:
    from live.cli.bench import BenchOptions, Measured, Rig

SCHEMA = 2  # bump when a key changes meaning
CONSISTENCY_TOLERANCE = 0.15  # stages and step measured moments apart: medians agree to this fraction
CHURN_TARGET = 2.0  # a frame that changes every bend may take at most this many medians
STAGE_KEYS = ("encode", "unet", "decode", "upload")  # the replica's stages, summed in stage_sum_ms

NOTES = [
    "frames: measured frames per condition (bends off, bends on, bends changing); each cycle also runs "
    "one stage-timed replica of the bends-on frame and one feature extraction.",
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
    "stages_ms: the replica is one more bends-on end-to-end frame whose pipe.step() reports its stages to a "
    "timer (StreamPipeline.step(timer=...)), each stage bracketed like every interval here. encode holds the "
    "fed-back latent; unet covers all steps, including the latent bends and the x0 arithmetic between them; "
    "upload is the packing for upload_path. consistency compares the replica's per-frame encode+unet+decode "
    "with the untimed pipe.step() and the replica's total with the end-to-end frame; consistent when both "
    "medians agree within the tolerance.",
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


def rounded(x: float, digits: int = 4) -> float:
    return float(round(float(x), digits))


def summary(seconds: list[float]) -> dict[str, float]:
    """Percentiles, mean and max in milliseconds, and how many intervals they summarise."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {"p50": rounded(np.percentile(ms, 50)), "p95": rounded(np.percentile(ms, 95)),
            "p99": rounded(np.percentile(ms, 99)), "mean": rounded(ms.mean()), "max": rounded(ms.max()),
            "n": int(ms.size)}


def load_average() -> Optional[float]:
    """The host's 1-minute load average: above the core count, other work competed with the bench."""
    try:
        return rounded(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


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


def report(opts: BenchOptions, rig: Rig, measured: Measured) -> dict:
    """The bench's JSON object, keys in the order they print (see NOTES)."""
    from engine.models import attention_kind

    times, before, after = measured.times, measured.before, measured.after
    on, off, churn, step = (summary(times[k]) for k in ("on", "off", "churn", "step_on"))
    stages = {name: summary(seconds) for name, seconds in measured.stages.items()}
    stages["features"] = summary(times["features"])
    return {
        "netbend_bench": SCHEMA,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": opts.command(),
        "device": describe_device(rig.device),
        "load_average_1m": {"before": before["load"], "after": after["load"]},
        "torch": torch.__version__,
        "backend": rig.pipe.backend,  # as resolved ("auto" becomes trace or eager)
        "model": opts.model,
        "dtype": str(rig.model.dtype).replace("torch.", ""),
        "channels_last": opts.channels_last,
        "attention": attention_kind(rig.model.unet),
        "size": [int(rig.size[0]), int(rig.size[1])],
        "steps": opts.steps,
        "upload_path": str(rig.upload),
        "strength": rig.pipe.config.strength,
        "frames": rig.frames,
        "warmup": rig.warmup,
        "setup_s": rounded(rig.setup_s, 2),
        "bends": [str(b) for b in measured.bends],  # as on the last bends-on frame
        "fps": rounded(1000.0 / on["mean"], 2),
        "fps_no_bends": rounded(1000.0 / off["mean"], 2),
        "frame_ms": on,
        "jitter_ms": rounded(on["p99"] - on["p50"]),
        "audio_to_frame_ms": {**summary(times["latency"]), "feature_hop_ms": measured.feature_hop_s * 1000},
        "step_ms": step,
        "stages_ms": stages,
        "stage_sum_ms": rounded(sum(stages[k]["p50"] for k in STAGE_KEYS)),
        "consistency": _consistency(measured.stages, step, on),
        "bend_overhead": _bend_overhead(opts.bends, on, off),
        "bend_changes": _bend_changes(churn, on, before, after),
        "speedup_over_eager": _speedup(times["eager"], on) if rig.eager is not None else None,
        "peer": _peer(rig.peer, times) if rig.peer is not None else None,
        "compiles": _compiles(measured.measuring, after) if rig.pipe.backend == "compile" else None,
        "traces": _traces(measured.measuring, after) if rig.pipe.backend == "trace" else None,
        "last_frame_finite": measured.finite,
        "notes": NOTES,
    }


def _consistency(stages: dict[str, list[float]], step: dict, on: dict) -> dict:
    """The replica's stages against the untimed step and the end-to-end frame (see NOTES)."""
    model_part = [e + u + d for e, u, d in zip(stages["encode"], stages["unet"], stages["decode"])]
    replica_total = [m + u for m, u in zip(model_part, stages["upload"])]
    model_p50, total_p50 = summary(model_part)["p50"], summary(replica_total)["p50"]
    return {
        "replica_model_ms_p50": model_p50,
        "step_ms_p50": step["p50"],
        "step_over_replica": rounded(step["p50"] / model_p50),
        "replica_total_ms_p50": total_p50,
        "frame_ms_p50": on["p50"],
        "frame_over_replica": rounded(on["p50"] / total_p50),
        "tolerance": CONSISTENCY_TOLERANCE,
        "consistent": bool(abs(step["p50"] / model_p50 - 1.0) <= CONSISTENCY_TOLERANCE
                           and abs(on["p50"] / total_p50 - 1.0) <= CONSISTENCY_TOLERANCE),
    }


def _bend_overhead(bends: int, on: dict, off: dict) -> dict:
    ratio = on["p50"] / off["p50"]
    return {"bends": bends, "on_ms_p50": on["p50"], "off_ms_p50": off["p50"], "ratio": rounded(ratio),
            "overhead_pct": rounded((ratio - 1.0) * 100.0, 2), "off_ms": off}


def _bend_changes(churn: dict, on: dict, before: dict, after: dict) -> dict:
    churn_ratio = churn["max"] / churn["p50"]
    return {
        "frames": churn["n"],
        "median_ms": churn["p50"],
        "max_ms": churn["max"],
        "max_over_median": rounded(churn_ratio),
        "max_over_bends_on_median": rounded(churn["max"] / on["p50"]),
        "target_max_over_median": CHURN_TARGET,
        "within_target": bool(churn_ratio < CHURN_TARGET),
        "hooks_before": before["hooks"],
        "hooks_after": after["hooks"],
        "unet_forward_hooks_before": before["unet_hooks"],
        "unet_forward_hooks_after": after["unet_hooks"],
        "hooks_unchanged": before["hooks"] == after["hooks"] and before["unet_hooks"] == after["unet_hooks"],
    }


def _compiles(before: dict, after: dict) -> dict:
    return {"before_measurement": before["compiles"], "after_measurement": after["compiles"],
            "recompiles_during_measurement": after["compiles"]["frames"] - before["compiles"]["frames"]}


def _traces(before: dict, after: dict) -> dict:
    return {"before_measurement": before["traces"], "after_measurement": after["traces"],
            "retraces_during_measurement": after["traces"] - before["traces"]}


def _speedup(eager_seconds: list[float], backend: dict) -> dict:
    eager = summary(eager_seconds)
    return {"eager_ms_p50": eager["p50"], "backend_ms_p50": backend["p50"],
            "ratio": rounded(eager["p50"] / backend["p50"]), "eager_ms": eager}


def _peer(peer, times: dict[str, list[float]]) -> dict:
    """The peer's frame against netbend's ``pipe.step()`` (bends on and off), same cycles."""
    frame, on, off = summary(times["peer"]), summary(times["step_on"]), summary(times["step_off"])
    return {**peer.describe(), "frame_ms": frame, "netbend_step_ms_p50": on["p50"],
            "netbend_step_no_bends_ms_p50": off["p50"], "ratio": rounded(frame["p50"] / on["p50"]),
            "ratio_no_bends": rounded(frame["p50"] / off["p50"])}
