"""The outputs' OSC addresses: their form is checked at the edge, the show carries them out.

    /netbend/output/<name>/enable i     0 | 1: switch one output (ndi, record, virtual-camera …)
    /netbend/record/video/start s       start recording the show to a new .mp4
    /netbend/record/video/stop          finish that recording

``check_output_command`` is what ``live.control.state.apply`` calls for these addresses on
the OSC thread (a malformed message is answered at once, as a CommandError); ``Outputs.act``
(on the render thread, at a frame boundary) then does it, and an output that does not exist
or a file that does is answered on /netbend/error by the show like any other refused
command. This module imports nothing of live.control: the dependency goes one way.
"""
from __future__ import annotations

import math
import re

__all__ = ["OUTPUT_PREFIXES", "check_output_command", "is_output_address", "output_name", "unknown_output"]

OUTPUT_PREFIXES = ("/netbend/output/", "/netbend/record/video/")
ENABLE = re.compile(r"^/netbend/output/([A-Za-z0-9-]+)/enable$")
START, STOP = "/netbend/record/video/start", "/netbend/record/video/stop"


def is_output_address(address: str) -> bool:
    return address.startswith(OUTPUT_PREFIXES)


def check_output_command(address: str, args: tuple) -> None:
    """ValueError naming the address and what it takes if the message is malformed; None if
    it is well formed."""
    if ENABLE.match(address):
        value = args[0] if len(args) == 1 else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value not in (0, 1):
            raise ValueError(f"{address} takes one integer, 0 or 1; got {list(args)!r}")
        return
    if address == START:
        if len(args) != 1 or not isinstance(args[0], str) or not args[0].lower().endswith(".mp4"):
            raise ValueError(f"{address} takes one string, the path of a new .mp4; got {list(args)!r}")
        return
    if address == STOP:
        if args:
            raise ValueError(f"{address} takes no arguments; got {len(args)}")
        return
    raise ValueError(f"unknown address {address!r}; the outputs' addresses are /netbend/output/<name>/enable i, "
                     f"{START} s and {STOP}")


def output_name(address: str) -> str:
    m = ENABLE.match(address)
    return m.group(1) if m else ""


def unknown_output(name: str, known) -> str:
    """The one wording of "no such output", whichever side refuses it (the OSC edge when the
    state knows the show's outputs, the show's Outputs otherwise)."""
    listing = ", ".join(known) or "none (add one with --ndi, --virtual-camera, --record-video …)"
    return f"no output named {name!r}; outputs: {listing}"
