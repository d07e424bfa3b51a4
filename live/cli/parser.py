"""The `netbend` argument parser: one function per subcommand, argparse only (no heavy imports).

Each subcommand's arguments are added by its own function; `build_parser` puts them
together. What each subcommand does is live/cli/__init__.py's COMMANDS table.
"""
from __future__ import annotations

import argparse

__all__ = ["build_parser"]


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="tiny | sd-turbo | sd-1.5 | sd-2.1 | lcm-sd15 | a HF repo id | a folder | "
                                   "a .safetensors file (default: the preset's)")
    p.add_argument("--device", help="cpu | cuda | cuda:N (default: cuda if available)")
    p.add_argument("--backend", default="auto", help="how the U-Net runs: auto (default: trace on a CPU, eager "
                                                    "elsewhere) | eager | compile (torch.compile'd segments; the "
                                                    "first frames compile) | trace (TorchScript-traced segments "
                                                    "and VAE: no compiler, none of diffusers' per-module Python) | "
                                                    "tensorrt (engines from `netbend build-engines`, CUDA)")

def _render_parser(sub) -> None:
    p = sub.add_parser("render", help="render an audio file (or the built-in demo) to an MP4 with sound")
    p.add_argument("audio", nargs="*", help="any audio file FFmpeg reads (wav, flac, mp3, ogg…); default: built-in "
                                            "demo; several: -o is a folder for their videos")
    p.add_argument("-o", "--output", help="the .mp4 to write (a folder, with several AUDIO files)")
    p.add_argument("--jobs", metavar="FILE", help="a TOML batch file of renders, one [[render]] table each "
                                                  "(see live/cli/batch.py)")
    p.add_argument("--preset", default="default", help="a preset name (see `netbend presets`) or a .toml path")
    _model_args(p)
    p.add_argument("--fps", type=float, default=20.0, help="frames per second (default 20: one per 50 ms window)")
    p.add_argument("--size", help="WIDTHxHEIGHT, multiples of 8 (default: the model's native size)")
    p.add_argument("--seconds", help="START:END span of the audio to render, in seconds")
    p.add_argument("--frames-dir", help="keep the PNG frames here (a render resumes from them)")
    p.add_argument("--take", help="render a rehearsal take (from `netbend live --record`) instead of an audio file")
    p.add_argument("--steps", type=int, help="with --take: denoising steps per frame (default 1, as live)")
    p.add_argument("--init-image", metavar="IMAGE", help="chain and stream presets: frame 0 grows from this image "
                                                         "(img2img) instead of from the prompt")
    p.add_argument("--prompts", metavar="SCHEDULE", help='a prompt schedule replacing the preset\'s prompt: '
                                                          '"SECONDS:PROMPT|SECONDS:PROMPT|...", blended in between, '
                                                          'e.g. "0:starry night|20:forest with river"')
    p.add_argument("--allow-pickle", action="store_true", help="allow loading pickled .ckpt/.bin checkpoints "
                                                               "(they can run code: only files you trust)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _ray_args(p, chunks=True)


def _ray_args(p, chunks: bool = False) -> None:
    g = p.add_argument_group("Ray (pip install -e '.[cluster]')")
    g.add_argument("--ray", nargs="?", const="auto", metavar="auto|ADDRESS",
                   help="run on a Ray cluster: auto (the running one, or a local one) or HOST:PORT of its head")
    g.add_argument("--ray-workers", type=int, metavar="N", help="Ray actors to use (default: one per GPU, "
                                                                "or per CPU on a cluster without GPUs)")
    if chunks:
        g.add_argument("--ray-chunk", type=int, default=8, metavar="FRAMES",
                       help="walk frames per actor call (default 8; see scripts/ray_bench.py)")


def _live_parser(sub) -> None:
    p = sub.add_parser("live", help="the show: line-in audio, OSC control, a full-screen window")
    p.add_argument("--preset", default="default", help="a stream preset name or .toml path")
    _model_args(p)
    p.add_argument("--size", help="WIDTHxHEIGHT of the generated frames (default: the model's native size)")
    audio = p.add_argument_group("audio")
    audio.add_argument("--audio-device", help="input device: index or name substring (see `netbend devices`)")
    audio.add_argument("--audio-file", help="rehearse with an audio file played in real time instead of line-in")
    audio.add_argument("--play", action="store_true", help="with --audio-file: also play it to the speakers")
    audio.add_argument("--no-audio", action="store_true", help="no audio input: features stay at 0")
    audio.add_argument("--channels", help="input channels to use, 1-based, e.g. 1 or 1,2 (mixed to mono)")
    audio.add_argument("--gain", type=float, default=0.0, help="input gain in dB, -60..40 (default 0; "
                                                               "/netbend/gain changes it)")
    audio.add_argument("--gate", type=float, default=-70.0, help="a line-in's noise gate threshold in dBFS, <= 0 "
                                                                 "(default -70)")
    osc = p.add_argument_group("OSC")
    osc.add_argument("--osc-port", type=int, default=9000, help="UDP port to listen on (default 9000; -1: as --no-osc)")
    osc.add_argument("--no-osc", action="store_true", help="no OSC server (and no OSCQuery)")
    osc.add_argument("--osc-host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    osc.add_argument("--osc-allow", action="append", metavar="IP", help="only accept these senders (repeatable)")
    osc.add_argument("--osc-feedback", metavar="HOST:PORT", help="echo changes, errors and audio features here")
    osc.add_argument("--features-hz", type=float, default=30.0, help="audio features sent per second (default 30)")
    osc.add_argument("--oscquery-port", type=int, help="OSCQuery HTTP/WebSocket port for VDMX, Chataigne, ossia, "
                                                      "TouchDesigner (default: the OSC port + 10; 0: off)")
    tempo = p.add_argument_group("tempo")
    tempo.add_argument("--link", action="store_true", help="join an Ableton Link session (tempo and beat)")
    tempo.add_argument("--tempo", type=float, default=120.0, help="starting tempo in BPM (default 120; key T taps)")
    tempo.add_argument("--quantize", choices=("off", "beat", "bar"), default="off",
                       help="preset loads and prompt changes wait for the next beat or bar (default off)")
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
    _output_args(p)
    p.add_argument("--allow-pickle", action="store_true", help="allow pickled checkpoints (trusted files only)")


def _output_args(p) -> None:
    """`netbend live`'s outputs (live.outputs.options). Values are checked there, not by
    argparse choices, so a wrong one is one line naming what is allowed."""
    g = p.add_argument_group("outputs (each on its own thread; see live/outputs)")
    g.add_argument("--ndi", metavar="NAME", help="send the picture as the NDI source NAME (pip install cyndilib)")
    g.add_argument("--ndi-audio", action="store_true", help="with --ndi: send the input audio along")
    g.add_argument("--syphon", metavar="NAME", help="macOS: publish the picture as the Syphon server NAME")
    g.add_argument("--spout", metavar="NAME", help="Windows: send the picture as the Spout sender NAME")
    g.add_argument("--share", metavar="NAME", help="GPU texture sharing by platform: Syphon on macOS, Spout on Windows")
    g.add_argument("--virtual-camera", nargs="?", const="", metavar="DEVICE",
                   help="send the picture to a virtual camera (v4l2loopback /dev/videoN on Linux, OBS's elsewhere)")
    g.add_argument("--record-video", metavar="OUT.mp4", help="record the show: H.264 of the picture with the input "
                                                             "audio, crash-safe (fragmented MP4)")
    g.add_argument("--overwrite", action="store_true", help="with --record-video: replace an existing file")
    g.add_argument("--output", action="append", metavar="KIND[:ARG]",
                   help="an output by name (repeatable): ndi:NAME, syphon:NAME, spout:NAME, share:NAME, "
                        "virtual-camera[:DEVICE], record:OUT.mp4")
    g.add_argument("--output-size", metavar="WxH", help="the picture's size for the window and every output, "
                                                       "e.g. 1920x1080 (default: the frame's own)")
    g.add_argument("--scaling", default="fit", help="fit (bars, default) | fill (crop) | stretch")
    g.add_argument("--upscale", default="smooth", help="smooth (bilinear, default) | sharp (nearest pixel)")
    g.add_argument("--output-fps", type=float, default=30.0,
                   help="the frame rate NDI and the camera announce (default 30; frames go out as rendered)")


def _devices_parser(sub) -> None:
    sub.add_parser("devices", help="list audio inputs/outputs and monitors")


def _sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="a labelled contact sheet of one operator over params and layers, or one of "
                                     "the paper's figures (--figure)")
    p.add_argument("--preset", default="default")
    p.add_argument("--operator", help="the operator to sweep (required without --figure)")
    p.add_argument("--params", help="comma-separated params, e.g. 0,0.8,1.6,3.2 (required without --figure)")
    p.add_argument("--layers", help="comma-separated layers: latent@N (the paper's layer N), unet:N or point names "
                                    "such as mid (a bare number is refused: it could mean either); default: a spread")
    p.add_argument("--figure", type=int, metavar="1|2|3|4",
                   help="the paper's Figure N as a labelled sheet (its prompts, operators, layers and params, "
                        "seed 46, DDIM 50); --model defaults to sd-1.4, the paper's")
    p.add_argument("--steps", type=int, default=50, help="with --figure: DDIM steps (default 50, the paper's; "
                                                         "fewer scale every layer to the same fraction, a preview)")
    p.add_argument("--opt", action="append", metavar="KEY=VALUE", help="operator option, e.g. plane=R2 (repeatable)")
    p.add_argument("-o", "--output", required=True, help="the .png to write")
    p.add_argument("--size", help="WIDTHxHEIGHT of each cell")
    _model_args(p)
    _ray_args(p)


def _features_parser(sub) -> None:
    p = sub.add_parser("features", help="the audio feature table of a file, as CSV and a plot")
    p.add_argument("audio")
    p.add_argument("-o", "--output", help="write the table as CSV here (default: print it)")
    p.add_argument("--plot", help="write a PNG plot of the features over the waveform here")
    p.add_argument("--fps", type=float, default=20.0, help="windows per second (default 20)")
    p.add_argument("--taper", default="hann", choices=("hann", "none"),
                   help="analysis window: hann (default) or none, the paper's rectangular window, which gives "
                        "the authors' numbers exactly")


def _presets_parser(sub) -> None:
    p = sub.add_parser("presets", help="list presets, or check them")
    p.add_argument("--check", action="store_true", help="validate every preset (or the given files)")
    p.add_argument("paths", nargs="*", help="preset files to check (with --check)")


def _bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="performance figures of the live path (fps, stages, latency, bend overhead) "
                                     "as JSON")
    p.add_argument("--model", default="tiny", help="tiny | sd-turbo-arch (SD-Turbo's compute, random weights) | "
                                                   "any --model name (default tiny)")
    p.add_argument("--size", help="WIDTHxHEIGHT, multiples of 8 (default: the model's native size)")
    p.add_argument("--steps", type=int, default=1, help="denoising steps per frame (default 1)")
    p.add_argument("--backend", default="eager", help="eager | compile (torch.compile'd U-Net segments) | trace "
                                                      "(TorchScript-traced segments and VAE) | tensorrt; for all "
                                                      "but eager the eager figures are measured alongside")
    p.add_argument("--dtype", help="fp16 | bf16 | fp32 (default: fp16 on CUDA, fp32 on CPU)")
    p.add_argument("--channels-last", action="store_true", help="U-Net and VAE weights in channels-last format")
    p.add_argument("--bends", type=int, default=2, help="bends active in the bends-on frames (default 2)")
    p.add_argument("--peer", help="diffusers: also time diffusers' StableDiffusionImg2ImgPipeline on the same work "
                                  "(same model, prompt embeddings, steps, strength, size) and report the ratio")
    p.add_argument("--frames", type=int, help="measured frames per condition (default: 50 for tiny on CPU, "
                                              "3 for other models on CPU, 200 on CUDA)")
    p.add_argument("--warmup", type=int, help="warm-up cycles before measuring (default 5 / 1 / 20)")
    p.add_argument("--device", help="cpu | cuda | cuda:N (default: cuda if available)")
    p.add_argument("--json", metavar="OUT", help="also write the JSON here (atomically)")


def _build_engines_parser(sub) -> None:
    p = sub.add_parser("build-engines", help="TensorRT engines for every U-Net segment at one size, cached on disk")
    from live.cli.build_engines import add_arguments as build_engines_arguments  # light: argparse only

    build_engines_arguments(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netbend", description="Audio-reactive network bending of diffusion models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (attachments, resumes)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _render_parser(sub)
    _live_parser(sub)
    _devices_parser(sub)
    _sweep_parser(sub)
    _features_parser(sub)
    _presets_parser(sub)
    _bench_parser(sub)
    _build_engines_parser(sub)
    return parser
