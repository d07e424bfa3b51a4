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
import itertools
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


CASES = ("none", "ndi", "record")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seconds", type=float, default=4.0, help="per case per round (default 4)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--output-size", help="WxH the outputs get (default: the frame's own size)")
    ap.add_argument("--json", help="also write the result here")
    return ap.parse_args(argv)


class Cases:
    """The three cases on one prepared pipeline: each round of one builds its outputs, runs
    the live loop for --seconds and closes them (and the NDI receiver) again."""

    def __init__(self, args: argparse.Namespace, work: Path):
        from engine.models import load_model
        from engine.stream import StreamConfig, StreamPipeline
        from live.outputs.framing import Framing, parse_output_size

        self.seconds, self.work = args.seconds, work
        self.pipe = StreamPipeline(load_model(args.model, device=args.device), StreamConfig(prompt="neon"))
        self.pipe.prepare()
        h, w = self.pipe.size
        self.frame_size = (w, h)
        self.framing = Framing(parse_output_size(args.output_size))
        self.name = f"netbend-bench-{os.getpid()}"
        self._takes = itertools.count()
        self._receiver: subprocess.Popen | None = None

    def outputs_for(self, case: str):
        from live.outputs.fanout import Outputs
        from live.outputs.ndi import NdiOutput
        from live.outputs.recording import VideoRecording

        outputs = Outputs(self.framing, frame_size=self.frame_size, fps=30)
        if case == "ndi":
            outputs.add(NdiOutput(self.name))
            self._start_receiver()
        elif case == "record":
            outputs.add(VideoRecording(self.work / f"take-{next(self._takes)}.mp4"))
        return outputs

    def _start_receiver(self) -> None:
        """A real receiver in its own process: an NDI sender with nobody listening skips the work."""
        self._receiver = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "ndi_receiver.py"), self.name, "100000",
             str(self.work / "got.npz"), "--timeout", str(self.seconds + 20)], stdout=subprocess.PIPE, text=True)
        if self._receiver.stdout.readline().strip() != "READY":
            raise SystemExit("the NDI receiver did not connect")

    def run(self, case: str) -> dict:
        """One round of ``case``: its fps over --seconds after a warm-up, and its outputs' numbers."""
        from helpers_process import stop_process
        from live.control.state import ShowState
        from live.show.show import Show

        outputs = self.outputs_for(case)
        show = Show(self.pipe, ShowState(prompt="neon"))
        show.outputs = outputs
        for _ in range(3):  # warm-up: the first frames allocate
            show.frame()
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < self.seconds:
            show.frame()
            n += 1
        fps = n / (time.perf_counter() - start)
        stats = outputs.close()
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            stop_process(receiver, timeout=10)
        return {"fps": fps, "outputs": stats}


def per_round(runs: dict[str, list], figure) -> dict[str, list]:
    """``figure(outputs' stats)`` for every round of each case that has outputs."""
    return {c: [figure(r["outputs"].values()) for r in runs[c]] for c in CASES if c != "none"}


def summary(args: argparse.Namespace, cases: Cases, runs: dict[str, list]) -> dict:
    import torch

    fps = {c: statistics.median(r["fps"] for r in runs[c]) for c in CASES}
    w, h = cases.frame_size
    return {
        "what": "render fps of the live loop (Show.frame) with each output, median of rounds, one run",
        "model": args.model, "device": args.device, "frame": f"{w}x{h}",
        "output_size": "x".join(map(str, cases.framing.picture_size((w, h)))),
        "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2), "seconds_per_case": args.seconds, "rounds": args.rounds,
        "fps": {c: round(v, 2) for c, v in fps.items()},
        "ratio_to_none": {c: round(fps[c] / fps["none"], 3) for c in CASES},
        "per_round_fps": {c: [round(r["fps"], 2) for r in runs[c]] for c in CASES},
        "output_sent_per_round": per_round(runs, lambda stats: sum(s["sent"] for s in stats)),
        "output_send_ms_p50_per_round": per_round(
            runs, lambda stats: max((s["send_ms_p50"] for s in stats), default=0.0)),
        "output_dropped_per_round": per_round(runs, lambda stats: sum(s["dropped"] for s in stats)),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))  # as `netbend live` does (live.cli)
    from engine.atomic import write_atomically
    from ndi_receiver import loopback_config

    work = Path(tempfile.mkdtemp(prefix="netbend-outputs-bench-"))
    if "NDI_CONFIG_DIR" not in os.environ:
        os.environ["NDI_CONFIG_DIR"] = str(loopback_config(work / "ndi"))
    cases = Cases(args, work)
    runs: dict[str, list] = {c: [] for c in CASES}
    for _ in range(args.rounds):  # the cases alternate, so a drifting load hits them alike
        for case in CASES:
            runs[case].append(cases.run(case))
    text = json.dumps(summary(args, cases, runs), indent=2)
    print(text)
    if args.json:
        write_atomically(args.json, text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
