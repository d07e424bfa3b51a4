"""OSC control: the address table (OscControl) without sockets; the packet parser is tested
in test_osc_packets.py and the server over real UDP in test_osc_server.py."""
from __future__ import annotations

import logging
import math
import queue
import re

import pytest

from live.control.osc import ERROR, STATE, STATE_END, OscControl
from live.control.state import MAX_BENDS, Command, ShowState, apply
from helpers_osc import LAYERS, LIMITS, NAN, FakeClock, show_with_bend, unmapped




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
