"""Event-sourced control: apply() is pure, validates everything, and never half-applies."""
import ast
import math
from pathlib import Path

import pytest

from engine.mappings import Mapping
from live.control.arguments import CommandError
from live.control.slots import BendSlot
from live.control.state import MAX_BENDS, Command, ShowState, apply, state_from_preset
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


def test_output_addresses_are_refused_by_apply_as_command_errors():
    with pytest.raises(CommandError, match=r"^/netbend/output/ndi/enable takes one integer, 0 or 1; got \[2\]$"):
        apply(ShowState(), Command("/netbend/output/ndi/enable", (2,)))
    with pytest.raises(CommandError, match=r"^/netbend/record/video/start takes one string, the path of a new .mp4"):
        apply(ShowState(), Command("/netbend/record/video/start", ("take.mov",)))
    state = ShowState(prompt="kept")
    assert apply(state, Command("/netbend/output/record/enable", (1,))) == state
    assert apply(state, Command("/netbend/record/video/stop", ())) == state


def test_control_and_outputs_import_each_other_one_way_only():
    """live.control.state checks the outputs' addresses with live.outputs.commands, which
    imports nothing of live.control (it used to import CommandError back from state)."""
    import live.outputs.commands

    tree = ast.parse(Path(live.outputs.commands.__file__).read_text(encoding="utf-8"))
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)] + \
        [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and m.startswith("live.control")], imported


def test_each_bend_field_changes_only_its_slot():
    s = run(ShowState(), ("/netbend/bend/1/operator", "add"), ("/netbend/bend/4/operator", "rotate"),
            ("/netbend/bend/4/opt", "plane", 0, 3), ("/netbend/bend/4/step", "1,2"),
            ("/netbend/bend/4/feature", "rms"), ("/netbend/bend/4/in_range", "auto"),
            ("/netbend/bend/4/curve", "exp"), ("/netbend/bend/4/attack", 20), ("/netbend/bend/4/release", 200),
            ("/netbend/bend/4/invert", 1))
    first = run(ShowState(), ("/netbend/bend/1/operator", "add")).slots[0]
    assert s.slots[0] == first and s.slots[1] is None and s.slots[2] is None
    bend, mapping = s.slots[3].bend, s.slots[3].mapping
    assert bend.opts == {"plane": (0, 3)} and bend.step == {1, 2}
    assert (mapping.in_range, mapping.curve, mapping.attack_ms, mapping.release_ms, mapping.invert) == \
        ("auto", "exp", 20.0, 200.0, True)
    assert run(s, ("/netbend/bend/4/operator", "none")).slots[3] is None
    with pytest.raises(CommandError, match="bend 1 has no mapping; set /netbend/bend/1/feature first"):
        apply(s, Command("/netbend/bend/1/curve", ("exp",)), LAYERS)
    with pytest.raises(CommandError, match="bend 4's param is driven by the audio feature 'rms'"):
        apply(s, Command("/netbend/bend/4/amount", (0.5,)), LAYERS)
