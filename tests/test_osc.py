"""OSC control: the address table without sockets, then real UDP from a separate process.

The UDP tests run a small stand-in for the show: a real ShowState, a `submit` that puts
commands on a queue, and a thread of its own (the render thread's part) that applies
them with control.apply and calls server.echo(command). The sender is
tests/osc_client.py, a separate Python process using python-osc's SimpleUDPClient, over
127.0.0.1 only; replies come back to its sending socket, echoes to a feedback socket here.
"""
from __future__ import annotations

import json
import logging
import math
import queue
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_bundle_builder import OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from engine.features import FeatureFrame
from live.control.limits import ModelLimits
from live.control.state import MAX_BENDS, Command, CommandError, ShowState, apply
from live.control.osc import ERROR, STATE, STATE_END, OscControl
from live.control.osc_packets import PacketError, parse_packet
from live.control.osc_server import OscServer

CLIENT = Path(__file__).with_name("osc_client.py")
LAYERS = ("conv_in", "down.0", "down.1", "down.2", "down.3", "mid", "up.0", "up.1", "up.2", "up.3", "conv_out")
# what a model with these points allows: 4 latent channels, 64 at every U-Net point
LIMITS = ModelLimits(LAYERS, {"latent": 4, **{name: 64 for name in LAYERS}})
NAN, INF = float("nan"), float("inf")


def f32(x: float) -> float:
    """x as it comes back from an OSC float32."""
    return struct.unpack(">f", struct.pack(">f", x))[0]


def unmapped() -> ShowState:
    """show_with_bend() with bend 1's param set by hand (no mapping)."""
    return apply(show_with_bend(), Command("/netbend/bend/1/feature", ("none",)), LAYERS)


def show_with_bend() -> ShowState:
    """A show with a prompt and bend 1 (rotate at mid, mapped from rms)."""
    state = ShowState(prompt="fog", strength=0.5, seed=7)
    for address, args in [("/netbend/bend/1/operator", ("rotate",)), ("/netbend/bend/1/layer", ("mid",)),
                          ("/netbend/bend/1/param", (0.25,)), ("/netbend/bend/1/feature", ("rms",)),
                          ("/netbend/bend/1/scale", (0.0, 6.0))]:
        state = apply(state, Command(address, args), LIMITS)
    return state


def osc(address: str, *args, types: str | None = None) -> bytes:
    builder = OscMessageBuilder(address=address)
    for i, value in enumerate(args):
        builder.add_arg(value, types[i] if types else None)
    return builder.build().dgram


# ===================================================================== OscControl, no sockets

class FakeClock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class Table:
    """OscControl over a state held here; `submit` applies at once unless `queue_only`."""

    def __init__(self, state: ShowState | None = None, queue_only: bool = False, **kwargs):
        self.state = state if state is not None else show_with_bend()
        self.submitted: list[Command] = []
        self.queue_only = queue_only
        self.clock = FakeClock()
        kwargs.setdefault("load_preset", lambda which: ShowState(prompt=f"preset {which}"))
        self.control = OscControl(lambda: self.state, self.submit, LIMITS, clock=self.clock, **kwargs)

    def submit(self, command: Command) -> None:
        self.submitted.append(command)
        if not self.queue_only:
            self.state = apply(self.state, command, LIMITS)
            self.control.applied(command)

    def handle(self, address: str, *args):
        return self.control.handle(address, args, ("127.0.0.1", 9999))


VALID = [  # (address, args, what the show then reads)
    ("/netbend/bend/1/operator", ("add",), lambda s: s.slots[0].bend.operator == "add"),
    ("/netbend/bend/2/operator", ("threshold",), lambda s: s.slots[1].bend.operator == "threshold"),
    ("/netbend/bend/1/layer", ("up.2",), lambda s: s.slots[0].bend.layer == "up.2"),
    ("/netbend/bend/1/layer", (5,), lambda s: s.slots[0].bend.layer == "mid"),          # int index
    ("/netbend/bend/1/layer", (6.0,), lambda s: s.slots[0].bend.layer == "up.0"),       # float index
    ("/netbend/bend/1/layer", ("latent",), lambda s: s.slots[0].bend.layer == "latent"),
    ("/netbend/bend/1/param", (2,), lambda s: s.slots[0].bend.param == 2.0),             # int
    ("/netbend/bend/1/param", (0.5,), lambda s: s.slots[0].bend.param == 0.5),           # float
    ("/netbend/bend/1/amount", (0.5,), lambda s: s.slots[0].bend.param == pytest.approx(math.pi)),
    ("/netbend/bend/1/scale", (0, 3), lambda s: s.slots[0].mapping.out_range == (0.0, 3.0)),
    ("/netbend/bend/1/scale", (1.5, -1.5), lambda s: s.slots[0].mapping.out_range == (1.5, -1.5)),
    ("/netbend/bend/1/feature", ("bass",), lambda s: s.slots[0].mapping.feature == "bass"),
    ("/netbend/bend/1/feature", ("none",), lambda s: s.slots[0].mapping is None),
    ("/netbend/bend/1/target", ("channels", 0, 2), lambda s: str(s.slots[0].bend.target) == "channels 0 2"),
    ("/netbend/bend/1/target", ("random", 0.25), lambda s: str(s.slots[0].bend.target).startswith("random")),
    ("/netbend/bend/1/target", ("all",), lambda s: str(s.slots[0].bend.target) == "all"),
    ("/netbend/bend/1/step", (3,), lambda s: s.slots[0].bend.step == frozenset({3})),
    ("/netbend/bend/1/step", ("0:2",), lambda s: s.slots[0].bend.step == frozenset({0, 1})),
    ("/netbend/bend/1/step", ("all",), lambda s: s.slots[0].bend.step is None),
    ("/netbend/bend/1/enable", (0,), lambda s: s.slots[0].bend.enabled is False),
    ("/netbend/bend/1/enable", (1.0,), lambda s: s.slots[0].bend.enabled is True),
    ("/netbend/prompt", ("a cathedral of fog",), lambda s: s.prompt == "a cathedral of fog"),
    ("/netbend/strength", (1,), lambda s: s.strength == 1.0),                            # int
    ("/netbend/strength", (0.3,), lambda s: s.strength == 0.3),
    ("/netbend/seed", (42,), lambda s: s.seed == 42),
    ("/netbend/seed", (42.0,), lambda s: s.seed == 42),                                  # whole float
    ("/netbend/seed", (2**31 - 1,), lambda s: s.seed == 2**31 - 1),                      # the largest
    ("/netbend/seed", (5,), lambda s: s.seed == 5),
    ("/netbend/freeze", (1,), lambda s: s.frozen is True),
    ("/netbend/record/start", (), lambda s: s.recording is True),
    ("/netbend/record/stop", (), lambda s: s.recording is False),
    ("/netbend/preset/load", ("stained-glass",), lambda s: s.prompt == "preset stained-glass"),
    ("/netbend/preset/load", (3,), lambda s: s.prompt == "preset 3"),
    ("/netbend/preset/save", ("my_take-2",), lambda s: True),
]


@pytest.mark.parametrize("address,args,check", VALID, ids=[f"{a}{list(v)}" for a, v, _ in VALID])
def test_every_address_is_accepted_and_submitted(address, args, check):
    t = Table(unmapped() if address.endswith(("/param", "/amount")) else None)
    t.clock.t = 123.5
    assert t.handle(address, *args) == []
    assert t.submitted == [Command(address, args, time=123.5, source="osc")]
    assert check(t.state)


def test_state_query_replies_with_the_whole_state_and_submits_nothing():
    t = Table()
    replies = t.handle(STATE)
    assert replies == t.state.messages() + [("/netbend/ready", (1,)), (STATE_END, ())]
    addresses = [a for a, _ in replies]
    assert {"/netbend/prompt", "/netbend/strength", "/netbend/bend/1/operator", "/netbend/bend/1/layer",
            "/netbend/bend/1/scale"} <= set(addresses)
    assert addresses[-1] == STATE_END
    assert t.submitted == []


INVALID = [  # (address, args, reason pattern)
    ("/netbend/strength", ("loud",), r"takes a number .*str 'loud'"),
    ("/netbend/strength", (), r"got 0 argument"),
    ("/netbend/strength", (0.5, 0.5), r"got 2 argument"),
    ("/netbend/strength", (2.0,), r"must be in \(0, 1\]; got 2\.0"),
    ("/netbend/strength", (0,), r"must be in \(0, 1\]"),
    ("/netbend/strength", (NAN,), r"finite number; got nan"),
    ("/netbend/strength", (True,), r"takes a number"),
    ("/netbend/bend/1/param", (0.5,), r"driven by the audio feature 'rms'.*feature none"),
    ("/netbend/bend/1/amount", (0.5,), r"driven by the audio feature"),
    ("/netbend/bend/1/scale", (1.0,), r"two numbers"),
    ("/netbend/bend/1/scale", (0.0, NAN), r"finite"),
    ("/netbend/bend/99/param", (1.0,), rf"bend number must be 1\.\.{MAX_BENDS}; got 99"),
    ("/netbend/bend/0/operator", ("add",), r"bend number must be 1\.\."),
    ("/netbend/bend/1/operator", ("wobble",), r"unknown operator 'wobble'; valid operators: .*rotate"),
    ("/netbend/bend/1/layer", ("nowhere",), r"unknown layer 'nowhere'; valid: latent, .*mid"),
    ("/netbend/bend/1/layer", (99,), r"layer index 99 out of range"),
    ("/netbend/bend/1/layer", (1.5,), r"whole number"),
    ("/netbend/bend/1/feature", ("loudness",), r"unknown audio feature 'loudness'; allowed: rms"),
    ("/netbend/bend/1/target", ("sideways",), r"target"),
    ("/netbend/bend/1/target", (), r"takes a target"),
    ("/netbend/bend/1/step", ("soon",), r"bad step"),
    ("/netbend/bend/1/wiggle", (1,), r"unknown bend field 'wiggle'"),
    ("/netbend/bend/2/param", (0.5,), r"bend 2 is empty; set /netbend/bend/2/operator first"),
    ("/netbend/seed", (1.5,), r"whole number"),
    ("/netbend/seed", (2**31,), r"0\.\.2147483647"),
    ("/netbend/seed", (-1,), r"0\.\.2147483647"),
    ("/netbend/seed", (1e20,), r"0\.\.2147483647"),
    ("/netbend/freeze", (2,), r"takes 0 or 1"),
    ("/netbend/bend/1/scale", (0.0, 1e308), r"beyond rotate's limit"),
    ("/netbend/bend/1/target", ("channels", 9999999), r"out of range: layer mid"),
    ("/netbend/bend/1/curve", ("wobbly",), r"unknown curve"),
    ("/netbend/bend/1/attack", (-1,), r"0\.\.60000"),
    ("/netbend/bend/1/opt", ("plane",), r"option name and its value"),
    ("/netbend/bend/1/opt", ("wobble", 1), r"no option"),
    ("/netbend/bend/1/opt", ("plane", "R9"), r"plane"),
    ("/netbend/bend/1/opt", ("plane", 0, 99), r"plane \(0, 99\)"),
    ("/netbend/gain", (99,), r"-60\.\.40 dB"),
    ("/netbend/quantize", ("soon",), r"off, beat, bar"),
    ("/netbend/bend/\u0661/enable", (1,), r"unknown address"),
    ("/netbend/prompt\n", ("x",), r"unknown address"),
    ("/netbend/prompt", ("x" * 1001,), r"at most 1000"),
    ("/netbend/freeze", ("yes",), r"takes a number"),
    ("/netbend/preset/save", ("../escape",), r"letters, digits"),
    ("/netbend/preset/load", (None,), r"takes a number"),
    ("/netbend/state", (1,), r"no arguments"),
    ("/netbend/nope", (), r"unknown address '/netbend/nope'"),
    ("/some/other/app", (1.0,), r"unknown address '/some/other/app'"),
]


@pytest.mark.parametrize("address,args,reason", INVALID, ids=[f"{a}{list(v)}" for a, v, _ in INVALID])
def test_bad_messages_are_answered_and_change_nothing(address, args, reason):
    t = Table()
    before = t.state
    replies = t.handle(address, *args)
    assert len(replies) == 1
    reply_address, (about, why) = replies[0]
    assert reply_address == ERROR and about == address
    assert re.search(reason, why), why
    assert t.submitted == [] and t.state is before


def test_a_bad_reason_is_logged_once_however_often_it_comes(caplog):
    t = Table()
    with caplog.at_level(logging.INFO, logger="netbend.osc"):
        for _ in range(100):
            assert t.handle("/netbend/strength", "loud")[0][0] == ERROR
        t.handle("/netbend/strength", 2.0)
        t.handle("/netbend/strength", 2.0)
    lines = [r.getMessage() for r in caplog.records]
    assert sum("'loud'" in line for line in lines) == 1
    assert sum("got 2.0" in line for line in lines) == 1


def test_a_flood_of_different_bad_messages_logs_a_few_lines_a_second(caplog):
    t = Table()
    with caplog.at_level(logging.INFO, logger="netbend.osc"):
        for i in range(200):  # all at the same instant, each a new address
            t.handle(f"/junk/{i}")
        assert len(caplog.records) <= 5
        t.clock.t += 10.0
        t.handle("/junk/last")
    assert "more lines not logged" in caplog.records[-1].getMessage()


def test_a_message_may_depend_on_one_still_queued():
    # The render thread has not run yet: the operator is only queued.
    t = Table(ShowState(), queue_only=True)
    assert t.handle("/netbend/bend/3/operator", "add") == []
    assert t.handle("/netbend/bend/3/layer", "down.1") == []
    assert t.handle("/netbend/bend/3/param", 0.5) == []
    assert [c.address for c in t.submitted] == ["/netbend/bend/3/operator", "/netbend/bend/3/layer",
                                                "/netbend/bend/3/param"]
    assert t.state == ShowState()  # validating never changes the show


def test_queued_commands_count_until_echoed_or_stale():
    t = Table(ShowState(), queue_only=True, pending_s=2.0)
    t.handle("/netbend/bend/3/operator", "add")
    t.clock.t += 2.5  # never applied, never echoed: forgotten
    assert "bend 3 is empty" in t.handle("/netbend/bend/3/layer", "mid")[0][1][1]

    t = Table(ShowState(), queue_only=True)
    t.handle("/netbend/bend/3/operator", "add")
    t.control.applied(t.submitted[0])  # echoed, but (say) a preset load replaced the show since
    assert "bend 3 is empty" in t.handle("/netbend/bend/3/layer", "mid")[0][1][1]


def test_a_full_queue_is_an_error_reply_not_an_exception():
    def full(command):
        raise queue.Full

    control = OscControl(ShowState, full, LAYERS)
    (address, (about, why)), = control.handle("/netbend/prompt", ("x",), ("127.0.0.1", 1))
    assert address == ERROR and about == "/netbend/prompt" and "queue is full" in why


def test_validation_uses_the_newest_snapshot():
    t = Table(ShowState(), queue_only=True, pending_s=0.0)
    assert "bend 1 is empty" in t.handle("/netbend/bend/1/param", 1.0)[0][1][1]
    t.state = unmapped()  # the render thread published a new snapshot
    t.clock.t += 1.0
    assert t.handle("/netbend/bend/1/param", 1.0) == []


# ============================================================================== parse_packet

def test_parse_packet_reads_messages_and_nested_bundles_in_order():
    assert parse_packet(osc("/netbend/strength", 0.5)) == [("/netbend/strength", (0.5,), 0.0)]
    assert parse_packet(osc("/netbend/seed", 2**40, 0.25, types="hd")) == [("/netbend/seed", (2**40, 0.25), 0.0)]
    assert parse_packet(osc("/netbend/record/start")) == [("/netbend/record/start", (), 0.0)]
    assert parse_packet(osc("/netbend/x", True, False, "s", types="TFs")) == [("/netbend/x", (True, False, "s"), 0.0)]

    when = time.time() + 60.0
    inner = OscBundleBuilder(when + 1.0)
    inner.add_content(OscMessage(osc("/b", "x")))
    outer = OscBundleBuilder(when)
    outer.add_content(OscMessage(osc("/z", 1)))  # sender's order is kept, not sorted
    outer.add_content(inner.build())
    outer.add_content(OscMessage(osc("/a", 2.0)))
    start = time.monotonic()
    got = parse_packet(outer.build().dgram)
    assert time.monotonic() - start < 0.05  # a future time tag never sleeps
    assert [(a, args) for a, args, _ in got] == [("/z", (1,)), ("/b", ("x",)), ("/a", (2.0,))]
    assert got[0][2] == pytest.approx(when, abs=1e-3) and got[1][2] == pytest.approx(when + 1.0, abs=1e-3)


GOOD = osc("/netbend/strength", 0.5)
MALFORMED = [  # (datagram, address in the reply, reason pattern)
    (b"", "", r"empty packet"),
    (bytes(random.Random(0).randrange(32, 35) for _ in range(40)), "", r"not an OSC packet"),
    (b"\x00\xff\x13garbage", "", r"not an OSC packet"),
    (b"/netbend/strength", "", r"address string is not terminated"),
    (b"/netbend/\xff\xfe\x00\x00", "", r"not UTF-8"),
    (osc("/netbend/seed", 7)[:-2], "/netbend/seed", r"truncated OSC message: argument 1 \('i'\) needs 4 bytes"),
    (osc("/netbend/prompt", "fog")[:-4], "/netbend/prompt", r"truncated OSC message: string argument 1"),
    (osc("/netbend/seed")[:-4] + b",i\x00\x00", "/netbend/seed", r"truncated"),
    (b"/netbend/strength\x00\x00\x00,x\x00\x00\x00\x00\x00\x01", "/netbend/strength", r"unknown type tag 'x'"),
    (b"/netbend/strength\x00\x00\x00f\x00\x00\x00\x00\x00\x00\x01", "/netbend/strength", r"must start with ','"),
    (b"/netbend/prompt\x00,s\x00\x00\xff\xfe\x00\x00", "/netbend/prompt", r"not UTF-8"),
    (b"#bundle\x00\x00\x00", "", r"truncated time tag"),
    (b"#bundle\x00" + bytes(7) + b"\x01" + struct.pack(">i", 1000) + GOOD, "", r"does not fit"),
    (b"#bundle\x00" + bytes(7) + b"\x01" + struct.pack(">i", 8) + b"garbage!", "", r"neither a message"),
    (b"#bundle\x00" + bytes(7) + b"\x01" + b"\x00\x00", "", r"truncated element size"),
]


@pytest.mark.parametrize("dgram,address,reason", MALFORMED, ids=range(len(MALFORMED)))
def test_parse_packet_refuses_malformed_packets_with_a_reason(dgram, address, reason):
    with pytest.raises(PacketError, match=reason) as e:
        parse_packet(dgram)
    assert e.value.address == address


def test_deeply_nested_bundles_are_refused():
    dgram = osc("/x", 1)
    for _ in range(20):
        b = OscBundleBuilder(0)
        b.add_content(OscBundle(dgram) if dgram.startswith(b"#bundle") else OscMessage(dgram))
        dgram = b.build().dgram
    with pytest.raises(PacketError, match="nested deeper"):
        parse_packet(dgram)


# ========================================================================== real UDP harness

class Show:
    """The render thread's part, stood in: apply queued commands, then echo each one."""

    def __init__(self, state: ShowState):
        self.state = state
        self.commands: queue.Queue[Command] = queue.Queue(maxsize=256)
        self.applied: list[Command] = []
        self.refused: list[tuple[Command, str]] = []
        self.server: OscServer | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-render", daemon=True)

    def submit(self, command: Command) -> None:
        self.commands.put_nowait(command)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                command = self.commands.get(timeout=0.02)
            except queue.Empty:
                continue
            try:
                self.state = apply(self.state, command, LIMITS)
            except CommandError as e:
                self.refused.append((command, str(e)))
                continue
            self.applied.append(command)
            self.server.echo(command)


class Listener:
    """The controller's feedback port: a UDP socket on 127.0.0.1 this test reads."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def collect(self, count: int | None = None, until: str | None = None, timeout: float = 3.0) -> list:
        """(address, args) received until `count` messages, `until` arrives, or `timeout` s."""
        got, deadline = [], time.monotonic() + timeout
        while (count is None or len(got) < count) and (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65535)
            except socket.timeout:
                break
            for address, args, _ in parse_packet(data):  # a feature tick is one bundle
                got.append((address, args))
            if got and got[-1][0] == until:
                break
        return got

    def close(self):
        self.sock.close()


def run_client(port: int, steps: list, timeout: float = 15.0) -> list[dict]:
    """Run tests/osc_client.py in its own process; its output lines as dicts."""
    done = subprocess.run([sys.executable, str(CLIENT), str(port), json.dumps(steps)],
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def replies(lines: list[dict]) -> list[tuple[str, list]]:
    return [(line["address"], line["args"]) for line in lines if "address" in line]


def send(address: str, *args, types: str | None = None) -> dict:
    step = {"send": address, "args": list(args)}
    if types:
        step["types"] = types
    return step


STATE_QUERY = [send(STATE), {"recv": {"until": STATE_END, "timeout": 3.0}}]


@pytest.fixture
def live():
    """A running OscServer in front of a stand-in show, with a feedback listener."""
    made = []

    def make(state: ShowState | None = None, allow=("127.0.0.1",)):
        show = Show(state if state is not None else show_with_bend())
        feedback = Listener()
        control = OscControl(lambda: show.state, show.submit, LIMITS,
                             load_preset=lambda which: ShowState(prompt=f"preset {which}"))
        server = OscServer(control, "127.0.0.1", 0, allow=allow, feedback=("127.0.0.1", feedback.port))
        show.server = server
        show.start()
        server.start()
        made.append((show, server, feedback))
        return SimpleNamespace(show=show, server=server, feedback=feedback, port=server.port)

    yield make
    for show, server, feedback in made:
        start = time.monotonic()
        server.stop()
        assert time.monotonic() - start < 1.0 and not server.running  # prompt shutdown
        show.stop()
        feedback.close()


def test_changes_apply_and_each_is_echoed_to_the_feedback_target(live):
    s = live()
    sent = [send("/netbend/bend/2/operator", "rotate"),
            send("/netbend/bend/2/layer", "up.1"),
            send("/netbend/bend/2/param", 2),                       # int32 where a float is expected
            send("/netbend/bend/1/scale", 0, 3.14),                 # int32 and float32
            send("/netbend/prompt", "a cathedral of fog"),
            send("/netbend/strength", 0.75, types="d"),             # double
            send("/netbend/seed", 8.0, types="f"),                  # a whole float
            send("/netbend/bend/1/layer", 6)]                       # layer by index
    lines = run_client(s.port, sent + [{"recv": {"timeout": 0.3}}])
    assert replies(lines) == []  # accepted changes are answered on the feedback port only

    echoes = s.feedback.collect(timeout=1.0)
    told = dict(echoes)  # the newest value the controller was told, per address
    # each in its one canonical type, whatever the sender sent
    assert told["/netbend/bend/2/operator"] == ("rotate",) and told["/netbend/bend/2/layer"] == ("up.1",)
    assert told["/netbend/bend/2/param"] == (2.0,) and isinstance(told["/netbend/bend/2/param"][0], float)
    assert told["/netbend/bend/2/amount"] == (pytest.approx(2.0 / (2 * math.pi), rel=1e-6),)
    assert told["/netbend/bend/1/scale"] == (0.0, pytest.approx(3.14, rel=1e-6))
    assert told["/netbend/prompt"] == ("a cathedral of fog",) and told["/netbend/strength"] == (0.75,)
    assert told["/netbend/seed"] == (8,) and isinstance(told["/netbend/seed"][0], int)
    assert told["/netbend/bend/1/layer"] == ("up.0",)
    # nothing is echoed that did not change: bend 1's operator was never touched
    assert "/netbend/bend/1/operator" not in told
    # the first echo of each change comes in the order they were sent
    firsts = [a for a in dict.fromkeys(a for a, _ in echoes)]
    wanted = [step["send"] for step in sent]
    assert [a for a in firsts if a in wanted] == list(dict.fromkeys(wanted))

    state = s.show.state
    bend = state.slots[1].bend
    assert (bend.operator, bend.layer, bend.param) == ("rotate", "up.1", 2.0)
    assert state.slots[0].mapping.out_range == (0.0, f32(3.14))
    assert state.prompt == "a cathedral of fog" and state.strength == 0.75 and state.seed == 8
    assert state.slots[0].bend.layer == "up.0"
    assert s.show.refused == []
    assert all(c.source == "osc" for c in s.show.applied)


def test_state_query_replies_with_the_whole_state_and_an_end_marker(live):
    s = live()
    got = replies(run_client(s.port, STATE_QUERY))
    assert got[-1] == (STATE_END, [])
    expected = s.show.state.messages()
    assert len(got) == len(expected) + 2 and got[-2] == ("/netbend/ready", [1])
    for (address, args), (want_address, want_args) in zip(got, expected):
        assert address == want_address
        assert args == [pytest.approx(a) if isinstance(a, float) else a for a in want_args]
    table = dict(got)
    assert table["/netbend/prompt"] == ["fog"]
    assert table["/netbend/bend/1/operator"] == ["rotate"] and table["/netbend/bend/1/layer"] == ["mid"]
    assert table["/netbend/bend/1/scale"] == [0.0, 6.0]
    # Max and TouchDesigner send from random ports: the reply also goes to the feedback target
    fed = s.feedback.collect(until=STATE_END)
    assert [a for a, _ in fed] == [a for a, _ in got]


BAD_OVER_UDP = [  # (step, address in the reply, reason pattern)
    (send("/netbend/strength", "loud"), "/netbend/strength", r"takes a number .*'loud'"),
    (send("/netbend/strength"), "/netbend/strength", r"got 0 argument"),
    (send("/netbend/bend/1/scale", 1.0), "/netbend/bend/1/scale", r"two numbers"),
    (send("/netbend/nope", 1), "/netbend/nope", r"unknown address"),
    (send("/some/other/app", 1.0), "/some/other/app", r"unknown address"),
    (send("/netbend/strength", NAN), "/netbend/strength", r"finite number; got nan"),
    (send("/netbend/bend/1/scale", 0.0, INF, types="fd"), "/netbend/bend/1/scale", r"finite number; got inf"),
    (send("/netbend/strength", 2.0), "/netbend/strength", r"must be in \(0, 1\]; got 2\.0"),
    (send("/netbend/bend/99/param", 1.0), "/netbend/bend/99/param", r"bend number must be 1\.\.8; got 99"),
    (send("/netbend/bend/1/operator", "wobble"), "/netbend/bend/1/operator",
     r"unknown operator 'wobble'; valid operators: .*ablate, abs, add, .*rotate"),
    (send("/netbend/bend/1/layer", "nowhere"), "/netbend/bend/1/layer", r"unknown layer 'nowhere'"),
    (send("/netbend/freeze", True), "/netbend/freeze", r"takes a number"),
    (send("/netbend/preset/save", "../x"), "/netbend/preset/save", r"letters, digits"),
    ({"raw": bytes(random.Random(1).randrange(0x30, 0x7f) for _ in range(64)).hex()}, "", r"not an OSC packet"),
    ({"raw": ""}, "", r"empty packet"),
    ({"raw": osc("/netbend/seed", 7)[:-3].hex()}, "/netbend/seed", r"truncated"),
    ({"raw": (b"/netbend/strength\x00\x00\x00,x\x00\x00" + bytes(4)).hex()}, "/netbend/strength",
     r"unknown type tag"),
    ({"raw": (b"#bundle\x00" + bytes(8) + struct.pack(">i", 999) + GOOD).hex()}, "", r"does not fit"),
]


@pytest.mark.parametrize("step,address,reason", BAD_OVER_UDP, ids=range(len(BAD_OVER_UDP)))
def test_bad_input_is_answered_on_netbend_error_and_the_server_keeps_serving(live, step, address, reason):
    s = live()
    before = s.show.state
    got = replies(run_client(s.port, [step] + STATE_QUERY))
    assert got[0][0] == ERROR, got
    about, why = got[0][1]
    assert about == address
    assert re.search(reason, why), why
    assert got[-1] == (STATE_END, [])  # and the next message is still answered
    assert s.show.state is before and s.show.applied == [] and s.show.commands.empty()
    assert s.feedback.collect(count=1) == [(ERROR, (about, why))]  # errors also go to feedback


def test_a_hundred_bad_messages_get_bounded_replies_a_summary_and_one_log_line(live, caplog):
    s = live()
    with caplog.at_level(logging.INFO, logger="netbend.osc"):
        got = replies(run_client(s.port, [send("/netbend/strength", "loud")] * 100 +
                                 [{"sleep": 1.1}] + STATE_QUERY))
    errors = [why for a, (about, why) in ((a, args) for a, args in got if a == ERROR)]
    assert 30 <= len(errors) <= 45  # a burst of twice REPLY_RATE, then one summary
    assert any(re.search(r"\d+ replies not sent: over 20 errors", why) for why in errors)
    assert got[-1] == (STATE_END, [])  # a second later the sender is answered again
    assert sum("'loud'" in r.getMessage() for r in caplog.records) == 1


def test_garbage_does_not_stop_the_server(live):
    s = live()
    rng = random.Random(2)
    garbage = [{"raw": bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))).hex()} for _ in range(50)]
    garbage += [{"raw": (b"/" + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))).hex()}
                for _ in range(50)]
    got = replies(run_client(s.port, garbage + [send("/netbend/prompt", "still here"),
                                                {"recv": {"count": 100, "timeout": 3.0}}]))
    assert 30 <= len(got) <= 45 and all(a == ERROR for a, _ in got)  # bounded: see the test above
    assert s.server.running
    assert (("/netbend/prompt", ("still here",))) in s.feedback.collect(until="/netbend/prompt")
    assert s.show.state.prompt == "still here"


def test_a_future_bundle_does_not_stall_the_next_message(live):
    s = live()
    lines = run_client(s.port, [{"bundle": [["/netbend/prompt", ["from the future"]]], "ahead": 60.0}] + STATE_QUERY)
    sent_at = next(line["t"] for line in lines if line.get("sent") == STATE)
    end_at = next(line["t"] for line in lines if line.get("address") == STATE_END)
    assert end_at - sent_at < 0.5  # not the minute the tag asks for
    # bundles apply on arrival (see live/control/osc_server.py): the prompt changed, not in a minute.
    # The state reply also reaches the feedback port, with the prompt as it was if it came
    # before the render thread applied the bundle: read on until the echo.
    echo, fed = ("/netbend/prompt", ("from the future",)), []
    while echo not in fed and (more := s.feedback.collect(until="/netbend/prompt")):
        fed += more
    assert echo in fed


def test_each_message_of_a_bundle_is_handled_like_a_single_message(live):
    s = live()
    bundle = [["/netbend/bend/3/operator", ["add"]], ["/netbend/bend/3/layer", ["down.1"]],
              ["/netbend/strength", ["loud"]], ["/netbend/bend/3/param", [0.5]]]
    got = replies(run_client(s.port, [{"bundle": bundle, "ahead": 0.0}, {"recv": {"timeout": 0.5}}]))
    assert len(got) == 1 and got[0][0] == ERROR and got[0][1][0] == "/netbend/strength"
    echoes = s.feedback.collect(timeout=1.0)  # the error, then the echoes, in bundle order
    firsts = list(dict.fromkeys(a for a, _ in echoes if a != ERROR))
    assert [a for a in firsts if a in ("/netbend/bend/3/operator", "/netbend/bend/3/layer",
                                       "/netbend/bend/3/param")] == ["/netbend/bend/3/operator",
                                                                    "/netbend/bend/3/layer", "/netbend/bend/3/param"]
    bend = s.show.state.slots[2].bend
    assert (bend.operator, bend.layer, bend.param) == ("add", "down.1", 0.5)


def test_a_sender_not_on_the_allow_list_gets_no_reply_and_changes_nothing(live, caplog):
    s = live(allow=["10.9.8.7", "192.168.0.0/16"])
    before = s.show.state
    with caplog.at_level(logging.INFO, logger="netbend.osc"):
        got = replies(run_client(s.port, [send("/netbend/prompt", "intruder"), send("/netbend/strength", "loud"),
                                          {"raw": "00ff"}] + [send(STATE), {"recv": {"timeout": 0.5}}]))
    assert got == []
    assert s.feedback.collect(timeout=0.3) == []
    assert s.show.state is before and s.show.commands.empty()
    denied = [r.getMessage() for r in caplog.records if "allow list" in r.getMessage()]
    assert len(denied) == 1 and "127.0.0.1" in denied[0]


def test_allow_list_entries_are_checked():
    control = OscControl(ShowState, lambda c: None)
    with pytest.raises(ValueError, match="not an IP address or network"):
        OscServer(control, allow=["my-laptop"])


def test_audio_features_go_to_the_feedback_target_at_most_features_hz(live):
    s = live()
    clock = FakeClock(0.0)
    control = OscControl(ShowState, lambda c: None)
    server = OscServer(control, feedback=("127.0.0.1", s.feedback.port), features_hz=30.0, clock=clock)
    try:
        frame = FeatureFrame(0.0, {"rms": 0.5, "bass": 0.125, "onset": 1.0})
        assert server.send_features(frame) is True
        # one bundle per tick, not a datagram per feature
        data = s.feedback.sock.recv(65535)
        assert data.startswith(b"#bundle")
        assert [(a, args) for a, args, _ in parse_packet(data)] == [
            ("/netbend/audio/rms", (0.5,)), ("/netbend/audio/bass", (0.125,)), ("/netbend/audio/onset", (1.0,))]
        sent = 0
        for frame_number in range(1, 121):  # two seconds of a 60 fps render loop
            clock.t = frame_number / 60.0
            sent += server.send_features(frame)
        assert 58 <= sent <= 61
        with OscServer(control) as silent:
            assert silent.send_features(frame) is False  # no feedback target: nothing to do
    finally:
        server.stop()


def test_a_port_in_use_is_named():
    control = OscControl(ShowState, lambda c: None)
    with OscServer(control) as first:
        with pytest.raises(OSError, match=f"cannot listen for OSC on 127.0.0.1:{first.port}"):
            OscServer(control, port=first.port)
