#!/usr/bin/env python
"""Frames per second of a walk render: one local process against Ray with 1 and 2
workers, and what the chunk size (walk frames per actor call) costs.

    python scripts/ray_bench.py [--model tiny] [--frames 96] [--steps 4] [--size 64x64]

Every figure is a frames-only rate, counted as `netbend render` counts it: from the first
frame to the last, without the model load, the workers' start or the video encode (the
start is printed apart, as a one-off cost of a Ray call). Each Ray worker is one CPU and
one torch thread, as is the local process here, so "1 worker / local" is the cost of
Ray's transport alone, and "2 workers / local" what the second core buys. A local Ray
cluster of max(--workers) CPUs is started and stopped by the script.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def walk_preset(folder: Path, steps: int) -> Path:
    """The paper's piano walk with fewer DDIM steps (its bend moved inside them)."""
    from live.control.presets import load_preset, save_preset

    paper = load_preset("paper-piano-mesh")
    quick = replace(paper, name="bench-walk", settings={**paper.settings, "steps": steps},
                    bends=[replace(b, step=steps - 1) for b in paper.bends])
    return save_preset(quick, folder / "bench-walk.toml")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--frames", type=int, default=64, help="frames per measured render (default 64)")
    parser.add_argument("--steps", type=int, default=4, help="DDIM steps per walk frame (default 4)")
    parser.add_argument("--size", default=None, help="WIDTHxHEIGHT (default: the model's native size)")
    parser.add_argument("--workers", default="1,2", help="Ray worker counts to measure (default 1,2)")
    parser.add_argument("--chunks", default="1,4,16,32", help="chunk sizes to measure with the most workers")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per figure; medians (default 3)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(1)  # as each Ray CPU worker runs
    import ray

    from live.cli.cluster import DEFAULT_CHUNK, render_on_ray
    from live.cli.ray_workers import release_workers
    from live.cli.render import RenderJob, parse_size, render
    from live.media import write_audio_wav

    workers = [int(w) for w in args.workers.split(",")]
    chunks = [int(c) for c in args.chunks.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="netbend-ray-bench-"))
    preset = walk_preset(tmp, args.steps)
    rate, seconds = 22050, args.frames / 20.0
    t = np.arange(int(seconds * rate)) / rate
    write_audio_wav(tmp / "tone.wav", (0.4 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)
    runs = iter(range(10_000))

    def job(frames: int = args.frames) -> RenderJob:
        n = next(runs)
        return RenderJob(output=tmp / f"r{n}.mp4", audio=tmp / "tone.wav", model=args.model, preset=str(preset),
                         size=parse_size(args.size), span=(0.0, frames / 20.0), frames_dir=tmp / f"f{n}",
                         progress=False)

    figures: dict = {"model": args.model, "frames": args.frames, "steps": args.steps, "size": args.size,
                     "cpus": os.cpu_count(), "rounds": args.rounds}
    render(job(4))  # warm-up: first-use costs of torch and the model
    local: list[float] = []
    ray_fps: dict[int, list[float]] = {}
    chunk_fps: dict[int, list[float]] = {c: [] for c in chunks}
    starts: dict[int, float] = {}
    # Ray starts its workers at nice 15; at 0 they compete with this process (and anything else
    # running) on equal terms, so the ratios measure Ray, not the scheduler's priorities.
    os.environ.setdefault("RAY_worker_niceness", "0")
    for attempt in (1, 2, 3):  # Ray gives its raylet a fixed 30 s to come up, which a loaded 2-core box can miss
        try:
            ray.init(num_cpus=max(workers), include_dashboard=False, logging_level=logging.WARNING,
                     log_to_driver=False)
            break
        except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception for this
            ray.shutdown()
            if attempt == 3 or "timed out during startup" not in str(e):
                raise
    try:
        for n in workers:  # one pool per worker count; local runs interleaved, so load drifts hit both
            cold = time.perf_counter()
            [first] = render_on_ray([job(4)], workers=n, progress=False)  # starts the workers, loads the model
            starts[n] = time.perf_counter() - cold - first.seconds
            for _ in range(args.rounds):
                local.append(render(job()).fps)
                ray_fps.setdefault(n, []).append(render_on_ray([job()], workers=n, progress=False)[0].fps)
                if n == max(workers):
                    for c in chunks:
                        chunk_fps[c].append(render_on_ray([job()], workers=n, chunk=c, progress=False)[0].fps)
        release_workers()
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)

    med = statistics.median
    base = med(local)
    figures["local_fps"] = base
    print(f"walk on {args.model}, {args.steps} steps, {args.frames} frames; medians of {args.rounds} rounds "
          f"(local: {len(local)} runs, interleaved); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"local, 1 process, 1 thread:  {base:7.2f} frames/s")
    for n in workers:
        fps = med(ray_fps[n])
        figures[f"ray{n}_fps"], figures[f"ray{n}_start_s"] = fps, starts[n]
        print(f"ray, {n} worker{'s' if n > 1 else ' '}, chunk {DEFAULT_CHUNK:2d}: {fps:7.2f} frames/s = "
              f"{fps / base:.2f} x local  (a call's start, workers and model: {starts[n]:.1f} s)")
    figures["chunks"] = {}
    for c in chunks:
        fps = med(chunk_fps[c])
        figures["chunks"][c] = fps
        print(f"ray, {max(workers)} workers, chunk {c:2d}: {fps:7.2f} frames/s = {fps / base:.2f} x local")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
