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


def _user_errors() -> tuple[type, ...]:
    """The exception types that mean 'your input is wrong', not 'netbend is broken'."""
    from engine.export import MissingDependencyError
    from engine.models import ModelNotFoundError, PickleRefusedError
    from engine.tensorrt import TensorRTUnavailable
    from live.media import MediaError
    from live.presets import PresetError
    from live.render import RenderError
    from live.takes import TakeError
    from live.window import WindowError

    return (ModelNotFoundError, PickleRefusedError, MediaError, PresetError, RenderError, ValueError,
            FileNotFoundError, WindowError, TakeError, TensorRTUnavailable, MissingDependencyError)


def _render(args: argparse.Namespace) -> int:
    from live.render import RenderJob, parse_size, parse_span, render

    if args.take and args.audio:
        raise ValueError("give an AUDIO file or --take, not both (a take renders with its own recorded audio)")
    if args.steps is not None and not 1 <= args.steps <= 50:
        raise ValueError(f"--steps must be 1..50, got {args.steps}")
    job = RenderJob(
        output=Path(args.output), preset=args.preset, audio=Path(args.audio) if args.audio else None,
        model=args.model, fps=args.fps, size=parse_size(args.size), span=parse_span(args.seconds),
        frames_dir=Path(args.frames_dir) if args.frames_dir else None, allow_pickle=args.allow_pickle,
        device=args.device, progress=not args.quiet, take=Path(args.take) if args.take else None,
        steps=args.steps, backend=args.backend,
    )
    result = render(job)
    print(f"wrote {result.output}: {result.frames} frames at {args.fps:g} fps, {result.audio_seconds:.2f} s of audio; "
          f"rendered {result.rendered} frames in {result.seconds:.1f} s ({result.fps:.2f} frames/s)")
    return 0


def _features(args: argparse.Namespace) -> int:
    from engine.features import analyze
    from live.media import load_audio

    samples, rate = load_audio(args.audio, mono=True)
    table = analyze(samples, rate, fps=args.fps)
    if args.output:
        table.to_csv(args.output)
        print(f"wrote {args.output}: {len(table)} windows x {len(table.names)} features")
    if args.plot:
        from live.plots import plot_features

        plot_features(table, samples, rate, args.plot, title=Path(args.audio).name)
        print(f"wrote {args.plot}")
    if not args.output and not args.plot:
        names = list(table.names)
        print("time," + ",".join(names))
        for i in range(len(table)):
            print(f"{table.times[i]:.3f}," + ",".join(f"{v:.6g}" for v in table.values[i]))
    return 0


def _presets(args: argparse.Namespace) -> int:
    from live.presets import check_presets, list_presets, load_preset

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
    from live.render import parse_size
    from live.sweep import SweepJob, sweep

    job = SweepJob(output=Path(args.output), preset=args.preset, operator=args.operator,
                   params=args.params, layers=args.layers, model=args.model, size=parse_size(args.size),
                   opts=args.opt or [], device=args.device, backend=args.backend)
    result = sweep(job)
    print(f"wrote {result}")
    return 0


def _live(args: argparse.Namespace) -> int:
    from live.app import LiveOptions, format_stats, parse_host_port, run_live
    from live.render import parse_size

    if args.audio_device is not None and args.audio_file is not None:
        raise ValueError("give --audio-device or --audio-file, not both")
    opts = LiveOptions(
        preset=args.preset, model=args.model, device=args.device, size=parse_size(args.size),
        audio_device=args.audio_device, audio_file=Path(args.audio_file) if args.audio_file else None,
        play=args.play, channels=args.channels, gain_db=args.gain, gate_db=args.gate,
        osc_host=args.osc_host, osc_port=args.osc_port, osc_allow=args.osc_allow or [],
        osc_feedback=parse_host_port(args.osc_feedback) if args.osc_feedback else None,
        features_hz=args.features_hz, headless=args.headless, duration=args.duration,
        fullscreen=args.fullscreen, monitor=args.monitor, record=Path(args.record) if args.record else None,
        record_audio=args.record_audio,
        replay=Path(args.replay) if args.replay else None,
        slots=args.slots.split(",") if args.slots else [], allow_pickle=args.allow_pickle, no_audio=args.no_audio,
        backend=args.backend,
    )
    if opts.audio_file is not None and not opts.audio_file.is_file():
        raise ValueError(f"--audio-file {str(opts.audio_file)!r}: no such file")
    stats = run_live(opts)
    print(format_stats(stats))
    return 0


def _devices(args: argparse.Namespace) -> int:
    from live.audio import describe_audio_devices

    print(describe_audio_devices())
    try:
        from live.window import list_monitors

        monitors = list_monitors()
        print("monitors:\n" + "\n".join(f"  {i}: {m}" for i, m in enumerate(monitors)))
    except Exception as e:  # noqa: BLE001 - no display here: say so, keep the audio list
        print(f"monitors: none found ({e})")
    return 0


def _build_engines(args: argparse.Namespace) -> int:
    from live.build_engines import run

    return run(args)


def _bench(args: argparse.Namespace) -> int:
    import json

    from live.bench import BenchOptions, run_bench, write_json
    from live.render import parse_size

    opts = BenchOptions(model=args.model, size=parse_size(args.size), steps=args.steps, backend=args.backend,
                        bends=args.bends, frames=args.frames, warmup=args.warmup, device=args.device,
                        json=Path(args.json) if args.json else None, dtype=args.dtype,
                        channels_last=args.channels_last)
    result = run_bench(opts)
    if opts.json is not None:
        write_json(opts.json, result)
    print(json.dumps(result, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netbend", description="Audio-reactive network bending of diffusion models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (attachments, resumes)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", help="tiny | sd-turbo | sd-1.5 | sd-2.1 | lcm-sd15 | a HF repo id | a folder | "
                                       "a .safetensors file (default: the preset's)")
        p.add_argument("--device", help="cpu | cuda | cuda:N (default: cuda if available)")
        p.add_argument("--backend", default="eager", help="how the U-Net runs: eager (default) | compile "
                                                         "(torch.compile'd segments; the first frames compile) | "
                                                         "tensorrt (engines from `netbend build-engines`, CUDA)")

    p = sub.add_parser("render", help="render an audio file (or the built-in demo) to an MP4 with sound")
    p.add_argument("audio", nargs="?", help="any audio file FFmpeg reads (wav, flac, mp3, ogg…); default: built-in demo")
    p.add_argument("-o", "--output", required=True, help="the .mp4 to write")
    p.add_argument("--preset", default="default", help="a preset name (see `netbend presets`) or a .toml path")
    model_args(p)
    p.add_argument("--fps", type=float, default=20.0, help="frames per second (default 20: one per 50 ms window)")
    p.add_argument("--size", help="WIDTHxHEIGHT, multiples of 8 (default: the model's native size)")
    p.add_argument("--seconds", help="START:END span of the audio to render, in seconds")
    p.add_argument("--frames-dir", help="keep the PNG frames here (a render resumes from them)")
    p.add_argument("--take", help="render a rehearsal take (from `netbend live --record`) instead of an audio file")
    p.add_argument("--steps", type=int, help="with --take: denoising steps per frame (default 1, as live)")
    p.add_argument("--allow-pickle", action="store_true", help="allow loading pickled .ckpt/.bin checkpoints "
                                                               "(they can run code: only files you trust)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_render)

    p = sub.add_parser("live", help="the show: line-in audio, OSC control, a full-screen window")
    p.add_argument("--preset", default="default", help="a stream preset name or .toml path")
    model_args(p)
    p.add_argument("--size", help="WIDTHxHEIGHT of the generated frames (default: the model's native size)")
    audio = p.add_argument_group("audio")
    audio.add_argument("--audio-device", help="input device: index or name substring (see `netbend devices`)")
    audio.add_argument("--audio-file", help="rehearse with an audio file played in real time instead of line-in")
    audio.add_argument("--play", action="store_true", help="with --audio-file: also play it to the speakers")
    audio.add_argument("--no-audio", action="store_true", help="no audio input: features stay at 0")
    audio.add_argument("--channels", help="input channels to use, 1-based, e.g. 1 or 1,2 (mixed to mono)")
    audio.add_argument("--gain", type=float, default=0.0, help="input gain in dB")
    audio.add_argument("--gate", type=float, default=-70.0, help="noise gate threshold in dBFS")
    osc = p.add_argument_group("OSC")
    osc.add_argument("--osc-port", type=int, default=9000, help="UDP port to listen on (default 9000; -1: no OSC)")
    osc.add_argument("--osc-host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    osc.add_argument("--osc-allow", action="append", metavar="IP", help="only accept these senders (repeatable)")
    osc.add_argument("--osc-feedback", metavar="HOST:PORT", help="echo changes, errors and audio features here")
    osc.add_argument("--features-hz", type=float, default=30.0, help="audio features sent per second (default 30)")
    show = p.add_argument_group("display")
    show.add_argument("--headless", action="store_true", help="no window (servers, tests)")
    show.add_argument("--duration", type=float, help="stop after this many seconds")
    show.add_argument("--fullscreen", action="store_true")
    show.add_argument("--monitor", help="monitor index or name substring for --fullscreen (the projector)")
    takes = p.add_argument_group("takes and presets")
    takes.add_argument("--record", metavar="DIR", help="record a take into DIR (a new folder)")
    takes.add_argument("--record-audio", action="store_true",
                       help="with a line-in (--audio-device): also record the input audio into takes")
    takes.add_argument("--replay", metavar="TAKE", help="replay a recorded take's commands")
    takes.add_argument("--slots", help="comma-separated presets for keys 1-9 and /netbend/preset/load N")
    p.add_argument("--allow-pickle", action="store_true", help="allow pickled checkpoints (trusted files only)")
    p.set_defaults(run=_live)

    p = sub.add_parser("devices", help="list audio inputs/outputs and monitors")
    p.set_defaults(run=_devices)

    p = sub.add_parser("sweep", help="a labelled contact sheet of one operator over params and layers")
    p.add_argument("--preset", default="default")
    p.add_argument("--operator", required=True)
    p.add_argument("--params", required=True, help="comma-separated params, e.g. 0,0.8,1.6,3.2")
    p.add_argument("--layers", help="comma-separated layers: latent@N, point names or indices (default: a spread)")
    p.add_argument("--opt", action="append", metavar="KEY=VALUE", help="operator option, e.g. plane=R2 (repeatable)")
    p.add_argument("-o", "--output", required=True, help="the .png to write")
    p.add_argument("--size", help="WIDTHxHEIGHT of each cell")
    model_args(p)
    p.set_defaults(run=_sweep)

    p = sub.add_parser("features", help="the audio feature table of a file, as CSV and a plot")
    p.add_argument("audio")
    p.add_argument("-o", "--output", help="write the table as CSV here (default: print it)")
    p.add_argument("--plot", help="write a PNG plot of the features over the waveform here")
    p.add_argument("--fps", type=float, default=20.0, help="windows per second (default 20)")
    p.set_defaults(run=_features)

    p = sub.add_parser("presets", help="list presets, or check them")
    p.add_argument("--check", action="store_true", help="validate every preset (or the given files)")
    p.add_argument("paths", nargs="*", help="preset files to check (with --check)")
    p.set_defaults(run=_presets)

    p = sub.add_parser("bench", help="performance figures of the live path (fps, stages, latency, bend overhead) "
                                     "as JSON")
    p.add_argument("--model", default="tiny", help="tiny | sd-turbo-arch (SD-Turbo's compute, random weights) | "
                                                   "any --model name (default tiny)")
    p.add_argument("--size", help="WIDTHxHEIGHT, multiples of 8 (default: the model's native size)")
    p.add_argument("--steps", type=int, default=1, help="denoising steps per frame (default 1)")
    p.add_argument("--backend", default="eager", help="eager | compile (torch.compile'd U-Net segments; "
                                                      "the eager figures are measured alongside)")
    p.add_argument("--dtype", help="fp16 | bf16 | fp32 (default: fp16 on CUDA, fp32 on CPU)")
    p.add_argument("--channels-last", action="store_true", help="U-Net and VAE weights in channels-last format")
    p.add_argument("--bends", type=int, default=2, help="bends active in the bends-on frames (default 2)")
    p.add_argument("--frames", type=int, help="measured frames per condition (default: 50 for tiny on CPU, "
                                              "3 for other models on CPU, 200 on CUDA)")
    p.add_argument("--warmup", type=int, help="warm-up cycles before measuring (default 5 / 1 / 20)")
    p.add_argument("--device", help="cpu | cuda | cuda:N (default: cuda if available)")
    p.add_argument("--json", metavar="OUT", help="also write the JSON here (atomically)")
    p.set_defaults(run=_bench)

    p = sub.add_parser("build-engines", help="TensorRT engines for every U-Net segment at one size, cached on disk")
    from live.build_engines import add_arguments as build_engines_arguments  # light: argparse only

    build_engines_arguments(p)
    p.set_defaults(run=_build_engines)
    return parser


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
    from engine.pipeline_base import PIPELINE_BACKENDS

    if backend not in PIPELINE_BACKENDS:
        raise ValueError(f"unknown --backend {backend!r}; allowed: {', '.join(PIPELINE_BACKENDS)}")
    if backend == "tensorrt":
        import torch

        from engine.tensorrt import NO_GPU, require_tensorrt

        if not torch.cuda.is_available() or (args.device or "cuda").startswith("cpu"):
            raise ValueError(f"--backend tensorrt: {NO_GPU}")
        require_tensorrt()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _cpu_threads()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="netbend: %(message)s")
    try:
        _check_backend(args)
        return args.run(args)
    except KeyboardInterrupt:
        print("netbend: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as e:
        print(f"netbend: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
