"""Event-sourced control: apply() is pure, validates everything, and never half-applies."""
import math

import pytest

from engine.mappings import Mapping
from live.control.state import MAX_BENDS, BendSlot, Command, CommandError, ShowState, apply, state_from_preset
from live.control.presets import load_preset

LAYERS = ["conv_in", "down.0", "mid", "up.0", "conv_out"]


def run(state, *commands, layers=LAYERS):
    for address, *args in commands:
        state = apply(state, Command(address, tuple(args)), layers)
    return state


def test_bend_lifecycle_over_the_address_space():
    s = run(ShowState(), ("/netbend/bend/2/operator", "rotate"), ("/netbend/bend/2/layer", 2),
            ("/netbend/bend/2/param", 1), ("/netbend/bend/2/target", "channels", 0, 2),
            ("/netbend/bend/2/step", "all"), ("/netbend/bend/2/feature", "rms"),
            ("/netbend/bend/2/scale", 0.0, math.pi), ("/netbend/bend/2/enable", 0))
    slot = s.slots[1]
    assert s.slots[0] is None
    assert slot.bend.operator == "rotate" and slot.bend.layer == "mid" and slot.bend.param == 1.0
    assert str(slot.bend.target) == "channels 0 2" and not slot.bend.enabled
    assert slot.mapping.feature == "rms" and slot.mapping.out_range == (0.0, math.pi)


def test_ints_and_floats_are_both_numbers():
    s = run(ShowState(), ("/netbend/strength", 1), ("/netbend/seed", 7.0), ("/netbend/freeze", 1.0))
    assert s.strength == 1.0 and s.seed == 7 and s.frozen


@pytest.mark.parametrize("address, args, message", [
    ("/netbend/strength", ("loud",), "takes a number"),
    ("/netbend/strength", (float("nan"),), "finite"),
    ("/netbend/strength", (2.0,), r"must be in \(0, 1\]"),
    ("/netbend/strength", (), "got 0 argument"),
    ("/netbend/seed", (1.5,), "whole number"),
    ("/netbend/bend/99/operator", ("add",), "bend number must be 1..8"),
    ("/netbend/bend/1/operator", ("wobble",), "valid operators: .*rotate"),
    ("/netbend/bend/3/param", (1.0,), "bend 3 is empty"),
    ("/netbend/bend/1/colour", ("red",), "unknown bend field"),
    ("/netbend/tempo", (120,), "unknown address"),
    ("/netbend/preset/save", ("../etc/passwd",), "letters, digits"),
])
def test_bad_commands_raise_and_change_nothing(address, args, message):
    before = run(ShowState(), ("/netbend/bend/1/operator", "add"))
    with pytest.raises(CommandError, match=message):
        apply(before, Command(address, args), LAYERS)
    assert before.slots[0].bend.operator == "add"


@pytest.mark.parametrize("args, message", [((9,), "out of range 0..4"), (("middle",), "unknown layer 'middle'")])
def test_layers_are_checked_against_the_model(args, message):
    s = run(ShowState(), ("/netbend/bend/1/operator", "add"))
    with pytest.raises(CommandError, match=message):
        apply(s, Command("/netbend/bend/1/layer", args), LAYERS)


def test_bad_feature_and_target_messages_list_what_is_allowed():
    s = run(ShowState(), ("/netbend/bend/1/operator", "add"))
    with pytest.raises(CommandError, match="rms"):
        apply(s, Command("/netbend/bend/1/feature", ("loudness",)))
    with pytest.raises(CommandError, match="unknown target kind"):
        apply(s, Command("/netbend/bend/1/target", ("everything",)))


def test_state_round_trips_and_describes_itself():
    s = run(ShowState(prompt="neon"), ("/netbend/bend/1/operator", "rotate"), ("/netbend/bend/1/feature", "bass"))
    assert ShowState.from_dict(s.to_dict()) == s
    messages = dict((a, args) for a, args in s.messages())
    assert messages["/netbend/prompt"] == ("neon",) and messages["/netbend/bend/1/operator"] == ("rotate",)


def test_state_from_every_stream_preset():
    p = load_preset("live-stained-glass")
    s = state_from_preset(p)
    assert s.bends == p.bends and s.preset == p.name and len(s.slots) == MAX_BENDS
