"""`netbend live` as a separate process, and the controller that steers it over real UDP
OSC on loopback: for the tests that run the app as a user does (test_live_app.py,
test_outputs_live.py).

    port = free_port()
    osc = Osc(port)                                 # replies and echoes come back to it
    app = netbend("live", "--osc-port", str(port), "--osc-feedback", f"127.0.0.1:{osc.port}", ...)
    osc.wait_for_app()
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

from engine.demo_audio import demo_audio
from live.media import write_audio_wav

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def netbend(*args: str, env: dict | None = None) -> subprocess.Popen:
    """``python -m live.cli ARGS`` from the checkout, its output in text pipes."""
    return subprocess.Popen([sys.executable, "-m", "live.cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env or os.environ.copy())


@pytest.fixture(scope="module")
def demo_wav(tmp_path_factory):
    """20 s of the demo audio as a WAV file, once per module."""
    path = tmp_path_factory.mktemp("audio") / "demo.wav"
    write_audio_wav(path, demo_audio(seconds=20.0), 44100)
    return path


class Osc:
    """The controller side: sends from one UDP socket and reads replies and echoes on it
    (the app's feedback target is this socket too). ``skip_unreadable``: datagrams
    python-osc cannot parse are passed over instead of failing the test."""

    def __init__(self, port: int, *, skip_unreadable: bool = False):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)  # nothing lost while the test sleeps
        self.sock.bind(("127.0.0.1", 0))
        self.port, self.app = self.sock.getsockname()[1], port
        self.skip_unreadable = skip_unreadable

    def send(self, address, *args):
        b = OscMessageBuilder(address=address)
        for a in args:
            b.add_arg(a)
        self.sock.sendto(b.build().dgram, ("127.0.0.1", self.app))

    def receive(self, timeout=2.0, until=None):
        """(address, args) of every message that arrives within ``timeout`` s, or up to ``until``'s."""
        got, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data, _ = self.sock.recvfrom(65536)
            except socket.timeout:
                break
            try:
                messages = [timed.message for timed in OscPacket(data).messages]  # a message or a bundle
            except Exception:  # noqa: BLE001 - python-osc raises several kinds
                if self.skip_unreadable:
                    continue
                raise
            got += [(m.address, tuple(m.params)) for m in messages]
            if until and any(m.address == until for m in messages):
                break
        return got

    def wait_for_app(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send("/netbend/state")  # answered while the model loads too: wait for /netbend/ready 1
            if ("/netbend/ready", (1,)) in self.receive(0.5, until="/netbend/state/end"):
                return
        raise AssertionError("the app never answered /netbend/state")
