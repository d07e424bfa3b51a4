"""The OSC server over real UDP from a separate process.

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

from engine.features import FeatureFrame
from live.control.osc import ERROR, STATE, STATE_END, OscControl
from live.control.osc_packets import parse_packet
from live.control.osc_server import OscServer
from live.control.state import Command, CommandError, ShowState, apply
from helpers_osc import GOOD, INF, LIMITS, NAN, FakeClock, f32, osc, show_with_bend

CLIENT = Path(__file__).with_name("osc_client.py")


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


def test_to_feedback_sends_one_message_to_the_feedback_target_only_while_running(live):
    s = live()
    s.server.to_feedback("/netbend/tempo", (128.0,))  # what a Link or tap tempo change sends
    assert s.feedback.collect(count=1) == [("/netbend/tempo", (128.0,))]
    s.server.stop()
    s.server.to_feedback("/netbend/tempo", (90.0,))  # stopped: nothing leaves, nothing raises
    assert s.feedback.collect(timeout=0.2) == []
    with OscServer(OscControl(ShowState, lambda c: None)) as silent:
        silent.to_feedback("/netbend/tempo", (90.0,))  # no feedback target: nothing to do


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
