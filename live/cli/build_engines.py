"""`netbend build-engines --model M --size WxH`: TensorRT engines for every U-Net segment,
built into the engine cache (see ``engine.tensorrt``) with a progress bar over segments.

Segments whose cached engine is still valid are skipped, so running it again is cheap
and an interrupted build resumes at the segment it stopped in. ``--force`` rebuilds all.
A size, a missing GPU or a missing TensorRT is refused, with exit status 2 and one line
on stderr, before the model is loaded.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import time
from pathlib import Path

from live.checks import SizeRule

log = logging.getLogger("netbend.build_engines")

DTYPES = ("fp16", "fp32")
SIZE_MULTIPLE = 64  # SD's VAE halves 3 times (x8), the U-Net's 3 upsamplers need latents in multiples of 8
ENGINE_SIZE = SizeRule(multiple=SIZE_MULTIPLE, smallest=SIZE_MULTIPLE, example="512x512 or 768x448",
                       why="engines have fixed shapes without an upsample size, so ")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="sd-turbo", help="tiny | sd-turbo | sd-1.5 | sd-2.1 | sd-turbo-arch | "
                                                           "a HF repo id | a folder | a .safetensors file "
                                                           "(default sd-turbo)")
    parser.add_argument("--size", help="WIDTHxHEIGHT of the frames, multiples of 64 (default: the model's native size)")
    parser.add_argument("--batch", type=int, default=1, help="images per U-Net call (default 1; 2 for CFG models)")
    parser.add_argument("--dtype", default="fp16", choices=DTYPES, help="engine precision (default fp16)")
    parser.add_argument("--cache", metavar="DIR", help="engine cache folder (default: $NETBEND_ENGINE_CACHE, else "
                                                       "$XDG_CACHE_HOME/netbend/engines, else "
                                                       "~/.cache/netbend/engines)")
    parser.add_argument("--force", action="store_true", help="rebuild every engine, even valid cached ones")
    parser.add_argument("--allow-pickle", action="store_true", help="allow pickled checkpoints (trusted files only)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _error(message: str) -> int:
    print(f"netbend: error: {message}", file=sys.stderr)
    return 2


def _check_machine() -> str | None:
    """Why engines cannot be built here, or None. Cheap: nothing is loaded onto the GPU."""
    import torch

    if not torch.cuda.is_available():
        from engine.tensorrt import NO_GPU

        return NO_GPU
    if importlib.util.find_spec("tensorrt") is None:
        from engine.tensorrt import TRT_INSTALL_HINT

        return TRT_INSTALL_HINT
    if importlib.util.find_spec("onnx") is None:
        from engine.export import INSTALL_HINT

        return f"building engines exports ONNX first, and onnx is not installed: {INSTALL_HINT}"
    return None


def run(args: argparse.Namespace) -> int:
    """The command's body; 0 on success, 2 on wrong input or a machine that cannot build."""
    try:
        size = ENGINE_SIZE.parse(args.size)
        if args.batch < 1:
            raise ValueError(f"--batch must be at least 1, got {args.batch}")
        if args.dtype not in DTYPES:
            raise ValueError(f"--dtype {args.dtype!r}; allowed: {', '.join(DTYPES)}")
    except ValueError as e:
        return _error(str(e))
    problem = _check_machine()
    if problem is not None:
        return _error(problem)

    import torch
    from tqdm import tqdm

    from engine.segments import segment_names
    from engine.model_files import ModelNotFoundError, PickleRefusedError
    from engine.models import load_model
    from engine.tensorrt import build_all, default_cache_dir

    cache = Path(args.cache).expanduser() if args.cache else default_cache_dir()
    dtype = torch.float16 if args.dtype == "fp16" else torch.float32
    try:
        model = load_model(args.model, device="cuda", dtype=dtype, allow_pickle=args.allow_pickle)
        size = size or (model.default_size, model.default_size)
    except (ModelNotFoundError, PickleRefusedError, ValueError, FileNotFoundError) as e:
        return _error(str(e))

    counts = {"built": 0, "cached": 0}
    bar = tqdm(total=len(segment_names(model.unet)), unit="segment", desc="engines", disable=args.quiet)

    def progress(name: str, stage: str) -> None:
        bar.set_postfix_str(f"{name}: {stage}")
        if stage in counts:
            counts[stage] += 1
            bar.update(1)

    started = time.perf_counter()
    try:
        paths = build_all(model, size, cache, args.dtype, progress, batch=args.batch, force=args.force)
    except ValueError as e:  # a size the model's U-Net or VAE cannot take
        return _error(str(e))
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    width, height = size
    print(f"{len(paths)} engines for {args.model} at {width}x{height}, batch {args.batch}, {args.dtype} in {cache}: "
          f"{counts['built']} built, {counts['cached']} cached, {seconds:.0f} s")
    return 0
