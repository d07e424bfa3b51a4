"""What outputs cost the show: render fps with no output, with NDI, with recording, in one run.

    python scripts/outputs_bench.py [--model tiny] [--seconds 4] [--rounds 3] [--output-size WxH] [--json OUT]

Runs the live render loop (Show.frame: mappings, one StreamPipeline.step, the pack, the
hand-off to the outputs) on one pipeline, in rounds that alternate the three cases so a
machine whose load drifts affects them alike, and prints the median fps of each and its
ratio to "none" as JSON. NDI has a real receiver connected (tests/ndi_receiver.py in its
own process; an NDI sender with nobody listening skips the work), on loopback via the
config tests use unless NDI_CONFIG_DIR is set. The outputs' threads share the machine
with the render thread: on a 2-core CPU that sharing is most of what they cost.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seconds", type=float, default=4.0, help="per case per round (default 4)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--output-size", help="WxH the outputs get (default: the frame's own size)")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))  # as `netbend live` does (live.cli)
    from engine.models import load_model
    from engine.stream import StreamConfig, StreamPipeline
    from live.control.state import ShowState
    from live.outputs.fanout import Outputs
    from live.outputs.framing import Framing, parse_output_size
    from live.outputs.ndi import NdiOutput
    from live.outputs.recording import VideoRecording
    from live.show.show import Show
    from ndi_receiver import loopback_config

    work = Path(tempfile.mkdtemp(prefix="netbend-outputs-bench-"))
    if "NDI_CONFIG_DIR" not in os.environ:
        os.environ["NDI_CONFIG_DIR"] = str(loopback_config(work / "ndi"))
    model = load_model(args.model, device=args.device)
    pipe = StreamPipeline(model, StreamConfig(prompt="neon"))
    pipe.prepare()
    h, w = pipe.size
    framing = Framing(parse_output_size(args.output_size))
    name = f"netbend-bench-{os.getpid()}"

    receiver = None
    takes = iter(range(10**6))

    def outputs_for(case: str) -> Outputs:
        nonlocal receiver
        outputs = Outputs(framing, frame_size=(w, h), fps=30)
        if case == "ndi":
            outputs.add(NdiOutput(name))
            receiver = subprocess.Popen([sys.executable, str(ROOT / "tests" / "ndi_receiver.py"), name, "100000",
                                         str(work / "got.npz"), "--timeout", str(args.seconds + 20)],
                                        stdout=subprocess.PIPE, text=True)
            if receiver.stdout.readline().strip() != "READY":
                raise SystemExit("the NDI receiver did not connect")
        elif case == "record":
            outputs.add(VideoRecording(work / f"take-{next(takes)}.mp4"))
        return outputs

    def run(case: str) -> dict:
        nonlocal receiver
        outputs = outputs_for(case)
        show = Show(pipe, ShowState(prompt="neon"))
        show.outputs = outputs
        for _ in range(3):  # warm-up: the first frames allocate
            show.frame()
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < args.seconds:
            show.frame()
            n += 1
        fps = n / (time.perf_counter() - start)
        stats = outputs.close()
        if receiver is not None:
            receiver.terminate()
            receiver.wait(10)
            receiver = None
        return {"fps": fps, "outputs": stats}

    cases = ("none", "ndi", "record")
    runs: dict[str, list] = {c: [] for c in cases}
    for _ in range(args.rounds):
        for case in cases:
            runs[case].append(run(case))
    fps = {c: statistics.median(r["fps"] for r in runs[c]) for c in cases}
    result = {
        "what": "render fps of the live loop (Show.frame) with each output, median of rounds, one run",
        "model": args.model, "device": args.device, "frame": f"{w}x{h}",
        "output_size": "x".join(map(str, framing.picture_size((w, h)))),
        "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2), "seconds_per_case": args.seconds, "rounds": args.rounds,
        "fps": {c: round(v, 2) for c, v in fps.items()},
        "ratio_to_none": {c: round(fps[c] / fps["none"], 3) for c in cases},
        "per_round_fps": {c: [round(r["fps"], 2) for r in runs[c]] for c in cases},
        "output_sent_per_round": {c: [sum(s["sent"] for s in r["outputs"].values()) for r in runs[c]]
                                  for c in cases if c != "none"},
        "output_send_ms_p50_per_round": {c: [max((s["send_ms_p50"] for s in r["outputs"].values()), default=0.0)
                                             for r in runs[c]] for c in cases if c != "none"},
        "output_dropped_per_round": {c: [sum(s["dropped"] for s in r["outputs"].values()) for r in runs[c]]
                                     for c in cases if c != "none"},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
