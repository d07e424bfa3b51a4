"""docs/examples: the Max patch parses as JSON, and every message it can send is one netbend
accepts (checked by the real address table against a show with its four bends set)."""
from __future__ import annotations

import json
from pathlib import Path

from live.control.limits import ModelLimits
from live.control.osc import ERROR, OscControl
from live.control.state import Command, ShowState, apply

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"
LAYERS = ("conv_in", "down.0", "down.1", "down.2", "down.3", "mid", "up.0", "up.1", "up.2", "up.3", "conv_out")
LIMITS = ModelLimits(LAYERS, {"latent": 4, **{n: 64 for n in LAYERS}})


def messages_of(patch: dict) -> list[tuple[str, tuple]]:
    """Every OSC message the patch's boxes can send: message boxes (with $1 filled in) and
    `prepend ADDRESS` objects fed by a menu (each item) or the prompt box."""
    boxes = {b["box"]["id"]: b["box"] for b in patch["patcher"]["boxes"]}
    feeds = {}
    for line in patch["patcher"]["lines"]:
        feeds.setdefault(line["patchline"]["destination"][0], []).append(line["patchline"]["source"][0])
    out = []
    for box in boxes.values():
        text = box.get("text", "")
        if box["maxclass"] == "message" and text.startswith("/netbend"):
            address, *args = text.split()
            value = 1 if "enable" in address or "freeze" in address else 0.5
            out.append((address, tuple(value if a == "$1" else _number(a) for a in args)))
        elif box["maxclass"] == "newobj" and text.startswith("prepend /netbend"):
            address = text.split()[1]
            for source in feeds.get(box["id"], []):
                items = boxes[source].get("items") or [["fog", "over", "water"]]
                for item in items:
                    out.append((address, tuple(item) if isinstance(item, list) else (item,)))
    return out


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def test_the_max_patch_parses_and_every_address_it_sends_is_accepted():
    patch = json.loads((EXAMPLES / "netbend.maxpat").read_text())
    assert patch["patcher"]["boxes"] and patch["patcher"]["lines"]
    sent = messages_of(patch)
    addresses = {a for a, _ in sent}
    assert {f"/netbend/bend/{n}/amount" for n in range(1, 5)} <= addresses
    assert {"/netbend/prompt", "/netbend/preset/load", "/netbend/state", "/netbend/bend/1/operator",
            "/netbend/bend/1/layer"} <= addresses
    state = ShowState()
    for n in range(1, 5):
        state = apply(state, Command(f"/netbend/bend/{n}/operator", ("rotate",)), LIMITS)
    from live.control.tempo import Tempo

    for address, args in sent:
        control = OscControl(lambda: state, lambda c: None, LIMITS, tempo=Tempo(120),
                             load_preset=lambda which: ShowState(), check_save=lambda name: None)
        replies = control.handle(address, args, ("127.0.0.1", 40000))
        assert not replies or replies[0][0] != ERROR, (address, args, replies)


def test_the_patch_listens_where_netbend_sends_feedback():
    patch = json.loads((EXAMPLES / "netbend.maxpat").read_text())
    texts = [b["box"].get("text", "") for b in patch["patcher"]["boxes"]]
    assert "udpsend 127.0.0.1 9000" in texts and "udpreceive 9001" in texts
    assert "--osc-feedback 127.0.0.1:9001" in (EXAMPLES / "touchdesigner.md").read_text()
