"""Event-sourced show control: every change is a ``Command``; the show is a ``ShowState``.

OSC messages, keys, preset loads and replayed takes all become ``Command`` values on one
queue. The render thread applies them at frame boundaries with the pure function
``apply(state, command, limits) -> state``; the OSC thread calls the same function on the
newest snapshot to validate a message before queueing it, so a bad message is answered at
once and never reaches the show. A take is the list of applied commands with their times.

``limits`` (live.control.limits.ModelLimits) is what the loaded model allows: a command is
either valid for that model (its layers, the channels at each, a seed OSC can carry, a
param within the operator's declared limit) and applied, or refused with a reason.

The address space (DESIGN.md; bends are 1-based; ints and floats are both numbers; the
type shown is the one netbend sends back in echoes and state replies):

    /netbend/prompt s …           several symbols are joined with spaces (Max sends words)
    /netbend/strength f           (0, 1]
    /netbend/seed i               0 .. 2147483647
    /netbend/freeze i             0 | 1
    /netbend/gain f               input gain in dB, -60 .. 40
    /netbend/quantize s           off | beat | bar: when preset loads and prompts take effect
    /netbend/preset/load s|i [s]  a preset name or slot number [, off | beat | bar]
    /netbend/preset/save s        a name: letters, digits, . _ -
    /netbend/record/start, /netbend/record/stop
    /netbend/state                query: replies with every address below, then /netbend/state/end

    /netbend/bend/<n>/operator s  an operator name (none: empty the slot)
    /netbend/bend/<n>/layer s     latent | latent@N | a U-Net point name | unet:N | an index (i)
    /netbend/bend/<n>/param f     the operator's r, within its limit
    /netbend/bend/<n>/amount f    0..1 into the operator's useful range
    /netbend/bend/<n>/opt s …     an operator option: plane R1 | plane 0 3 | axis y | seed 3 …
    /netbend/bend/<n>/target s    all | channels 0 2 | random 0.25 | rows a:b | cols a:b | box a:b c:d
    /netbend/bend/<n>/step s      all | N | 1,2 | a:b
    /netbend/bend/<n>/enable i    0 | 1
    /netbend/bend/<n>/feature s   an audio feature driving param (none: set param by hand)
    /netbend/bend/<n>/scale f f   the mapping's output range (lo, hi)
    /netbend/bend/<n>/in_range f f | s auto
    /netbend/bend/<n>/curve s     linear | exp | log
    /netbend/bend/<n>/attack f, /netbend/bend/<n>/release f   smoothing in ms, >= 0
    /netbend/bend/<n>/invert i    0 | 1

A bend whose param a mapping drives refuses /param and /amount (the next frame would
overwrite them) with a reason that says how to take it over: /feature none.

Here: ``Command``, ``ShowState``, the echo of a change, and ``apply`` with the rules of the
global addresses. One bend slot and the rules of its fields are live/control/slots.py; the
argument checks and ``CommandError`` are live/control/arguments.py; the outputs' addresses
(/netbend/output/…, /netbend/record/video/…) are live/outputs/commands.py.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

from engine.bends import LATENT, Bend
from engine.mappings import Mapping
from live.control.arguments import CommandError, count, integer, number, short, switch, text, words
from live.control.limits import MAX_PROMPT, SEED_MAX, ModelLimits, as_limits, check_seed
from live.control.slots import BEND_FIELDS, BendSlot, changed_slot, check_slot, slot_messages
from live.outputs.commands import check_output_command, is_output_address, output_name, unknown_output

MAX_BENDS = 8
PREFIX = "/netbend"
GAIN_DB = (-60.0, 40.0)
QUANTIZE = ("off", "beat", "bar")

# ASCII digits only ("\d" would take Arabic-Indic digits), and fullmatch: "$" would let a
# trailing newline through.
_BEND_ADDRESS = re.compile(r"/netbend/bend/([0-9]{1,3})/([a-z_]+)", re.ASCII)


def addresses() -> list[str]:
    """Every concrete address a message may name (what OSC patterns are matched against)."""
    return list(_GLOBAL_RULES) + [f"{PREFIX}/bend/{n}/{f}" for n in range(1, MAX_BENDS + 1) for f in BEND_FIELDS]


@dataclass(frozen=True)
class Command:
    address: str
    args: tuple = ()
    time: float = 0.0  # seconds on the show clock when it arrived
    source: str = "osc"  # osc | key | preset | replay
    # work done at the edge for the render thread (a preset load's parsed ShowState), so
    # no file is read or parsed on the render thread; not recorded in takes
    payload: Any = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict:
        return {"t": round(self.time, 6), "address": self.address, "args": list(self.args), "source": self.source}

    @classmethod
    def from_dict(cls, d: dict) -> "Command":
        return cls(str(d["address"]), tuple(d.get("args", ())), float(d.get("t", 0.0)), str(d.get("source", "osc")))


@dataclass(frozen=True)
class ShowState:
    prompt: str = ""
    strength: float = 0.5
    seed: int = 0
    frozen: bool = False
    slots: tuple[Optional[BendSlot], ...] = (None,) * MAX_BENDS
    preset: Optional[str] = None
    recording: bool = False
    gain_db: float = 0.0
    quantize: str = "off"
    # (name, enabled) of each output the show runs (NDI, the video recording …), as the show
    # last saw them; what /netbend/state reports and echoes. Not in takes: a take replays
    # the same way whichever outputs the show that recorded it had.
    outputs: tuple[tuple[str, bool], ...] = ()

    @property
    def bends(self) -> list[Bend]:
        return [s.bend for s in self.slots if s is not None]

    @property
    def mappings(self) -> list[Optional[Mapping]]:
        return [s.mapping for s in self.slots if s is not None]

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "strength": self.strength, "seed": self.seed, "frozen": self.frozen,
                "preset": self.preset, "gain_db": self.gain_db, "quantize": self.quantize,
                "slots": [None if s is None else {"bend": s.bend.to_dict(),
                                                  "mapping": None if s.mapping is None else s.mapping.to_dict()}
                          for s in self.slots]}

    @classmethod
    def from_dict(cls, d: dict) -> "ShowState":
        slots = [None if s is None else BendSlot(Bend.from_dict(s["bend"]),
                                                  None if s.get("mapping") is None else Mapping.from_dict(s["mapping"]))
                 for s in d.get("slots", [])]
        slots = (slots + [None] * MAX_BENDS)[:MAX_BENDS]
        return cls(prompt=str(d.get("prompt", "")), strength=float(d.get("strength", 0.5)), seed=int(d.get("seed", 0)),
                   frozen=bool(d.get("frozen", False)), slots=tuple(slots), preset=d.get("preset"),
                   gain_db=float(d.get("gain_db", 0.0)), quantize=str(d.get("quantize", "off")))

    def messages(self) -> list[tuple[str, tuple]]:
        """The whole state as OSC (address, args) pairs, one canonical type per address:
        the /netbend/state reply, and what echoes are computed from."""
        out: list[tuple[str, tuple]] = [
            ("/netbend/prompt", (self.prompt,)), ("/netbend/strength", (float(self.strength),)),
            ("/netbend/seed", (int(self.seed),)), ("/netbend/freeze", (int(self.frozen),)),
            ("/netbend/gain", (float(self.gain_db),)), ("/netbend/quantize", (self.quantize,)),
            ("/netbend/preset", (self.preset or "",)), ("/netbend/recording", (int(self.recording),)),
        ]
        for n, slot in enumerate(self.slots, start=1):
            out += slot_messages(n, slot)
        out += [(f"{PREFIX}/output/{name}/enable", (int(on),)) for name, on in self.outputs]
        return out


def message_key(address: str, args: tuple) -> Any:
    """What identifies one state message (an option is one per name)."""
    return (address, args[0]) if address.endswith("/opt") and args else address


def echo_messages(before: ShowState, after: ShowState) -> list[tuple[str, tuple]]:
    """The messages of ``after`` whose value differs from ``before``: every value a change
    (a slider, a preset load) set, and nothing that did not change."""
    old = {message_key(a, args): args for a, args in before.messages()}
    return [(a, args) for a, args in after.messages() if old.get(message_key(a, args)) != args]



def check_state(state: ShowState, limits=None, where: str = "") -> ShowState:
    """Every slot of ``state`` valid for the model (``limits``); CommandError naming the bend."""
    limits = as_limits(limits)
    try:
        for n, slot in enumerate(state.slots, start=1):
            if slot is not None:
                check_slot(slot, limits, f"{where}bend {n}")
        check_seed(state.seed, f"{where}seed")
    except ValueError as e:
        raise CommandError(str(e)) from None
    if len(state.prompt) > MAX_PROMPT:
        raise CommandError(f"{where}prompt is {len(state.prompt)} characters; at most {MAX_PROMPT}")
    return state


def state_from_preset(preset, name: Optional[str] = None, limits=None) -> ShowState:
    """The show state a preset describes (its pipeline config supplies prompt/strength/seed),
    checked against the model's ``limits``."""
    if len(preset.bends) > MAX_BENDS:
        raise CommandError(f"preset {preset.name!r} has {len(preset.bends)} bends; the live show has {MAX_BENDS} slots")
    config = preset.config()
    slots = [BendSlot(b, m) for b, m in zip(preset.bends, preset.mappings)]
    limits = as_limits(limits)
    for k, slot in enumerate(slots):  # layers as names, as OSC would set them
        if limits.layers and slot.bend.layer != LATENT:
            try:
                slots[k] = replace(slot, bend=replace(slot.bend, layer=limits.layer(slot.bend.layer)))
            except ValueError as e:
                raise CommandError(f"preset {preset.name!r}: bend {k + 1}: {e}") from None
    state = ShowState(prompt=getattr(config, "prompt", ""), strength=float(getattr(config, "strength", 0.5)),
                      seed=int(getattr(config, "seed", 0)), slots=tuple(slots) + (None,) * (MAX_BENDS - len(slots)),
                      preset=name or preset.name)
    return check_state(state, limits, f"preset {preset.name!r}: ")


# -- apply ----------------------------------------------------------------------------------


def apply(state: ShowState, command: Command, layers=None) -> ShowState:
    """The state after ``command``; raises CommandError (state untouched) if it is wrong.

    ``layers`` is the loaded model's ``ModelLimits`` (or just its U-Net point names): what
    it knows is checked here, at the edge. Without it only the form is checked.
    """
    limits = as_limits(layers)
    a, args = command.address, tuple(command.args)
    m = _BEND_ADDRESS.fullmatch(a)
    try:
        if m:
            return _apply_bend(state, int(m.group(1)), m.group(2), args, a, limits)
        if a in _GLOBAL_RULES:
            return _GLOBAL_RULES[a](state, command, args, limits)
        if is_output_address(a):
            return _apply_output(state, a, args)
    except CommandError:
        raise
    except ValueError as e:  # from Bend / Mapping / Target / limits: already says what is allowed
        raise CommandError(f"{a}: {e}") from None
    raise CommandError(f"unknown address {short(a)}; see the OSC address space in the README")


def _apply_bend(state: ShowState, n: int, field_name: str, args: tuple, a: str, limits: ModelLimits) -> ShowState:
    if not 1 <= n <= MAX_BENDS:
        raise CommandError(f"{a}: bend number must be 1..{MAX_BENDS}; got {n}")
    slots = list(state.slots)
    slots[n - 1] = changed_slot(slots[n - 1], n, field_name, args, a, limits)
    return replace(state, slots=tuple(slots))


def _apply_output(state: ShowState, a: str, args: tuple) -> ShowState:
    """The outputs own these addresses: their form is checked here, the show carries them
    out and answers for an output that does not exist."""
    try:
        check_output_command(a, args)
    except ValueError as e:  # its message names the address already
        raise CommandError(str(e)) from None
    name = output_name(a)
    if not name or not state.outputs:  # start/stop, or a show without outputs: the show answers
        return state
    known = dict(state.outputs)
    if name not in known:
        raise CommandError(f"{a}: {unknown_output(name, known)}")
    return replace(state, outputs=tuple((n, bool(args[0]) if n == name else on) for n, on in state.outputs))


def _prompt(state: ShowState, command: Command, args: tuple, limits: ModelLimits) -> ShowState:
    a = command.address
    if not args:
        raise CommandError(f"{a} takes the prompt: one string or several words; got 0 argument(s)")
    if len(args) > 1 and not all(isinstance(w, (str, int, float)) and not isinstance(w, bool) for w in args):
        raise CommandError(f"{a} takes words (strings or numbers)")
    prompt = text(args[0], a) if len(args) == 1 else words(args)
    if len(prompt) > MAX_PROMPT:
        raise CommandError(f"{a}: the prompt is {len(prompt)} characters; at most {MAX_PROMPT}")
    return replace(state, prompt=prompt)


def _strength(state: ShowState, command: Command, args: tuple, limits: ModelLimits) -> ShowState:
    a = command.address
    count(args, 1, a, "one number in (0, 1]")
    v = number(args[0], a)
    if not 0.0 < v <= 1.0:
        raise CommandError(f"{a} must be in (0, 1]; got {v}")
    return replace(state, strength=v)


def _seed(state: ShowState, command: Command, args: tuple, limits: ModelLimits) -> ShowState:
    a = command.address
    count(args, 1, a, f"one integer 0..{SEED_MAX}")
    return replace(state, seed=check_seed(integer(args[0], a), a))


def _freeze(state: ShowState, command: Command, args: tuple, limits: ModelLimits) -> ShowState:
    count(args, 1, command.address, "one integer, 0 or 1")
    return replace(state, frozen=switch(args[0], command.address))


def _gain(state: ShowState, command: Command, args: tuple, limits: ModelLimits) -> ShowState:
    a = command.address
    count(args, 1, a, f"one number of dB, {GAIN_DB[0]:g}..{GAIN_DB[1]:g}")
    v = number(args[0], a)
    if not GAIN_DB[0] <= v <= GAIN_DB[1]:
        raise CommandError(f"{a} must be {GAIN_DB[0]:g}..{GAIN_DB[1]:g} dB; got {v:g}")
    return replace(state, gain_db=v)


def _quantize(value: Any, a: str) -> str:
    q = text(value, a)
    if q not in QUANTIZE:
        raise CommandError(f"{a}: quantize must be one of {', '.join(QUANTIZE)}; got {short(q)}")
    return q


def _quantize_rule(state: ShowState, command: Command, args: tuple, limits: ModelLimits) -> ShowState:
    count(args, 1, command.address, "off, beat or bar")
    return replace(state, quantize=_quantize(args[0], command.address))


def _no_arguments(state: ShowState, command: Command, args: tuple, limits: ModelLimits) -> ShowState:
    """/netbend/state (a query: the show replies) and /netbend/record/start|stop."""
    a = command.address
    count(args, 0, a, "no arguments")
    if a == "/netbend/state":
        return state
    return replace(state, recording=a.endswith("start"))


def _preset_load(state: ShowState, command: Command, args: tuple, limits: ModelLimits) -> ShowState:
    a = command.address
    if len(args) not in (1, 2):
        raise CommandError(f"{a} takes a preset name or slot number, and optionally off | beat | bar; "
                           f"got {len(args)} argument(s)")
    if not isinstance(args[0], str):
        integer(args[0], a)
    elif not args[0].strip():
        raise CommandError(f"{a}: the preset name is empty")
    # (over OSC only names from the preset folders load: OscControl reads the preset)
    if len(args) == 2:
        _quantize(args[1], a)
    if command.payload is not None:  # the preset, read and checked at the edge
        return replace(check_state(command.payload, limits), recording=state.recording,
                       gain_db=state.gain_db, quantize=state.quantize)
    return state


def _preset_save(state: ShowState, command: Command, args: tuple, limits: ModelLimits) -> ShowState:
    a = command.address
    count(args, 1, a, "a preset name")
    name = text(args[0], a)
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name, re.ASCII) or name.startswith("."):
        raise CommandError(f"{a}: preset name {short(name)} may use letters, digits, '.', '_' and '-' only "
                           "(1..64 characters, not starting with '.'); no folders")
    return state


# every address but the bends' and the outputs', in the order addresses() lists them
_GLOBAL_RULES: dict[str, Callable[[ShowState, Command, tuple, ModelLimits], ShowState]] = {
    "/netbend/prompt": _prompt, "/netbend/strength": _strength, "/netbend/seed": _seed, "/netbend/freeze": _freeze,
    "/netbend/gain": _gain, "/netbend/quantize": _quantize_rule, "/netbend/preset/load": _preset_load,
    "/netbend/preset/save": _preset_save, "/netbend/record/start": _no_arguments,
    "/netbend/record/stop": _no_arguments, "/netbend/state": _no_arguments,
}
