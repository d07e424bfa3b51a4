"""Soak a real show under mixed OSC traffic and a garbage flood; print what it did.

    python scripts/soak.py [--minutes 10] [--model tiny] [--flood-rate 2500] [--json out.json]

Starts ``netbend live --headless --no-audio`` in its own process, as a VJ would, and talks to
it over UDP from other processes and sockets:

  patch     a controller on its own socket: bend amounts at 30 Hz, a prompt every 5 s, a preset
            load every 20 s, a state query every 2 s, a few bad messages a second;
  probe     legitimate prompt changes (one every 0.2 s during the measured phases); the time
            from sending one to its echo on the feedback port is the command's delay;
  flooder   a separate process sending garbage (random bytes and malformed OSC) at
            --flood-rate packets a second, from one socket.

Phases, in one run so the figures are ratios of like with like: quiet (15 s), flood (15 s),
quiet again (15 s), then the soak itself for the rest of --minutes with the patch's traffic
and a flood burst of 10 s every minute. Every 10 s it prints RSS, fps, frames, frame errors,
commands refused and packets dropped. At the end, one JSON line:

  fps_quiet, fps_flood, fps_ratio          the show's own fps (/netbend/stats), flood / quiet
  probe_p95_ms_quiet, probe_p95_ms_flood   p95 of a legitimate command's send -> echo delay
  probes_lost_flood                         probes whose echo never came
  reply_ratio_max                           largest bytes replied to the sender / bytes sent, per query
  rss_mb_start, rss_mb_end, rss_mb_max      the show process's resident memory
  frame_errors                              frames that failed over the whole run

Figures depend on the machine (and what else runs on it): the script prints them, it does
not judge them.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
from pythonosc.osc_message_builder import OscMessageBuilder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.atomic import write_atomically  # noqa: E402
from live.control.osc_packets import PacketError, parse_packet  # noqa: E402

FLOODER = r"""
import os, random, socket, sys, time
port, rate = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
junk = [b"/netbend/strength\x00\x00\x00,f\x00\x00\x3e", b"/netbend/freeze\x00,r\x00\x00\x00\x00\x00\x01",
        b"#bundle\x00" + bytes(8) + b"\x00\x00\x03\xe8", b"/x" + b"a" * 500 + b"\x00\x00"]
rng = random.Random(0)
start, n = time.monotonic(), 0
while True:
    s.sendto(os.urandom(rng.randrange(8, 120)) if n % 2 else junk[n % len(junk)], ("127.0.0.1", port))
    n += 1
    ahead = n / rate - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
"""


def message(address: str, *args) -> bytes:
    b = OscMessageBuilder(address=address)
    for a in args:
        b.add_arg(a)
    return b.build().dgram


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


class Feedback(threading.Thread):
    """The feedback port: records when each echoed prompt arrived."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.prompts: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.sock.recv(65535)
            except socket.timeout:
                continue
            now = time.monotonic()
            try:
                for address, args, _ in parse_packet(data):
                    if address == "/netbend/prompt" and args:
                        self.prompts.setdefault(str(args[0]), now)
            except PacketError:
                pass


class Show:
    """The show process and a query socket for /netbend/stats and reply sizes."""

    def __init__(self, args, port: int, feedback: int):
        cmd = [sys.executable, "-m", "live.cli", "live", "--headless", "--no-audio", "--model", args.model,
               "--osc-port", str(port), "--osc-feedback", f"127.0.0.1:{feedback}",
               "--duration", str(args.minutes * 60 + 120)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.ps = psutil.Process(self.proc.pid)
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))

    def ask(self, dgram: bytes, until: str, timeout: float = 2.0) -> tuple[list, int]:
        """Send ``dgram``; (messages, bytes) replied to this socket until ``until`` or quiet."""
        self.sock.sendto(dgram, ("127.0.0.1", self.port))
        got, size, deadline = [], 0, time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, min(0.3, deadline - time.monotonic())))
            try:
                data = self.sock.recv(65535)
            except socket.timeout:
                if until is None and got:
                    break  # the reply is over
                continue
            size += len(data)
            try:
                got += [(a, args) for a, args, _ in parse_packet(data)]
            except PacketError:
                continue
            if until and got and got[-1][0] == until:
                break
        return got, size

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def stats(self) -> dict:
        got, _ = self.ask(message("/netbend/stats"), "/netbend/stats/end")
        return {a.rsplit("/", 1)[1]: args[0] for a, args in got if args}

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def wait_ready(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got, _ = self.ask(message("/netbend/state"), "/netbend/state/end", timeout=1.0)
            if ("/netbend/ready", (1,)) in got:
                return
            if self.proc.poll() is not None:
                raise SystemExit(f"the show exited with {self.proc.returncode}")
        raise SystemExit("the show never became ready")


class Patch(threading.Thread):
    """A controller's everyday traffic from its own socket."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port, self.stop, self.sent = port, threading.Event(), 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)

    def send(self, dgram: bytes) -> None:
        self.sock.sendto(dgram, ("127.0.0.1", self.port))
        self.sent += 1
        try:
            while True:
                self.sock.recv(65535)  # replies: drained, not read
        except BlockingIOError:
            pass

    def run(self) -> None:
        rng = random.Random(1)
        self.send(message("/netbend/bend/1/operator", "rotate"))
        self.send(message("/netbend/bend/1/layer", "mid"))
        self.send(message("/netbend/bend/1/feature", "none"))
        tick = 0
        while not self.stop.wait(1 / 30):
            tick += 1
            self.send(message("/netbend/bend/1/amount", 0.5 + 0.5 * rng.random()))
            if tick % 150 == 0:
                self.send(message("/netbend/prompt", "patch", "prompt", str(tick)))
            if tick % 600 == 0:
                self.send(message("/netbend/preset/load", rng.choice(["default", "live-stained-glass"])))
                self.send(message("/netbend/bend/1/operator", "rotate"))
                self.send(message("/netbend/bend/1/feature", "none"))
            if tick % 60 == 0:
                self.send(message("/netbend/state"))
            if tick % 10 == 0:
                self.send(message("/netbend/strength", "loud"))  # a patching mistake
                self.send(message("/netbend/bend/9/param", 1.0))


def measure(show: Show, feedback: Feedback, seconds: float, tag: str) -> dict:
    """fps (the show's own) and the probe delays over ``seconds``."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent: dict[str, float] = {}
    start_frames = show.stats().get("frames", 0)
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < seconds:
        text = f"probe {tag} {i}"
        sent[text] = time.monotonic()
        probe.sendto(message("/netbend/prompt", text), ("127.0.0.1", show.port))
        i += 1
        time.sleep(0.2)
    elapsed = time.monotonic() - t0
    frames = show.stats().get("frames", 0) - start_frames
    time.sleep(1.0)  # late echoes
    delays = [feedback.prompts[t] - s for t, s in sent.items() if t in feedback.prompts]
    probe.close()
    return {"fps": frames / elapsed, "p95_ms": 1000 * percentile(delays, 95), "lost": len(sent) - len(delays),
            "probes": len(sent)}


def reply_ratios(show: Show) -> dict:
    """Bytes replied to the sender per byte of query, for the queries an attacker would pick."""
    queries = {"state": message("/netbend/state"), "stats": message("/netbend/stats"),
               "bad address": message("/" + "x" * 900, 1.0), "bad value": message("/netbend/strength", "loud"),
               "garbage": os.urandom(64)}
    ratios = {}
    for name, dgram in queries.items():
        time.sleep(1.1)  # a fresh reply budget for each
        _, size = show.ask(dgram, None, timeout=1.5)
        ratios[name] = round(size / len(dgram), 1)
    return ratios


class Flood:
    """The garbage flooder: a separate process, started and stopped between phases."""

    def __init__(self, port: int, rate: float):
        self.port, self.rate = port, rate
        self.proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None

    def start(self) -> None:
        if self.proc is None:
            self.proc = subprocess.Popen([sys.executable, "-c", FLOODER, str(self.port), str(self.rate)])

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill()
            proc.wait()


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the soak after the measured phases")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--flood-rate", type=float, default=2500.0, help="garbage packets a second")
    parser.add_argument("--phase", type=float, default=15.0, help="seconds of each measured phase")
    parser.add_argument("--json", help="also write the summary here")
    return parser.parse_args(argv)


def measured_phases(show: Show, feedback: Feedback, flood: Flood, seconds: float) -> dict:
    """Quiet, flood, quiet again, then the reply ratios; printed once all are measured."""
    phases = {"quiet": measure(show, feedback, seconds, "quiet")}
    flood.start()
    time.sleep(1.0)
    phases["flood"] = measure(show, feedback, seconds, "flood")
    flood.stop()
    phases["quiet2"] = measure(show, feedback, seconds, "quiet2")
    phases["ratios"] = reply_ratios(show)
    print(f"quiet {phases['quiet']}\nflood {phases['flood']}\nquiet again {phases['quiet2']}\n"
          f"reply ratios {phases['ratios']}", flush=True)
    return phases


def soak(show: Show, flood: Flood, minutes: float, rss: list[float]) -> Patch:
    """The patch's traffic for ``minutes``, a 10 s flood burst every minute after the first;
    a line of the show's numbers every 10 s, its RSS appended to ``rss``."""
    patch = Patch(show.port)
    patch.start()
    t0 = time.monotonic()
    last = t0
    while time.monotonic() - t0 < minutes * 60:
        minute = int((time.monotonic() - t0) // 60)
        flooding = (time.monotonic() - t0) % 60 < 10 and minute > 0
        if flooding and not flood.running:
            flood.start()
        elif not flooding and flood.running:
            flood.stop()
        time.sleep(0.5)
        if time.monotonic() - last >= 10:
            last = time.monotonic()
            s = show.stats()
            rss.append(show.rss_mb())
            print(f"t={last - t0:6.0f}s rss={rss[-1]:7.1f}MB fps={s.get('fps', float('nan')):6.2f} "
                  f"frames={s.get('frames', 0):7d} frame_errors={s.get('frame_errors', 0)} "
                  f"refused={s.get('commands_refused', 0)} dropped={s.get('osc_dropped', 0)} "
                  f"replies_dropped={s.get('osc_replies_dropped', 0)}{' FLOOD' if flooding else ''}", flush=True)
    patch.stop.set()
    return patch


def summarise(args: argparse.Namespace, phases: dict, rss: list[float], final: dict, patch: Patch) -> dict:
    quiet, flood, quiet2, ratios = phases["quiet"], phases["flood"], phases["quiet2"], phases["ratios"]
    return {
        "model": args.model, "flood_rate": args.flood_rate, "minutes": args.minutes,
        "fps_quiet": round((quiet["fps"] + quiet2["fps"]) / 2, 2), "fps_flood": round(flood["fps"], 2),
        "fps_ratio": round(flood["fps"] / ((quiet["fps"] + quiet2["fps"]) / 2), 3),
        "probe_p95_ms_quiet": round(max(quiet["p95_ms"], quiet2["p95_ms"]), 1),
        "probe_p95_ms_flood": round(flood["p95_ms"], 1), "probes_lost_flood": flood["lost"],
        "reply_ratios": ratios, "reply_ratio_max": max(ratios.values()),
        "rss_mb_start": round(rss[0], 1), "rss_mb_end": round(rss[-1], 1), "rss_mb_max": round(max(rss), 1),
        "frames": final.get("frames"), "frame_errors": final.get("frame_errors"),
        "patch_messages": patch.sent, "osc_dropped": final.get("osc_dropped"),
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    port = free_port()
    feedback = Feedback()
    feedback.start()
    show = Show(args, port, feedback.port)
    flood = Flood(port, args.flood_rate)
    try:
        show.wait_ready()
        rss = [show.rss_mb()]
        print(f"show ready (pid {show.proc.pid}, OSC {port}); RSS {rss[0]:.0f} MB", flush=True)
        phases = measured_phases(show, feedback, flood, args.phase)
        patch = soak(show, flood, args.minutes, rss)
        summary = summarise(args, phases, rss, show.stats(), patch)
        print(json.dumps(summary), flush=True)
        if args.json:
            write_atomically(args.json, json.dumps(summary, indent=2) + "\n")
    finally:
        flood.stop()
        feedback.stop.set()
        show.stop()


if __name__ == "__main__":
    main()
