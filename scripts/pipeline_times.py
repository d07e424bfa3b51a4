"""Seconds per frame of each pipeline on a model (default: tiny on CPU), printed as JSON.

    python scripts/pipeline_times.py [--model tiny] [--frames 5] [--size 64]

Each pipeline runs its defaults (stream: 1 step; walk: DDIM 50 with guidance 7.5; chain:
DDIM 50 at strength 0.5, so 25 steps a frame) with one bend active, after one warm-up
frame. For the live path's detailed figures use `netbend bench`.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from engine.bends import Bend
from engine.chain import ChainConfig
from engine.models import load_model
from engine.pipelines import make_pipeline
from engine.stream import StreamConfig
from engine.walk import WalkConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    model = load_model(args.model, device=args.device)
    size = dict(width=args.size, height=args.size)
    results = {"model": args.model, "device": str(model.device), "torch_threads": torch.get_num_threads()}
    for kind, config, bend in [
        ("stream", StreamConfig(**size), Bend("rotate", "mid", 0.8)),
        ("walk", WalkConfig(**size), Bend("rotate", "latent", 1.0, step=40, opts={"plane": "R1"})),
        ("chain", ChainConfig(**size), Bend("dilate", "latent", 3, step=1, normalize=0)),
    ]:
        pipe = make_pipeline(kind, model, config, [bend])
        times = []
        with torch.inference_mode():
            for i in range(args.frames + 1):
                start = time.perf_counter()
                frame = pipe.frame(i, args.frames + 1)
                if model.device.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
        pipe.bender.remove()
        results[kind] = {"seconds_per_frame_median": round(statistics.median(times[1:]), 4),
                         "frames": args.frames, "size": list(frame.shape[-2:])}
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
