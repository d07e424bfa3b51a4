#!/usr/bin/env python
"""Frames per second of a walk render: one local process against Ray with 1 and 2
workers, and what the chunk size (walk frames per actor call) costs.

    python scripts/ray_bench.py [--model tiny] [--frames 64] [--backend eager] [--steps 4] [--size 64x64]

Every figure is a frames-only rate, counted as `netbend render` counts it: from the first
frame to the last, without the model load, the workers' start or the video encode (the
start is printed apart, as a one-off cost of a Ray call). Each Ray worker is one CPU and
one torch thread, as is the local process here, so "1 worker / local" is the cost of
Ray's transport alone, and "2 workers / local" what the second core buys. A local Ray
cluster of max(--workers) CPUs is started and stopped by the script.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # helpers_ray: the local cluster the tests start too


def walk_preset(folder: Path, steps: int) -> Path:
    """The paper's piano walk with fewer DDIM steps (its bend moved inside them)."""
    from live.control.presets import load_preset, save_preset

    paper = load_preset("paper-piano-mesh")
    quick = replace(paper, name="bench-walk", settings={**paper.settings, "steps": steps},
                    bends=[replace(b, step=steps - 1) for b in paper.bends])
    return save_preset(quick, folder / "bench-walk.toml")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--frames", type=int, default=64, help="frames per measured render (default 64)")
    parser.add_argument("--steps", type=int, default=4, help="DDIM steps per walk frame (default 4)")
    parser.add_argument("--size", default=None, help="WIDTHxHEIGHT (default: the model's native size)")
    parser.add_argument("--backend", default="eager",
                        help="the renders' --backend (default eager: a local render loads its model and, on "
                             "trace, traces it again every run, where a Ray worker keeps both, which would "
                             "flatter Ray)")
    parser.add_argument("--workers", default="1,2", help="Ray worker counts to measure (default 1,2)")
    parser.add_argument("--chunks", default="1,4,16,32", help="chunk sizes to measure with the most workers")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per figure; medians (default 3)")
    parser.add_argument("--json", help="also write the figures here")
    return parser.parse_args(argv)


class Jobs:
    """Render jobs of the bench walk over a tone, each into its own video and frames folder."""

    def __init__(self, args: argparse.Namespace, folder: Path):
        import numpy as np

        from live.media import write_audio_wav

        self.args, self.folder = args, folder
        self.preset = walk_preset(folder, args.steps)
        rate, seconds = 22050, args.frames / 20.0
        t = np.arange(int(seconds * rate)) / rate
        write_audio_wav(folder / "tone.wav", (0.4 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)
        self._runs = itertools.count()

    def __call__(self, frames: int | None = None):
        from live.cli.render import RenderJob, parse_frame_size

        frames, n = frames or self.args.frames, next(self._runs)
        return RenderJob(output=self.folder / f"r{n}.mp4", audio=self.folder / "tone.wav", model=self.args.model,
                         preset=str(self.preset), size=parse_frame_size(self.args.size), span=(0.0, frames / 20.0),
                         frames_dir=self.folder / f"f{n}", backend=self.args.backend, progress=False)


@dataclass
class Figures:
    """What was measured: frames/s of every round, and each worker count's start."""

    local: list[float] = field(default_factory=list)
    ray: dict[int, list[float]] = field(default_factory=dict)
    chunks: dict[int, list[float]] = field(default_factory=dict)
    starts: dict[int, float] = field(default_factory=dict)


def measure(args: argparse.Namespace, job: Jobs, workers: list[int], chunks: list[int]) -> Figures:
    """Every figure, on a Ray cluster this starts and stops; local runs interleaved with Ray's."""
    import ray

    from helpers_ray import start_local_ray
    from live.cli.cluster import render_on_ray
    from live.cli.ray_workers import release_workers
    from live.cli.render import render

    got = Figures(chunks={c: [] for c in chunks})
    render(job(4))  # warm-up: first-use costs of torch and the model
    # Ray starts its workers at nice 15; at 0 they compete with this process (and anything else
    # running) on equal terms, so the ratios measure Ray, not the scheduler's priorities.
    os.environ.setdefault("RAY_worker_niceness", "0")
    start_local_ray(num_cpus=max(workers), attempts=3)
    try:
        for n in workers:  # one pool per worker count; local runs interleaved, so load drifts hit both
            cold = time.perf_counter()
            [first] = render_on_ray([job(4)], workers=n, progress=False)  # starts the workers, loads the model
            got.starts[n] = time.perf_counter() - cold - first.seconds
            for _ in range(args.rounds):
                got.local.append(render(job()).fps)
                got.ray.setdefault(n, []).append(render_on_ray([job()], workers=n, progress=False)[0].fps)
                if n == max(workers):
                    for c in chunks:
                        got.chunks[c].append(render_on_ray([job()], workers=n, chunk=c, progress=False)[0].fps)
        release_workers()
    finally:
        ray.shutdown()
    return got


def report(args: argparse.Namespace, got: Figures, workers: list[int], chunks: list[int]) -> dict:
    """Print the medians against the local rate; the figures for --json."""
    from live.cli.cluster import DEFAULT_CHUNK

    med = statistics.median
    base = med(got.local)
    figures: dict = {"model": args.model, "backend": args.backend, "frames": args.frames, "steps": args.steps,
                     "size": args.size,
                     "cpus": os.cpu_count(), "rounds": args.rounds, "local_fps": base}
    print(f"walk on {args.model} ({args.backend}), {args.steps} steps, {args.frames} frames; "
          f"medians of {args.rounds} rounds "
          f"(local: {len(got.local)} runs, interleaved); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"local, 1 process, 1 thread:  {base:7.2f} frames/s")
    for n in workers:
        fps = med(got.ray[n])
        figures[f"ray{n}_fps"], figures[f"ray{n}_start_s"] = fps, got.starts[n]
        print(f"ray, {n} worker{'s' if n > 1 else ' '}, chunk {DEFAULT_CHUNK:2d}: {fps:7.2f} frames/s = "
              f"{fps / base:.2f} x local  (a call's start, workers and model: {got.starts[n]:.1f} s)")
    figures["chunks"] = {}
    for c in chunks:
        fps = med(got.chunks[c])
        figures["chunks"][c] = fps
        print(f"ray, {max(workers)} workers, chunk {c:2d}: {fps:7.2f} frames/s = {fps / base:.2f} x local")
    return figures


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(1)  # as each Ray CPU worker runs
    from engine.atomic import write_atomically

    workers = [int(w) for w in args.workers.split(",")]
    chunks = [int(c) for c in args.chunks.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="netbend-ray-bench-"))
    try:
        got = measure(args, Jobs(args, tmp), workers, chunks)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    figures = report(args, got, workers, chunks)
    if args.json:
        write_atomically(args.json, json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
