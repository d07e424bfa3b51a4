"""`netbend render --ray` and `netbend sweep --ray`: renders and sweeps on a Ray cluster.

A walk's frames depend only on their index and the audio's features, so a walk render is
cut into chunks of frames that Ray actors render in parallel. Each actor loads the model
once (one GPU per actor where the cluster has GPUs, one CPU elsewhere) and keeps it for
every chunk it is given. Feedback renders (chain, stream, takes) need each frame's
predecessor, so each is one actor task that renders its frames in order. Several renders
in one call share the actors; the cells of a sweep are spread over them the same way.

Frames stream back to this process (the driver) one at a time and are written, atomically,
into the same frames folder, under the same names and the same manifest, as a local render
(`live.cli.render`): a lost worker's unfinished frames go back in the queue, and a killed
driver or a re-run, on Ray or not, resumes from the frames on disk. The video is encoded
here at the end, with the audio. The actors run the local render's own frame code
(`AudioFrames`, `TakeFrames`), so the frames are the local render's bit for bit. The
workers, their queue and the cluster connection are in `live.cli.ray_workers`.
"""
from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from live.cli.render import RenderError, RenderJob, RenderResult
from live.cli.ray_workers import (Cluster, Pool, Progress, Work, Worker, discard, lost_errors, pool_for,
                                  require_ray, run, worker_error)

log = logging.getLogger("netbend.cluster")

DEFAULT_CHUNK = 8  # frames per actor call; see scripts/ray_bench.py for what smaller chunks cost


# --- renders -----------------------------------------------------------------------------


@dataclass
class RayRender:
    """One render of the call, as the driver keeps it."""
    key: str
    job: RenderJob
    output: Path
    spec: tuple  # (job, preset, audio) as sent to the workers; its ObjectRef once in the store
    feedback: bool  # chain, stream or take: one task renders every frame in order
    audio: Optional[tuple]  # (samples, rate) muxed under the video
    manifest: dict = field(default_factory=dict)
    frames_dir: Optional[Path] = None
    done: set = field(default_factory=set)
    rendered: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    on_frame: Optional[Callable] = None

    @property
    def total(self) -> int:
        return int(self.manifest["frames"])

    def write(self, i: int, image: np.ndarray, worker: Worker) -> None:
        from engine.images import write_png
        from live.cli.render import frame_path

        write_png(image, frame_path(self.frames_dir, i))
        with self.lock:
            self.done.add(i)
            self.rendered += 1
        if self.on_frame is not None:
            self.on_frame(self, i, worker)

    def prefix(self) -> int:
        """Frames 0 .. n - 1 all on disk: where a feedback render resumes."""
        n = 0
        while n in self.done:
            n += 1
        return n


class FrameChunk:
    """Frames of a walk render on one worker."""

    def __init__(self, render: RayRender, indices: list[int]):
        self.render, self.indices = render, indices

    def start(self, worker: Worker):
        r = self.render
        return worker.actor.frames.remote(r.key, r.spec, [i for i in self.indices if i not in r.done])

    def take(self, value, worker: Worker) -> None:
        self.render.write(*value, worker)

    def rest(self) -> Optional["FrameChunk"]:
        left = [i for i in self.indices if i not in self.render.done]
        return FrameChunk(self.render, left) if left else None


class FeedbackRun(FrameChunk):
    """A whole chain, stream or take render on one worker, resumed from the frames on disk."""

    def __init__(self, render: RayRender):
        super().__init__(render, list(range(render.total)))

    def start(self, worker: Worker):
        from PIL import Image

        from live.cli.render import frame_path

        r = self.render
        done = r.prefix()
        last = None
        if done:
            with Image.open(frame_path(r.frames_dir, done - 1)) as im:
                last = np.asarray(im.convert("RGB"))
        return worker.actor.feedback.remote(r.key, r.spec, done, last)

    def rest(self) -> Optional["FeedbackRun"]:
        return self if self.render.prefix() < self.render.total else None


def prepare_render(job: RenderJob, key: str) -> RayRender:
    """What the driver checks and reads before any worker starts: the same checks as a
    local render, the preset and the audio (sent to the workers with the job)."""
    from live.cli.render import check_job, load_job_audio
    from live.control.presets import load_preset

    output = check_job(job)
    if job.take is not None:
        from live.control.takes import load_take

        job = replace(job, take=Path(job.take).resolve())
        take = load_take(job.take)
        audio = (take.audio, take.audio_rate) if take.audio is not None and len(take.audio) else None
        return RayRender(key, job, output, (job, None, None), True, audio)
    preset = load_preset(job.preset)
    samples, rate, name = load_job_audio(job)
    if len(samples) == 0:
        raise RenderError(f"{name}: no audio in the selected span")
    return RayRender(key, job, output, (job, preset, (samples, rate)), preset.pipeline != "walk", (samples, rate))


def render_on_ray(jobs: Sequence[RenderJob], address: str = "auto", chunk: int = DEFAULT_CHUNK,
                  workers: Optional[int] = None, progress: bool = True,
                  on_frame: Optional[Callable] = None) -> list[RenderResult]:
    """Render ``jobs`` on the Ray cluster at ``address``; one RenderResult per job, in order.
    ``on_frame(render, index, worker)`` is called after each frame is written."""
    from live.cli.render import check_manifest, frame_path, frames_folder

    if chunk < 1:
        raise RenderError(f"--ray-chunk must be at least 1 frame, got {chunk}")
    require_ray()
    renders = [prepare_render(job, uuid.uuid4().hex) for job in jobs]
    outputs = [r.output.resolve() for r in renders]
    if len(set(outputs)) != len(outputs):
        raise RenderError("two renders of this call write the same output; give each its own")
    with Cluster(address) as cluster:
        pool = pool_for(cluster, workers, device=jobs[0].device if jobs else None)
        ray = require_ray()
        try:
            for r in renders:
                r.spec = ray.put(r.spec)
                r.on_frame = on_frame
            _open(pool, renders)
            for r in renders:
                r.frames_dir = frames_folder(r.job, r.output)
                r.frames_dir.mkdir(parents=True, exist_ok=True)
                check_manifest(r.frames_dir, r.manifest)
                r.done = {i for i in range(r.total) if frame_path(r.frames_dir, i).exists()}
            items = [FeedbackRun(r) for r in renders if r.feedback and r.prefix() < r.total]
            for r in renders:
                if not r.feedback:
                    missing = [i for i in range(r.total) if i not in r.done]
                    items += [FrameChunk(r, missing[a:a + chunk]) for a in range(0, len(missing), chunk)]
            bar = Progress(sum(r.total for r in renders), sum(min(len(r.done), r.total) for r in renders),
                           len(pool.workers), progress)
            started = time.perf_counter()  # as a local render counts: the frames, not the start or the video
            try:
                run(pool, Work(items), bar)
            finally:
                bar.close()
            seconds = time.perf_counter() - started
        except BaseException:
            discard(pool)
            raise
        pool.release([r.key for r in renders])
    return [finish_render(r, seconds) for r in renders]


def _open(pool: Pool, renders: list[RayRender]) -> None:
    """Every walk opened on every worker (each loads the model now, and a worker without
    it is named before any frame is made); a feedback render on one worker, for its
    manifest (on the next one if that worker is lost meanwhile)."""
    ray = require_ray()
    lost = lost_errors()
    for n, r in enumerate(renders):
        workers = pool.alive()
        order = workers[n % len(workers):] + workers[:n % len(workers)]
        targets = order if not r.feedback else order[:1]
        tried = list(targets)
        while targets and not r.manifest:
            calls = [(w, w.actor.open.remote(r.key, r.spec)) for w in targets]
            for w, ref in calls:
                try:
                    r.manifest = ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    raise worker_error(e, w) from None
                except lost:
                    log.warning("ray: worker %s lost while loading %s", w.name, r.job.output)
                    w.recover()
            targets = [w for w in order if w.alive and w not in tried][:1] if not r.manifest else []
            tried += targets
        if not r.manifest:
            raise RenderError("every Ray worker was lost while loading the model; run the same command again")


def finish_render(r: RayRender, seconds: float) -> RenderResult:
    """Every frame on disk: the MP4, as a local render encodes it."""
    from live.cli.render import encode_frames, frame_path

    missing = [i for i in range(r.total) if not frame_path(r.frames_dir, i).exists()]
    if missing:
        raise RenderError(f"{r.frames_dir}: frames {missing[:5]}... are missing after the render; run it again")
    encode_frames(r.output, r.frames_dir, r.total, r.manifest["width"], r.manifest["height"], r.job.fps, r.audio)
    if r.job.frames_dir is None:
        shutil.rmtree(r.frames_dir, ignore_errors=True)
    audio_seconds = len(r.audio[0]) / r.audio[1] if r.audio is not None else r.total / r.job.fps
    return RenderResult(r.output, r.total, r.rendered, seconds, audio_seconds)


# --- sweeps ------------------------------------------------------------------------------


class CellChunk:
    """Cells of a sweep on one worker."""

    def __init__(self, key: str, spec, cells: list[tuple[int, list]], images: dict):
        self.key, self.spec, self.cells, self.images = key, spec, cells, images

    def start(self, worker: Worker):
        return worker.actor.cells.remote(self.key, self.spec, [c for c in self.cells if c[0] not in self.images])

    def take(self, value, worker: Worker) -> None:
        index, image = value
        self.images[index] = image

    def rest(self) -> Optional["CellChunk"]:
        left = [c for c in self.cells if c[0] not in self.images]
        return CellChunk(self.key, self.spec, left, self.images) if left else None


def sweep_on_ray(job, address: str = "auto", workers: Optional[int] = None, progress: bool = True) -> Path:
    """``netbend sweep`` with its cells computed on Ray workers; the same sheet as locally."""
    from PIL import Image

    from live.cli.sweep import plan_sweep, write_sheet

    require_ray()
    plan = plan_sweep(job)
    cells = list(enumerate(plan.cells))
    with Cluster(address) as cluster:
        pool = pool_for(cluster, workers, device=job.device)
        ray = require_ray()
        key = uuid.uuid4().hex
        try:
            spec = ray.put((job, plan))
            images: dict[int, np.ndarray] = {}
            n = len(pool.workers)
            size = -(-len(cells) // n)  # one chunk per worker: every cell costs the same
            items = [CellChunk(key, spec, cells[a:a + size], images) for a in range(0, len(cells), size)]
            bar = Progress(len(cells), 0, n, progress, unit="cell")
            try:
                run(pool, Work(items), bar)
            finally:
                bar.close()
        except BaseException:
            discard(pool)
            raise
        pool.release([key])
    return write_sheet(job, plan, [Image.fromarray(images[i]) for i in range(len(cells))])
