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
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from engine.bends import LATENT, Bend, format_layer, parse_layer, parse_steps
from engine.mappings import CURVES, Mapping
from engine.operators import param_range
from live.control.limits import MAX_PROMPT, SEED_MAX, ModelLimits, as_limits, check_channels, check_param

MAX_BENDS = 8
PREFIX = "/netbend"
GAIN_DB = (-60.0, 40.0)
QUANTIZE = ("off", "beat", "bar")

# ASCII digits only ("\d" would take Arabic-Indic digits), and fullmatch: "$" would let a
# trailing newline through.
_BEND_ADDRESS = re.compile(r"/netbend/bend/([0-9]{1,3})/([a-z_]+)", re.ASCII)

BEND_FIELDS = ("operator", "layer", "param", "amount", "opt", "target", "step", "enable", "feature", "scale",
               "in_range", "curve", "attack", "release", "invert")
GLOBAL_ADDRESSES = ("/netbend/prompt", "/netbend/strength", "/netbend/seed", "/netbend/freeze", "/netbend/gain",
                    "/netbend/quantize", "/netbend/preset/load", "/netbend/preset/save", "/netbend/record/start",
                    "/netbend/record/stop", "/netbend/state")
# Addresses that are not state changes: the show acts on them (query, preset files, take
# files), and apply() only validates their arguments.
ACTIONS = ("/netbend/state", "/netbend/preset/load", "/netbend/preset/save", "/netbend/record/start",
           "/netbend/record/stop")


def addresses() -> list[str]:
    """Every concrete address a message may name (what OSC patterns are matched against)."""
    return list(GLOBAL_ADDRESSES) + [f"{PREFIX}/bend/{n}/{f}" for n in range(1, MAX_BENDS + 1) for f in BEND_FIELDS]


class CommandError(ValueError):
    """A command that cannot apply: says what was wrong and what is allowed."""


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
class BendSlot:
    """One of the show's bend slots: the bend and, optionally, the mapping that drives it."""
    bend: Bend
    mapping: Optional[Mapping] = None


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
        return out


def slot_messages(n: int, slot: Optional[BendSlot]) -> list[tuple[str, tuple]]:
    """One bend slot as OSC (address, args) pairs; an empty slot is ``operator none``."""
    base = f"{PREFIX}/bend/{n}"
    if slot is None:
        return [(f"{base}/operator", ("none",))]
    b, m = slot.bend, slot.mapping
    out = [(f"{base}/operator", (b.operator,)), (f"{base}/layer", (format_layer(b.layer),)),
           (f"{base}/param", (float(b.param),)), (f"{base}/amount", (float(param_range(b.operator).amount(b.param)),)),
           (f"{base}/target", (str(b.target),)),
           (f"{base}/step", ("all" if b.step is None else ",".join(map(str, sorted(b.step))),)),
           (f"{base}/enable", (int(b.enabled),))]
    for name, value in sorted(b.opts.items()):
        if value is not None:
            out.append((f"{base}/opt", (name,) + _opt_args(value)))
    if m is None:
        out.append((f"{base}/feature", ("none",)))
    else:
        out += [(f"{base}/feature", (m.feature,)), (f"{base}/scale", tuple(float(v) for v in m.out_range)),
                (f"{base}/in_range", ("auto",) if m.in_range == "auto" else tuple(float(v) for v in m.in_range)),
                (f"{base}/curve", (m.curve,)), (f"{base}/attack", (float(m.attack_ms),)),
                (f"{base}/release", (float(m.release_ms),)), (f"{base}/invert", (int(m.invert),))]
    return out


def _opt_args(value: Any) -> tuple:
    if isinstance(value, bool):
        return (int(value),)
    if isinstance(value, (int, float, str)):
        return (value,)
    flat: list = []
    for v in value:  # a plane (i, j), a list of planes, a matrix
        flat += list(_opt_args(v))
    return tuple(flat)


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
    for n, slot in enumerate(state.slots, start=1):
        if slot is not None:
            try:
                _check_slot(slot, limits, f"{where}bend {n}")
            except ValueError as e:
                raise CommandError(str(e)) from None
    try:
        _check_seed(state.seed, f"{where}seed")
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
    state = ShowState(prompt=getattr(config, "prompt", ""), strength=float(getattr(config, "strength", 0.5)),
                      seed=int(getattr(config, "seed", 0)), slots=tuple(slots) + (None,) * (MAX_BENDS - len(slots)),
                      preset=name or preset.name)
    slots = list(state.slots)
    limits = as_limits(limits)
    for k, slot in enumerate(slots):  # layers as names, as OSC would set them
        if slot is not None and limits.layers and slot.bend.layer != LATENT:
            try:
                slots[k] = replace(slot, bend=replace(slot.bend, layer=limits.layer(slot.bend.layer)))
            except ValueError as e:
                raise CommandError(f"preset {preset.name!r}: bend {k + 1}: {e}") from None
    return check_state(replace(state, slots=tuple(slots)), limits, f"preset {preset.name!r}: ")


# -- argument checks ----------------------------------------------------------------------

def _count(args: tuple, n: int, address: str, what: str) -> None:
    if len(args) != n:
        raise CommandError(f"{address} takes {what}; got {len(args)} argument(s)")


def _number(value: Any, address: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CommandError(f"{address} takes a number (int or float); got {type(value).__name__} {_short(value)}")
    if not math.isfinite(value):
        raise CommandError(f"{address} takes a finite number; got {value!r}")
    return float(value)


def _integer(value: Any, address: str) -> int:
    v = _number(value, address)
    if v != int(v):
        raise CommandError(f"{address} takes a whole number; got {value!r}")
    return int(v)


def _switch(value: Any, address: str) -> bool:
    v = _integer(value, address)
    if v not in (0, 1):
        raise CommandError(f"{address} takes 0 or 1; got {v}")
    return bool(v)


def _text(value: Any, address: str) -> str:
    if not isinstance(value, str):
        raise CommandError(f"{address} takes a string; got {type(value).__name__} {_short(value)}")
    return value


def _short(value: Any, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[:n] + "…"


def _words(args: tuple) -> str:
    """Symbols and numbers as one string, the way Max sends a message box: 'fog 3 trees'."""
    return " ".join(str(w) if not isinstance(w, float) or not w.is_integer() else str(int(w)) for w in args)


def _check_seed(seed: int, what: str) -> int:
    if not 0 <= seed <= SEED_MAX:
        raise ValueError(f"{what} must be an integer 0..{SEED_MAX}; got {seed}")
    return seed


def _check_slot(slot: BendSlot, limits: ModelLimits, where: str) -> None:
    b = slot.bend
    check_param(b.operator, b.param, f"{where}: param")
    if slot.mapping is not None:
        for v in slot.mapping.out_range:
            check_param(b.operator, v, f"{where}: scale")
    if limits.layers and b.layer != LATENT:
        limits.layer(b.layer)
    check_channels(b, limits, where)


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
        if a == "/netbend/prompt":
            if not args:
                raise CommandError(f"{a} takes the prompt: one string or several words; got 0 argument(s)")
            if len(args) > 1 and not all(isinstance(w, (str, int, float)) and not isinstance(w, bool) for w in args):
                raise CommandError(f"{a} takes words (strings or numbers)")
            prompt = _text(args[0], a) if len(args) == 1 else _words(args)
            if len(prompt) > MAX_PROMPT:
                raise CommandError(f"{a}: the prompt is {len(prompt)} characters; at most {MAX_PROMPT}")
            return replace(state, prompt=prompt)
        if a == "/netbend/strength":
            _count(args, 1, a, "one number in (0, 1]")
            v = _number(args[0], a)
            if not 0.0 < v <= 1.0:
                raise CommandError(f"{a} must be in (0, 1]; got {v}")
            return replace(state, strength=v)
        if a == "/netbend/seed":
            _count(args, 1, a, f"one integer 0..{SEED_MAX}")
            return replace(state, seed=_check_seed(_integer(args[0], a), a))
        if a == "/netbend/freeze":
            _count(args, 1, a, "one integer, 0 or 1")
            return replace(state, frozen=_switch(args[0], a))
        if a == "/netbend/gain":
            _count(args, 1, a, f"one number of dB, {GAIN_DB[0]:g}..{GAIN_DB[1]:g}")
            v = _number(args[0], a)
            if not GAIN_DB[0] <= v <= GAIN_DB[1]:
                raise CommandError(f"{a} must be {GAIN_DB[0]:g}..{GAIN_DB[1]:g} dB; got {v:g}")
            return replace(state, gain_db=v)
        if a == "/netbend/quantize":
            _count(args, 1, a, "off, beat or bar")
            return replace(state, quantize=_quantize(args[0], a))
        if a in ("/netbend/record/start", "/netbend/record/stop", "/netbend/state"):
            _count(args, 0, a, "no arguments")
            if a == "/netbend/state":
                return state
            return replace(state, recording=a.endswith("start"))
        if a == "/netbend/preset/load":
            if len(args) not in (1, 2):
                raise CommandError(f"{a} takes a preset name or slot number, and optionally off | beat | bar; "
                                   f"got {len(args)} argument(s)")
            if not isinstance(args[0], str):
                _integer(args[0], a)
            elif not args[0].strip():
                raise CommandError(f"{a}: the preset name is empty")
            # (over OSC only names from the preset folders load: OscControl reads the preset)
            if len(args) == 2:
                _quantize(args[1], a)
            if command.payload is not None:  # the preset, read and checked at the edge
                return replace(check_state(command.payload, limits), recording=state.recording,
                               gain_db=state.gain_db, quantize=state.quantize)
            return state
        if a == "/netbend/preset/save":
            _count(args, 1, a, "a preset name")
            _preset_name(_text(args[0], a), a)
            return state
        if a.startswith(("/netbend/output/", "/netbend/record/video/")):
            from live.outputs.commands import check_output_command  # their form here; the show carries them out

            check_output_command(a, args)
            return state
        if a.startswith(("/netbend/output/", "/netbend/record/video/")):  # the outputs own these
            from live.outputs.commands import check_output_command

            check_output_command(a, args)  # the form here; the show checks the output exists
            return state
    except CommandError:
        raise
    except ValueError as e:  # from Bend / Mapping / Target / limits: already says what is allowed
        raise CommandError(f"{a}: {e}") from None
    raise CommandError(f"unknown address {_short(a)}; see the OSC address space in the README")


def _preset_name(name: str, a: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name, re.ASCII) or name.startswith("."):
        raise CommandError(f"{a}: preset name {_short(name)} may use letters, digits, '.', '_' and '-' only "
                           "(1..64 characters, not starting with '.'); no folders")
    return name


def _quantize(value: Any, a: str) -> str:
    q = _text(value, a)
    if q not in QUANTIZE:
        raise CommandError(f"{a}: quantize must be one of {', '.join(QUANTIZE)}; got {_short(q)}")
    return q


def _apply_bend(state: ShowState, n: int, field_name: str, args: tuple, a: str, limits: ModelLimits) -> ShowState:
    if not 1 <= n <= MAX_BENDS:
        raise CommandError(f"{a}: bend number must be 1..{MAX_BENDS}; got {n}")
    if field_name not in BEND_FIELDS:
        raise CommandError(f"{a}: unknown bend field {field_name!r}; allowed: {', '.join(BEND_FIELDS)}")
    slots = list(state.slots)
    slot = slots[n - 1]
    where = f"bend {n}"
    if field_name == "operator":
        _count(args, 1, a, "an operator name, or none")
        op = _text(args[0], a)
        if op == "none":
            slots[n - 1] = None
            return replace(state, slots=tuple(slots))
        if slot is None:
            slot = BendSlot(Bend(op, "mid" if "mid" in limits.layers or not limits.layers else LATENT,
                                 _neutral(op)))
        elif slot.bend.operator != op:
            # a new operator starts at its neutral param (the old r means something else) unless mapped
            slot = replace(slot, bend=replace(slot.bend, operator=op, opts={}, param=_neutral(op, slot.bend.param)))
            if slot.mapping is not None:
                r = param_range(op)
                slot = replace(slot, mapping=replace(slot.mapping, out_range=(r.low, r.high)))
    elif slot is None:
        raise CommandError(f"{a}: bend {n} is empty; set /netbend/bend/{n}/operator first")
    elif field_name == "layer":
        _count(args, 1, a, "a layer: latent, latent@N, a U-Net point name, unet:N or an index")
        spec = args[0] if isinstance(args[0], str) else _integer(args[0], a)
        layer, step = parse_layer(spec)
        name = limits.layer(layer) if layer != LATENT else LATENT
        bend = replace(slot.bend, layer=name, step=step if step is not None else slot.bend.step)
        slot = replace(slot, bend=bend)
    elif field_name in ("param", "amount"):
        _count(args, 1, a, "one number" + (" 0..1" if field_name == "amount" else ""))
        if slot.mapping is not None:
            raise CommandError(f"{a}: bend {n}'s param is driven by the audio feature {slot.mapping.feature!r} "
                               f"every frame, so a value set here would be overwritten: send "
                               f"/netbend/bend/{n}/feature none to set it by hand, or /netbend/bend/{n}/scale lo hi "
                               "to change the range the feature drives")
        v = _number(args[0], a)
        if field_name == "amount":
            if not 0.0 <= v <= 1.0:
                raise CommandError(f"{a} takes 0..1; got {v:g}")
            v = param_range(slot.bend.operator).param(v)
        slot = replace(slot, bend=slot.bend.with_param(v))
    elif field_name == "opt":
        if len(args) < 2:
            raise CommandError(f"{a} takes an option name and its value(s), e.g. plane R1 | plane 0 3 | axis y")
        name = _text(args[0], a)
        values = args[1:]
        for v in values:
            if isinstance(v, float):
                _number(v, a)
        value = values[0] if len(values) == 1 else list(values)
        if name in ("planes", "matrix") and isinstance(value, list):
            c = len(values)
            k = 2 if name == "planes" else int(round(math.sqrt(c)))
            if name == "matrix" and k * k != c:
                raise CommandError(f"{a}: a mix matrix is C x C numbers, row by row; got {c}")
            value = [list(values[i:i + k]) for i in range(0, c, k)]
        opts = dict(slot.bend.opts)
        opts[name] = value
        slot = replace(slot, bend=replace(slot.bend, opts=opts))
        try:  # the operator itself checks the value, on a small tensor, before the show sees it
            import torch

            from engine.operators import get_operator

            c = limits.channels(slot.bend.layer) or 4
            get_operator(slot.bend.operator)(torch.zeros(c, 4, 4), slot.bend.param, **slot.bend.opts)
        except (ValueError, TypeError, IndexError) as e:
            raise CommandError(f"{a}: option {name} = {_short(value)}: {e}") from None
    elif field_name == "target":
        if not args:
            raise CommandError(f"{a} takes a target: all | channels 0 2 | random 0.25 | rows a:b | cols a:b | box a:b c:d")
        if len(args) > 64:
            raise CommandError(f"{a}: a target of {len(args)} words; at most 64")
        slot = replace(slot, bend=replace(slot.bend, target=_words(args)))
    elif field_name == "step":
        _count(args, 1, a, "a step: an integer, 'all', '1,2' or 'a:b'")
        step = args[0] if isinstance(args[0], str) else _integer(args[0], a)
        steps = parse_steps(step)
        if steps is not None and (len(steps) > 1000 or max(steps) > 1000):
            raise CommandError(f"{a}: steps are 0..1000")
        slot = replace(slot, bend=replace(slot.bend, step=steps))
    elif field_name == "enable":
        _count(args, 1, a, "one integer, 0 or 1")
        slot = replace(slot, bend=replace(slot.bend, enabled=_switch(args[0], a)))
    elif field_name == "feature":
        _count(args, 1, a, "a feature name, or 'none' to stop mapping")
        feature = _text(args[0], a)
        if feature == "none":
            slot = replace(slot, mapping=None)
        else:
            r = param_range(slot.bend.operator)
            mapping = slot.mapping or Mapping(feature, out_range=(r.low, r.high))
            slot = replace(slot, mapping=replace(mapping, feature=feature))
    else:  # the mapping's fields
        if slot.mapping is None and field_name != "scale":
            raise CommandError(f"{a}: bend {n} has no mapping; set /netbend/bend/{n}/feature first")
        # scale on a bend without a mapping maps it from rms (the paper's feature), as it always has
        mapping = slot.mapping or Mapping("rms")
        if field_name == "scale":
            _count(args, 2, a, "two numbers (low, high)")
            mapping = replace(mapping, out_range=(_number(args[0], a), _number(args[1], a)))
        elif field_name == "in_range":
            if len(args) == 1 and args[0] == "auto":
                mapping = replace(mapping, in_range="auto")
            else:
                _count(args, 2, a, "two numbers (low, high) or auto")
                mapping = replace(mapping, in_range=(_number(args[0], a), _number(args[1], a)))
        elif field_name == "curve":
            _count(args, 1, a, f"a curve: {', '.join(CURVES)}")
            mapping = replace(mapping, curve=_text(args[0], a))
        elif field_name in ("attack", "release"):
            _count(args, 1, a, "a time in ms, 0..60000")
            ms = _number(args[0], a)
            if not 0 <= ms <= 60000:
                raise CommandError(f"{a} takes 0..60000 ms; got {ms:g}")
            mapping = replace(mapping, **{f"{field_name}_ms": ms})
        elif field_name == "invert":
            _count(args, 1, a, "one integer, 0 or 1")
            mapping = replace(mapping, invert=_switch(args[0], a))
        slot = replace(slot, mapping=mapping)
    _check_slot(slot, limits, where)
    slots[n - 1] = slot
    return replace(state, slots=tuple(slots))


def _neutral(op: str, fallback: float = 0.0) -> float:
    """Where a new operator starts: its identity param, else the low end of its range."""
    r = param_range(op)
    return float(r.neutral) if r.neutral is not None else float(r.low)
