"""`netbend render`: an audio file (or the built-in demo) to an H.264 MP4 with the audio
muxed under it, as the paper made its videos: one frame per 50 ms window by default, each
window's features mapped into the preset's bend params.

Frames go to a frames folder as numbered PNGs (written atomically) before the video is
encoded, so an interrupted render resumes where it stopped: frames already on disk are
kept and the pipeline continues from the last one. A manifest in the folder records what
the frames were rendered with; a folder from a different render is refused rather than
mixed in. The MP4 itself is written to a temporary name and renamed on success, so a
failed render never leaves a half-written video.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

log = logging.getLogger("netbend.render")

MANIFEST = "render.json"


class RenderError(ValueError):
    """A render that cannot start: the message says what was wrong and what is allowed."""


def parse_size(text: Optional[str]) -> Optional[tuple[int, int]]:
    """'WxH' -> (width, height), multiples of 8."""
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise RenderError(f"bad --size {text!r}; write WIDTHxHEIGHT, e.g. 512x512") from None
    if w < 8 or h < 8 or w % 8 or h % 8:
        raise RenderError(f"bad --size {text!r}; width and height must be multiples of 8, at least 8")
    return w, h


def parse_span(text: Optional[str]) -> tuple[float, Optional[float]]:
    """'A:B' seconds -> (start, end); either side may be empty ('30:', ':10')."""
    if not text:
        return 0.0, None
    try:
        a, b = text.split(":")
        start = float(a) if a.strip() else 0.0
        end = float(b) if b.strip() else None
    except ValueError:
        raise RenderError(f"bad --seconds {text!r}; write START:END in seconds, e.g. 10:25 or 30:") from None
    if start < 0 or (end is not None and end <= start) or not math.isfinite(start):
        raise RenderError(f"bad --seconds {text!r}; need 0 <= START < END")
    return start, end


@dataclass
class RenderJob:
    output: Path
    preset: str = "default"
    audio: Optional[Path] = None  # None: the built-in demo track
    model: Optional[str] = None  # overrides the preset's model
    fps: float = 20.0  # one frame per 50 ms window, as in the paper
    size: Optional[tuple[int, int]] = None  # (width, height), overrides the preset's
    span: tuple[float, Optional[float]] = (0.0, None)
    frames_dir: Optional[Path] = None  # kept when given; a temporary one is removed after
    allow_pickle: bool = False
    device: Optional[str] = None
    progress: bool = True


@dataclass
class RenderResult:
    output: Path
    frames: int
    rendered: int  # frames computed in this run (the rest were resumed from disk)
    seconds: float  # wall time spent rendering frames
    audio_seconds: float

    @property
    def fps(self) -> float:
        return self.rendered / self.seconds if self.seconds > 0 else float("nan")


def _load_audio(job: RenderJob) -> tuple[np.ndarray, int, str]:
    from live.media import load_audio

    if job.audio is None:
        from engine.demo_audio import demo_audio, DEMO_RATE

        samples, rate = demo_audio(), DEMO_RATE
        start, end = job.span
        a, b = int(start * rate), (len(samples) if end is None else int(end * rate))
        if a >= len(samples) or b > len(samples):
            raise RenderError(f"--seconds {start}:{end} is outside the demo track ({len(samples) / rate:.1f} s)")
        return samples[a:b], rate, "built-in demo"
    start, end = job.span
    samples, rate = load_audio(job.audio, start=start, end=end)
    return samples, rate, str(job.audio)


def _fingerprint(samples: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(samples).tobytes()).hexdigest()[:16]


def _check_manifest(frames_dir: Path, manifest: dict) -> None:
    path = frames_dir / MANIFEST
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if old != manifest:
            raise RenderError(
                f"{frames_dir} holds frames of a different render (its {MANIFEST} does not match this one's "
                "preset, model, size, fps or audio); pass another --frames-dir or delete that folder")
    else:
        if any(frames_dir.glob("frame_*.png")):
            raise RenderError(f"{frames_dir} already holds frames but no {MANIFEST}; pass an empty --frames-dir")
        tmp = path.with_name(f".{MANIFEST}.tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        tmp.replace(path)


def _frame_path(frames_dir: Path, i: int) -> Path:
    return frames_dir / f"frame_{i:06d}.png"


def render(job: RenderJob) -> RenderResult:
    """Render ``job``; raises RenderError / PresetError / MediaError / ModelNotFoundError
    with a clear message before anything is written when an input is wrong."""
    import torch
    from tqdm import tqdm

    from engine.features import analyze
    from engine.images import load_image, save_png, to_uint8
    from engine.models import load_model
    from engine.pipelines import MappedBends, make_pipeline
    from live.media import VideoWriter
    from live.presets import load_preset

    if not (math.isfinite(job.fps) and 0 < job.fps <= 240):
        raise RenderError(f"bad --fps {job.fps}; allowed: 0 < fps <= 240")
    output = Path(job.output)
    if output.suffix.lower() != ".mp4":
        raise RenderError(f"output {str(output)!r} must end in .mp4")
    if not output.parent.exists():
        raise RenderError(f"output folder {str(output.parent)!r} does not exist")
    preset = load_preset(job.preset)
    samples, rate, audio_name = _load_audio(job)
    duration = len(samples) / rate
    if duration <= 0:
        raise RenderError(f"{audio_name}: no audio in the selected span")
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    table = analyze(mono, rate, fps=job.fps)
    total = len(table)  # ceil(duration * fps)

    model_name = job.model or preset.model
    model = load_model(model_name, vae=preset.vae, device=job.device, allow_pickle=job.allow_pickle)
    config = preset.config()
    if job.size is not None:
        config.width, config.height = job.size
    pipe = make_pipeline(preset.pipeline, model, config)
    height, width = pipe.size
    driven = MappedBends(preset.bends, preset.mappings)
    pipe.bends = driven.bends  # validates every layer against this model before any work

    keep_frames = job.frames_dir is not None
    frames_dir = Path(job.frames_dir) if keep_frames else output.with_name(f".{output.name}.frames")
    frames_dir.mkdir(parents=True, exist_ok=True)
    _check_manifest(frames_dir, {
        "preset": preset.to_dict(), "model": model_name, "width": width, "height": height,
        "fps": job.fps, "frames": total, "audio": _fingerprint(samples),
    })

    done = 0
    while done < total and _frame_path(frames_dir, done).exists():
        done += 1
    dt = 1.0 / job.fps
    for i in range(done):  # replay the mappings' smoothing up to where we resume
        driven.update(table.frame(i), dt)
    if done:
        last = load_image(_frame_path(frames_dir, done - 1))
        pipe.resume(last.to(model.device, model.dtype), done)
        log.info("resuming at frame %d of %d from %s", done, total, frames_dir)

    started = time.perf_counter()
    bar = tqdm(total=total, initial=done, unit="frame", desc="render", disable=not job.progress)
    with torch.inference_mode():
        for i in range(done, total):
            pipe.bends = driven.update(table.frame(i), dt)
            save_png(pipe.frame(i, total), _frame_path(frames_dir, i))
            bar.update(1)
    bar.close()
    elapsed = time.perf_counter() - started

    with VideoWriter(output, width, height, job.fps, audio=(samples, rate)) as video:
        for i in range(total):
            video.write(to_uint8(load_image(_frame_path(frames_dir, i))))
    if not keep_frames:
        shutil.rmtree(frames_dir, ignore_errors=True)
    return RenderResult(output, total, total - done, elapsed, duration)
