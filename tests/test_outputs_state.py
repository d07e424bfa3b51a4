"""Outputs in the show's state: /netbend/state lists each output and whether it is on, a
switch is echoed as applied, and a name the show does not have is refused with the list."""
from __future__ import annotations

import pytest

from live.control.arguments import CommandError
from live.control.state import Command, ShowState, apply, echo_messages
from live.outputs.fanout import Outputs
from live.outputs.output import Output
from live.show.disk import DiskWorker
from live.show.show import Show
from helpers_show import pipe  # noqa: F401  (pipe: the fixture)


class Quiet(Output):
    name = "ndi"

    def send(self, picture, frame):
        pass


def test_the_state_lists_outputs_and_a_switch_changes_only_its_own():
    state = ShowState(outputs=(("ndi", True), ("record", True)))
    assert ("/netbend/output/ndi/enable", (1,)) in state.messages()
    after = apply(state, Command("/netbend/output/ndi/enable", (0,)))
    assert after.outputs == (("ndi", False), ("record", True))
    assert echo_messages(state, after) == [("/netbend/output/ndi/enable", (0,))]
    with pytest.raises(CommandError, match="no output named 'spout'; outputs: ndi, record"):
        apply(state, Command("/netbend/output/spout/enable", (1,)))
    assert "outputs" not in state.to_dict()  # takes replay the same whatever outputs a show had


def test_the_show_reports_its_outputs_and_echoes_a_switch(pipe):
    echoed, errors = [], []
    show = Show(pipe, ShowState(prompt="neon"), echo=echoed.append, error=lambda a, r: errors.append((a, r)),
                disk=DiskWorker(inline=True))
    outputs = Outputs(frame_size=(64, 64))
    outputs.add(Quiet())
    show.outputs = outputs
    try:
        show.frame()
        assert show.state.outputs == (("ndi", True),)  # seen at the first frame boundary, and told
        assert echoed and ("/netbend/output/ndi/enable", (1,)) in show.state.messages()
        show.submit(Command("/netbend/output/ndi/enable", (0,)))
        show.frame()
        assert show.state.outputs == (("ndi", False),) and not outputs["ndi"].enabled
        assert echoed[-1].address == "/netbend/output/ndi/enable"
        show.submit(Command("/netbend/output/nope/enable", (1,)))
        show.frame()
        assert errors and "no output named 'nope'" in errors[-1][1] and "ndi" in errors[-1][1]
        assert show.state.outputs == (("ndi", False),)
    finally:
        outputs.close()


def test_oscquery_lists_the_outputs_with_their_values():
    from live.control.oscquery import namespace

    tree = namespace(ShowState(outputs=(("ndi", False),)))
    node = tree["CONTENTS"]["netbend"]["CONTENTS"]["output"]["CONTENTS"]["ndi"]["CONTENTS"]["enable"]
    assert node["TYPE"] == "i" and node["VALUE"] == [0]
    assert "output" not in namespace(ShowState())["CONTENTS"]["netbend"]["CONTENTS"]
