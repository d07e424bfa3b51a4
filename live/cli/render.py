"""`netbend render`: an audio file (or the built-in demo) to an H.264 MP4 with the audio
muxed under it, as the paper made its videos: one frame per 50 ms window by default, each
window's features mapped into the preset's bend params.

Frames go to a frames folder as numbered PNGs (written atomically) before the video is
encoded, so an interrupted render resumes where it stopped: frames already on disk are
kept and the pipeline continues from the last one. A manifest in the folder records what
the frames were rendered with; a folder from a different render is refused rather than
mixed in. The MP4 (live.cli.video) never exists half-written.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np

from engine.atomic import write_atomically
from live.checks import FRAME_SIZE, check_backend

log = logging.getLogger("netbend.render")

MANIFEST = "render.json"


class RenderError(ValueError):
    """A render that cannot start: the message says what was wrong and what is allowed."""


_FRAME_SIZE = replace(FRAME_SIZE, error=RenderError)


def parse_frame_size(text: Optional[str]) -> Optional[tuple[int, int]]:
    """--size of the frames render, live, sweep and bench make: 'WxH' -> (width, height)
    under ``live.checks.FRAME_SIZE``; RenderError otherwise."""
    return _FRAME_SIZE.parse(text)


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
    return _check_span((start, end), repr(text))


def _check_span(span, shown: Optional[str] = None) -> tuple[float, Optional[float]]:
    """(start, end) seconds with 0 <= start < end (end None: to the end of the audio)."""
    start, end = (float(span[0]), None if span[1] is None else float(span[1]))
    if start < 0 or (end is not None and end <= start) or not math.isfinite(start):
        shown = shown or f"{start:g}:{'' if end is None else f'{end:g}'}"
        raise RenderError(f"bad --seconds {shown}; need 0 <= START < END")
    return start, end


@dataclass
class RenderJob:
    output: Path  # the .mp4 (checked by check_job: a job made for several files starts as their folder)
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
    take: Optional[Path] = None  # render a rehearsal take instead of an audio file
    steps: Optional[int] = None  # take renders: denoising steps (more than live for full quality)
    backend: str = "auto"  # how the U-Net runs (engine.pipeline_base.PIPELINE_BACKENDS)
    init_image: Optional[Path] = None  # chain and stream: frame 0 grows from this image (img2img)
    prompts: Optional[str] = None  # a prompt schedule "0:a|12.5:b" (seconds): replaces the preset's prompt

    def __post_init__(self) -> None:
        """Checks that need no file or model: a wrong field fails when the job is made, named."""
        if not isinstance(self.preset, str) or not self.preset.strip():
            raise RenderError(f"--preset must be a preset name or .toml path, got {self.preset!r}")
        if isinstance(self.fps, bool) or not (isinstance(self.fps, (int, float)) and 0 < self.fps <= 240):
            raise RenderError(f"bad --fps {self.fps}; allowed: 0 < fps <= 240")
        self.size = _FRAME_SIZE.check(self.size, "--size")
        self.span = _check_span(self.span)
        if self.take is not None and self.audio is not None:
            raise RenderError("give an AUDIO file or --take, not both (a take renders with its own recorded audio)")
        if self.steps is not None and not (type(self.steps) is int and 1 <= self.steps <= 50):
            raise RenderError(f"--steps must be 1..50, got {self.steps}")
        check_backend(self.backend, RenderError)
        if self.prompts is not None:
            from engine.prompts import PromptSchedule

            try:
                PromptSchedule.parse(self.prompts)
            except ValueError as e:
                raise RenderError(f"bad --prompts: {e}") from None


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


def load_job_audio(job: RenderJob) -> tuple[np.ndarray, int, str]:
    """The job's audio span as (samples, rate, a name for messages)."""
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


def check_manifest(frames_dir: Path, manifest: dict) -> None:
    """Write the manifest into a new frames folder; refuse a folder of another render."""
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
        write_atomically(path, json.dumps(manifest, indent=2, sort_keys=True))


def frame_path(frames_dir: Path, i: int) -> Path:
    return frames_dir / f"frame_{i:06d}.png"


def frames_folder(job: RenderJob, output: Path) -> Path:
    """``--frames-dir``, or a hidden folder beside the output (removed after success)."""
    return Path(job.frames_dir) if job.frames_dir is not None else output.with_name(f".{output.name}.frames")


def check_job(job: RenderJob) -> Path:
    """The job's output path, once its files pass (its fields were checked when it was made)."""
    output = Path(job.output)
    if output.suffix.lower() != ".mp4":
        raise RenderError(f"output {str(output)!r} must end in .mp4")
    if not output.parent.exists():
        raise RenderError(f"output folder {str(output.parent)!r} does not exist")
    if output.is_dir():
        raise RenderError(f"output {str(output)!r} is a folder; give the path of the .mp4 to write")
    if job.init_image is not None and not Path(job.init_image).is_file():
        raise RenderError(f"--init-image {str(job.init_image)!r} is not a file")
    return output


def render(job: RenderJob) -> RenderResult:
    """Render ``job``; raises RenderError / PresetError / MediaError / ModelNotFoundError
    / TakeError with a clear message before anything is written when an input is wrong."""
    output = check_job(job)
    source = TakeFrames(job) if job.take is not None else AudioFrames(job)
    return _render_frames(job, output, source)


def _with_prompts(config, prompts: str):
    """The config with a prompt schedule from the command line in place of its prompt(s)."""
    import dataclasses

    from engine.prompts import PromptSchedule

    others = {"prompt_to": None} if hasattr(config, "prompt_to") else {}
    if hasattr(config, "prompt_after_first"):
        others["prompt_after_first"] = None
    return dataclasses.replace(config, prompts=PromptSchedule.parse(prompts).to_list(), **others)


class AudioFrames:
    """Frames of a preset's pipeline driven by an audio file's features (the paper's way).

    ``preset`` and ``audio`` (samples, rate), when given, stand for the job's preset and
    audio files (a Ray worker gets them from the driver); ``load`` stands for load_model
    (a worker's shares one model between jobs)."""

    def __init__(self, job: RenderJob, preset=None, audio: Optional[tuple[np.ndarray, int]] = None, load=None):
        from engine.features import analyze
        from live.control.presets import load_preset, load_preset_model

        preset = preset if preset is not None else load_preset(job.preset)
        self.samples, self.rate, audio_name = (*audio, "the audio") if audio is not None else load_job_audio(job)
        if len(self.samples) == 0:
            raise RenderError(f"{audio_name}: no audio in the selected span")
        # the model code (diffusers: seconds to import) only once the preset and audio are good
        from engine.mappings import MappedBends
        from engine.models import load_model
        from engine.pipelines import make_pipeline

        load = load or load_model
        mono = self.samples.mean(axis=1) if self.samples.ndim == 2 else self.samples
        self.table = analyze(mono, self.rate, fps=job.fps, taper=preset.taper)  # the preset's [features] window
        self.total = len(self.table)  # ceil(duration * fps)
        if job.init_image is not None and preset.pipeline == "walk":
            raise RenderError(f"--init-image is for chain and stream presets; {preset.name!r} is a walk "
                              "(txt2img from noise)")
        model, preset = load_preset_model(preset, job.model, load=load, device=job.device,
                                          allow_pickle=job.allow_pickle)
        model_name = model.name
        config = preset.config()
        if job.size is not None:
            config.width, config.height = job.size
        if job.prompts is not None:
            config = _with_prompts(config, job.prompts)
        self.pipe = make_pipeline(preset.pipeline, model, config, backend=job.backend)
        self.pipe.fps = job.fps  # the clock of a prompt schedule
        if job.init_image is not None:
            from engine.images import load_image

            self.pipe.prepare(init_image=load_image(job.init_image))
        self.height, self.width = self.pipe.size
        self.preset = preset
        self.driven = MappedBends(preset.bends, preset.mappings)
        self.pipe.bends = self.driven.bends  # validates every layer against this model before any work
        self.next = 0  # the frame the mappings' smoothing state stands before
        self.dt = 1.0 / job.fps
        self.manifest = {"preset": preset.to_dict(), "model": model_name, "width": self.width,
                         "height": self.height, "fps": job.fps, "frames": self.total,
                         "audio": hashlib.sha1(np.ascontiguousarray(self.samples).tobytes()).hexdigest()[:16]}
        if job.init_image is not None:
            self.manifest["init_image"] = hashlib.sha1(Path(job.init_image).read_bytes()).hexdigest()[:16]
        if job.prompts is not None:
            self.manifest["prompts"] = job.prompts

    @property
    def audio(self):
        return (self.samples, self.rate)

    def seek(self, i: int) -> None:
        """Bring the mappings' smoothing state to just before frame i, replaying the
        features from the start when i lies behind it (cheap: numpy only), so that walk
        frames computed in any order get the params of an in-order render."""
        from engine.mappings import MappedBends

        if i < self.next:
            self.driven, self.next = MappedBends(self.preset.bends, self.preset.mappings), 0
        for k in range(self.next, i):
            self.driven.update(self.table.frame(k), self.dt)
        self.next = i

    def resume(self, done: int, last) -> None:
        self.seek(done)  # replay the mappings' smoothing up to where we resume
        self.pipe.resume(last.to(self.pipe.model.device, self.pipe.model.dtype), done)

    def frame(self, i: int):
        self.seek(i)
        self.pipe.bends = self.driven.update(self.table.frame(i), self.dt)
        self.next = i + 1
        return self.pipe.frame(i, self.total)


class TakeFrames:
    """Frames of a recorded rehearsal take, re-rendered offline: the take's commands are
    applied by the same Show the live app runs, on a clock that advances one frame at a
    time, against the take's recorded feature stream. ``load`` stands for load_model."""

    def __init__(self, job: RenderJob, load=None):
        from engine.models import load_model
        from engine.stream import StreamConfig, StreamPipeline
        from live.show.disk import DiskWorker
        from live.show.show import Show
        from live.control.takes import load_take

        take = load_take(job.take)
        self.take = take
        state = take.start_state
        self.total = max(1, math.ceil(take.duration * job.fps))
        model_name = job.model or take.model or "sd-turbo"
        model = (load or load_model)(model_name, device=job.device, allow_pickle=job.allow_pickle)
        size = job.size or take.size
        config = StreamConfig(prompt=state.prompt, strength=state.strength, seed=state.seed,
                              steps=job.steps or 1, width=size[0] if size else None, height=size[1] if size else None)
        pipe = StreamPipeline(model, config, backend=job.backend)
        pipe.prepare()
        self.height, self.width = pipe.size
        self.t = 0.0
        clock = lambda: self.t  # noqa: E731 - the show's clock is the frame time
        # file work inline: a preset recalled in the take applies at the same frame on every render
        self.show = Show(pipe, state, features=self, model_name=model_name, clock=clock, disk=DiskWorker(inline=True))
        pipe.bends = state.bends
        self.pending = list(take.commands)
        self.dt = 1.0 / job.fps
        self.last = None
        self.manifest = {"take": str(Path(job.take).resolve()), "commands": len(take.commands), "model": model_name,
                         "width": self.width, "height": self.height, "fps": job.fps, "frames": self.total,
                         "steps": config.steps}

    @property
    def audio(self):
        if self.take.audio is not None and len(self.take.audio):
            return (self.take.audio, self.take.audio_rate)
        return None

    def latest(self):  # the Show's feature source: the take's features at the frame time
        from engine.features import FeatureFrame

        return FeatureFrame(self.t, self.take.features_at(self.t))

    def _advance(self, i: int) -> None:
        self.t = i * self.dt
        while self.pending and self.pending[0].time <= self.t:
            c = self.pending.pop(0)
            self.show.submit(type(c)(c.address, c.args, c.time, "replay"))

    def resume(self, done: int, last) -> None:
        for i in range(done):
            self._advance(i)
            self.show.apply_pending()  # the commands of the frames already on disk
        self.last = last
        self.show.pipe.resume(last.to(self.show.pipe.model.device, self.show.pipe.model.dtype), done)

    def frame(self, i: int):
        self._advance(i)
        out = self.show.frame()
        if out is not None:
            self.last = self.show.last_good
        elif self.last is None:  # frozen (or failed) from the very start: show the first frame
            self.last = self.show.pipe.image
        return self.last


def _render_frames(job: RenderJob, output: Path, source) -> RenderResult:
    """Frames to the frames folder (resuming from what is there), then the MP4."""
    import torch
    from tqdm import tqdm

    import engine.images as images

    total = source.total
    keep_frames = job.frames_dir is not None
    frames_dir = frames_folder(job, output)
    frames_dir.mkdir(parents=True, exist_ok=True)
    check_manifest(frames_dir, source.manifest)

    done = 0
    while done < total and frame_path(frames_dir, done).exists():
        done += 1
    if done:
        source.resume(done, images.load_image(frame_path(frames_dir, done - 1)))
        log.info("resuming at frame %d of %d from %s", done, total, frames_dir)

    started = time.perf_counter()
    bar = tqdm(total=total, initial=done, unit="frame", desc="render", disable=not job.progress)
    with torch.inference_mode():
        for i in range(done, total):
            images.save_png(source.frame(i), frame_path(frames_dir, i))
            bar.update(1)
    bar.close()
    elapsed = time.perf_counter() - started

    audio = source.audio
    encode_frames(output, frames_dir, total, source.width, source.height, job.fps, audio)
    if not keep_frames:
        shutil.rmtree(frames_dir, ignore_errors=True)
    seconds = len(audio[0]) / audio[1] if audio is not None else total / job.fps
    return RenderResult(output, total, total - done, elapsed, seconds)


def encode_frames(output: Path, frames_dir: Path, total: int, width: int, height: int, fps: float,
                  audio: Optional[tuple[np.ndarray, int]]) -> None:
    """Frames 0 .. total - 1 of the folder into the MP4, with the audio under them."""
    from PIL import Image

    from live.cli.video import VideoWriter

    with VideoWriter(output, width, height, fps, audio=audio) as video:
        for i in range(total):
            with Image.open(frame_path(frames_dir, i)) as im:
                video.write(np.asarray(im.convert("RGB")))
