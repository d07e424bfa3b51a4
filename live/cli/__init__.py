"""`netbend`: one console script, one subcommand per job.

    netbend render [AUDIO] -o OUT.mp4 --preset NAME|PATH   audio (or the demo) -> video with sound
    netbend sweep --preset P --operator OP --params a,b,c  an operator contact sheet
    netbend features AUDIO [-o F.csv] [--plot F.png]     the feature table of an audio file
    netbend presets [--check]                            list (and validate) presets
    netbend live --preset P [--audio-device D | --audio-file F] [--headless]   the show
    netbend devices                                      audio devices and monitors
    netbend bench [--model tiny|sd-turbo-arch] [--backend B] [--json OUT]      performance figures
    netbend build-engines [--model M] [--size WxH] [--cache DIR] [--force]   TensorRT engines ahead of a show

Wrong input from outside (a file, a preset, a model name, a flag) ends the command with
exit status 2 and one line that says what was wrong and what is allowed; no traceback,
and no partial output file.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

log = logging.getLogger("netbend")


# The exception types that mean "your input is wrong", not "netbend is broken", by home.
_USER_ERRORS = (("engine.model_files", "ModelNotFoundError"), ("engine.model_files", "PickleRefusedError"),
                ("engine.export", "MissingDependencyError"), ("engine.tensorrt", "TensorRTUnavailable"),
                ("live.media", "MediaError"), ("live.control.preset_files", "PresetError"),
                ("live.cli.render", "RenderError"), ("live.control.takes", "TakeError"),
                ("live.display.window", "WindowError"))


def _user_errors() -> tuple[type, ...]:
    """The user-error types that can have been raised: those of the modules imported so far.
    A module never imported raised nothing, and importing it only to catch its error would
    make a mistyped preset name wait for diffusers (seconds) before it is reported."""
    loaded = tuple(getattr(sys.modules[home], name) for home, name in _USER_ERRORS if home in sys.modules)
    return loaded + (ValueError, FileNotFoundError)


def _render(args: argparse.Namespace) -> int:
    from live.cli.render import RenderJob, parse_frame_size, parse_span, render

    if args.ray not in (None, "auto") and (Path(args.ray).exists() or ":" not in args.ray):
        args.audio, args.ray = [args.ray, *args.audio], "auto"  # `--ray a.wav b.wav`: an address has a :PORT
    if args.output is None and args.jobs is None:
        raise ValueError("render needs -o OUT.mp4 (a folder with several AUDIO files), or --jobs FILE")
    if args.jobs is not None and args.audio:
        raise ValueError("give AUDIO files or --jobs, not both (the batch file names each job's audio)")
    job = RenderJob(
        output=Path(args.output or "."), preset=args.preset, audio=Path(args.audio[0]) if args.audio else None,
        model=args.model, fps=args.fps, size=parse_frame_size(args.size), span=parse_span(args.seconds),
        frames_dir=Path(args.frames_dir) if args.frames_dir else None, allow_pickle=args.allow_pickle,
        device=args.device, progress=not args.quiet, take=Path(args.take) if args.take else None,
        steps=args.steps, backend=args.backend,
        init_image=Path(args.init_image) if args.init_image else None, prompts=args.prompts,
    )
    from live.cli.batch import check_distinct, jobs_for_files, load_batch

    jobs = (load_batch(Path(args.jobs), job) if args.jobs else
            jobs_for_files([Path(a) for a in args.audio], job) if len(args.audio) > 1 else [job])
    check_distinct(jobs)
    if args.ray is not None:
        from live.cli.cluster import render_on_ray

        results = render_on_ray(jobs, address=args.ray, chunk=args.ray_chunk, workers=args.ray_workers,
                                progress=not args.quiet)
    else:
        results = [render(j) for j in jobs]
    for j, result in zip(jobs, results):
        print(f"wrote {result.output}: {result.frames} frames at {j.fps:g} fps, {result.audio_seconds:.2f} s of audio; "
              f"rendered {result.rendered} frames in {result.seconds:.1f} s ({result.fps:.2f} frames/s)")
    return 0


def _features(args: argparse.Namespace) -> int:
    from engine.features import analyze
    from live.media import load_audio

    samples, rate = load_audio(args.audio, mono=True)
    table = analyze(samples, rate, fps=args.fps, taper=args.taper)
    if args.output:
        table.to_csv(args.output)
        print(f"wrote {args.output}: {len(table)} windows x {len(table.names)} features")
    if args.plot:
        from live.cli.plots import plot_features

        plot_features(table, samples, rate, args.plot, title=Path(args.audio).name)
        print(f"wrote {args.plot}")
    if not args.output and not args.plot:
        names = list(table.names)
        print("time," + ",".join(names))
        for i in range(len(table)):
            print(f"{table.times[i]:.3f}," + ",".join(f"{v:.6g}" for v in table.values[i]))
    return 0


def _presets(args: argparse.Namespace) -> int:
    from live.control.preset_files import list_presets
    from live.control.presets import check_presets, load_preset

    if args.check:
        results = check_presets([Path(p) for p in args.paths] if args.paths else None)
        bad = 0
        for path, error in results:
            print(f"{'ok ' if error is None else 'BAD'} {path}" + ("" if error is None else f"\n    {error}"))
            bad += error is not None
        return 2 if bad else 0
    for name, path in list_presets():
        preset = load_preset(path)
        print(f"{name:24s} {preset.pipeline:7s} {preset.model:14s} {preset.description}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from live.cli.render import parse_frame_size
    from live.cli.sweep import SweepJob, sweep

    if args.figure is not None:
        from live.cli.figures import FigureJob, figure_sheet

        if args.ray is not None:
            raise ValueError("--figure renders on this machine; leave out --ray")
        if args.operator or args.params or args.layers or args.opt:
            raise ValueError("--figure draws the paper's own operators, params and layers; "
                             "leave out --operator, --params, --layers and --opt")
        size = parse_frame_size(args.size)
        result = figure_sheet(FigureJob(Path(args.output), args.figure, model=args.model or "sd-1.4", size=size,
                                        steps=args.steps, device=args.device))
        print(f"wrote {result}")
        return 0
    if not args.operator or not args.params:
        raise ValueError("sweep needs --operator and --params (or --figure 1|2|3|4 for one of the paper's figures)")
    job = SweepJob(output=Path(args.output), preset=args.preset, operator=args.operator,
                   params=args.params, layers=args.layers, model=args.model, size=parse_frame_size(args.size),
                   opts=args.opt or [], device=args.device, backend=args.backend)
    if args.ray is not None:
        from live.cli.cluster import sweep_on_ray

        result = sweep_on_ray(job, address=args.ray, workers=args.ray_workers)
    else:
        result = sweep(job)
    print(f"wrote {result}")
    return 0


def _live(args: argparse.Namespace) -> int:
    from live.outputs.options import OutputOptions
    from live.show.app import format_stats, run_live
    from live.show.options import LiveOptions, parse_host_port
    from live.cli.render import parse_frame_size

    opts = LiveOptions(
        preset=args.preset, model=args.model, device=args.device, size=parse_frame_size(args.size),
        audio_device=args.audio_device, audio_file=Path(args.audio_file) if args.audio_file else None,
        play=args.play, channels=args.channels, gain_db=args.gain, gate_db=args.gate,
        osc_host=args.osc_host, osc_port=None if args.no_osc or args.osc_port == -1 else args.osc_port,
        osc_allow=args.osc_allow or [],
        osc_feedback=parse_host_port(args.osc_feedback) if args.osc_feedback else None,
        features_hz=args.features_hz, headless=args.headless, duration=args.duration,
        oscquery_port=args.oscquery_port, link=args.link, tempo=args.tempo, quantize=args.quantize,
        fullscreen=args.fullscreen, monitor=args.monitor, record=Path(args.record) if args.record else None,
        record_audio=args.record_audio,
        replay=Path(args.replay) if args.replay else None,
        slots=args.slots.split(",") if args.slots else [], allow_pickle=args.allow_pickle, no_audio=args.no_audio,
        backend=args.backend, outputs=OutputOptions.from_args(args),
    )
    if opts.audio_file is not None and not opts.audio_file.is_file():
        raise ValueError(f"--audio-file {str(opts.audio_file)!r}: no such file")
    stats = run_live(opts)
    print(format_stats(stats))
    return 0


def _devices(args: argparse.Namespace) -> int:
    from live.audio.devices import describe_audio_devices

    print(describe_audio_devices())
    try:
        from live.display.window import list_monitors

        monitors = list_monitors()
        print("monitors:\n" + "\n".join(f"  {i}: {m}" for i, m in enumerate(monitors)))
    except Exception as e:  # noqa: BLE001 - no display here: say so, keep the audio list
        print(f"monitors: none found ({e})")
    return 0


def _build_engines(args: argparse.Namespace) -> int:
    from live.cli.build_engines import run

    return run(args)


def _bench(args: argparse.Namespace) -> int:
    import json

    from live.cli.bench import BenchOptions, run_bench, write_json
    from live.cli.render import parse_frame_size

    opts = BenchOptions(model=args.model, size=parse_frame_size(args.size), steps=args.steps, backend=args.backend,
                        bends=args.bends, frames=args.frames, warmup=args.warmup, device=args.device,
                        json=Path(args.json) if args.json else None, dtype=args.dtype,
                        channels_last=args.channels_last, peer=args.peer)
    result = run_bench(opts)
    if opts.json is not None:
        write_json(opts.json, result)
    print(json.dumps(result, indent=2))
    return 0


COMMANDS = {
    "render": _render,
    "live": _live,
    "devices": _devices,
    "sweep": _sweep,
    "features": _features,
    "presets": _presets,
    "bench": _bench,
    "build-engines": _build_engines,
}


def _cpu_threads() -> None:
    """On CPU, leave one core to the audio, OSC and encoder threads: torch's default of one
    thread per core makes its threads stall each other as soon as anything else runs (on
    2 cores: medians 5x slower, single frames 100x). OMP_NUM_THREADS, if set, wins."""
    import os

    if "OMP_NUM_THREADS" in os.environ:
        return
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))


def _check_backend(args: argparse.Namespace) -> None:
    """A bad --backend fails before any model is loaded."""
    backend = getattr(args, "backend", None)
    if backend is None:
        return
    from live.checks import check_backend

    check_backend(backend)
    if backend == "tensorrt":
        import torch

        from engine.tensorrt import NO_GPU, require_tensorrt

        if not torch.cuda.is_available() or (args.device or "cuda").startswith("cpu"):
            raise ValueError(f"--backend tensorrt: {NO_GPU}")
        require_tensorrt()


def main(argv: Optional[Sequence[str]] = None) -> int:
    from live.cli.parser import build_parser

    parser = build_parser()
    args = parser.parse_args(argv)
    _cpu_threads()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="netbend: %(message)s")
    try:
        _check_backend(args)
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("netbend: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as e:
        print(f"netbend: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
