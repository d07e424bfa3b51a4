"""What the OSC tests share: a model's U-Net points and limits, a show with one bend, an
OSC datagram builder and a clock the test moves (test_osc.py, test_osc_packets.py,
test_osc_server.py)."""
from __future__ import annotations

import struct

from pythonosc.osc_message_builder import OscMessageBuilder

from live.control.limits import ModelLimits
from live.control.state import Command, ShowState, apply

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


class FakeClock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


GOOD = osc("/netbend/strength", 0.5)  # a well-formed datagram, to wrap in broken bundles
