"""Event-sourced show control: every change is a ``Command``; the show is a ``ShowState``.

OSC messages, keys, preset loads and replayed takes all become ``Command`` values on one
queue. The render thread applies them at frame boundaries with the pure function
``apply(state, command) -> state``; the OSC thread calls the same function on the newest
snapshot to validate a message before queueing it, so a bad message is answered at once
and never reaches the show. A take is the list of applied commands with their times.

The address space (DESIGN.md; bends are 1-based, ints and floats both accepted):

    /netbend/bend/<n>/operator s        /netbend/prompt s
    /netbend/bend/<n>/layer    i|s      /netbend/strength f
    /netbend/bend/<n>/param    f        /netbend/seed i
    /netbend/bend/<n>/scale    f f      /netbend/preset/load s|i
    /netbend/bend/<n>/feature  s        /netbend/preset/save s
    /netbend/bend/<n>/target   s ...    /netbend/record/start, /netbend/record/stop
    /netbend/bend/<n>/step     i|s      /netbend/freeze i
    /netbend/bend/<n>/enable   i        /netbend/state (query)
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any, Optional, Sequence

from engine.bends import Bend
from engine.mappings import Mapping

MAX_BENDS = 8
PREFIX = "/netbend"

_BEND_ADDRESS = re.compile(r"^/netbend/bend/(\d+)/(\w+)$")


class CommandError(ValueError):
    """A command that cannot apply: says what was wrong and what is allowed."""


@dataclass(frozen=True)
class Command:
    address: str
    args: tuple = ()
    time: float = 0.0  # seconds on the show clock when it arrived
    source: str = "osc"  # osc | key | preset | replay

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

    @property
    def bends(self) -> list[Bend]:
        return [s.bend for s in self.slots if s is not None]

    @property
    def mappings(self) -> list[Optional[Mapping]]:
        return [s.mapping for s in self.slots if s is not None]

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "strength": self.strength, "seed": self.seed, "frozen": self.frozen,
                "preset": self.preset,
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
                   frozen=bool(d.get("frozen", False)), slots=tuple(slots), preset=d.get("preset"))

    def messages(self) -> list[tuple[str, tuple]]:
        """The whole state as OSC (address, args) pairs: the /netbend/state reply."""
        out: list[tuple[str, tuple]] = [
            ("/netbend/prompt", (self.prompt,)), ("/netbend/strength", (self.strength,)),
            ("/netbend/seed", (self.seed,)), ("/netbend/freeze", (int(self.frozen),)),
            ("/netbend/preset", (self.preset or "",)), ("/netbend/recording", (int(self.recording),)),
        ]
        for n, slot in enumerate(self.slots, start=1):
            if slot is None:
                continue
            b, m = slot.bend, slot.mapping
            base = f"/netbend/bend/{n}"
            out += [(f"{base}/operator", (b.operator,)), (f"{base}/layer", (b.layer,)),
                    (f"{base}/param", (b.param,)), (f"{base}/target", tuple(str(b.target).split())),
                    (f"{base}/step", ("all" if b.step is None else ",".join(map(str, sorted(b.step))),)),
                    (f"{base}/enable", (int(b.enabled),))]
            if m is not None:
                out += [(f"{base}/feature", (m.feature,)), (f"{base}/scale", tuple(m.out_range))]
        return out


def state_from_preset(preset, name: Optional[str] = None) -> ShowState:
    """The show state a preset describes (its pipeline config supplies prompt/strength/seed)."""
    if len(preset.bends) > MAX_BENDS:
        raise CommandError(f"preset {preset.name!r} has {len(preset.bends)} bends; the live show has {MAX_BENDS} slots")
    config = preset.config()
    slots = [BendSlot(b, m) for b, m in zip(preset.bends, preset.mappings)]
    return ShowState(prompt=getattr(config, "prompt", ""), strength=float(getattr(config, "strength", 0.5)),
                     seed=int(getattr(config, "seed", 0)), slots=tuple(slots) + (None,) * (MAX_BENDS - len(slots)),
                     preset=name or preset.name)


# -- argument checks ----------------------------------------------------------------------

def _count(args: tuple, n: int, address: str, what: str) -> None:
    if len(args) != n:
        raise CommandError(f"{address} takes {what}; got {len(args)} argument(s)")


def _number(value: Any, address: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CommandError(f"{address} takes a number (int or float); got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise CommandError(f"{address} takes a finite number; got {value!r}")
    return float(value)


def _integer(value: Any, address: str) -> int:
    v = _number(value, address)
    if v != int(v):
        raise CommandError(f"{address} takes a whole number; got {value!r}")
    return int(v)


def _text(value: Any, address: str) -> str:
    if not isinstance(value, str):
        raise CommandError(f"{address} takes a string; got {type(value).__name__} {value!r}")
    return value


# -- apply ----------------------------------------------------------------------------------

# Addresses that are not state changes: the render/app layer acts on them (query, preset
# files, take files), and apply() only validates their arguments.
ACTIONS = ("/netbend/state", "/netbend/preset/load", "/netbend/preset/save", "/netbend/record/start",
           "/netbend/record/stop")


def apply(state: ShowState, command: Command, layers: Optional[Sequence[str]] = None) -> ShowState:
    """The state after ``command``; raises CommandError (state untouched) if it is wrong.

    ``layers`` (the loaded model's U-Net point names) lets a layer be checked here, at the
    edge; without it only its form is checked and the Bender checks it later.
    """
    a, args = command.address, tuple(command.args)
    m = _BEND_ADDRESS.match(a)
    try:
        if m:
            return _apply_bend(state, int(m.group(1)), m.group(2), args, a, layers)
        if a == "/netbend/prompt":
            _count(args, 1, a, "one string")
            return replace(state, prompt=_text(args[0], a))
        if a == "/netbend/strength":
            _count(args, 1, a, "one number in (0, 1]")
            v = _number(args[0], a)
            if not 0.0 < v <= 1.0:
                raise CommandError(f"{a} must be in (0, 1]; got {v}")
            return replace(state, strength=v)
        if a == "/netbend/seed":
            _count(args, 1, a, "one integer")
            return replace(state, seed=_integer(args[0], a))
        if a == "/netbend/freeze":
            _count(args, 1, a, "one integer, 0 or 1")
            return replace(state, frozen=bool(_integer(args[0], a)))
        if a in ("/netbend/record/start", "/netbend/record/stop", "/netbend/state"):
            _count(args, 0, a, "no arguments")
            if a == "/netbend/state":
                return state
            return replace(state, recording=a.endswith("start"))
        if a == "/netbend/preset/load":
            _count(args, 1, a, "a preset name or slot number")
            if not isinstance(args[0], str):
                _integer(args[0], a)
            return state
        if a == "/netbend/preset/save":
            _count(args, 1, a, "a preset name")
            name = _text(args[0], a)
            if not re.fullmatch(r"[\w.-]+", name):
                raise CommandError(f"{a}: preset name {name!r} may use letters, digits, '.', '_' and '-' only")
            return state
    except CommandError:
        raise
    except ValueError as e:  # from Bend / Mapping / Target validation: already says what is allowed
        raise CommandError(f"{a}: {e}") from None
    raise CommandError(f"unknown address {a!r}; see the OSC address space in the README")


def _apply_bend(state: ShowState, n: int, field_name: str, args: tuple, a: str,
                layers: Optional[Sequence[str]]) -> ShowState:
    if not 1 <= n <= MAX_BENDS:
        raise CommandError(f"{a}: bend number must be 1..{MAX_BENDS}; got {n}")
    slots = list(state.slots)
    slot = slots[n - 1]
    if field_name == "operator":
        _count(args, 1, a, "an operator name")
        op = _text(args[0], a)
        if slot is None:
            slot = BendSlot(Bend(op, "mid", 0.0))
        else:
            keep = {k: v for k, v in slot.bend.opts.items()} if slot.bend.operator == op else {}
            slot = replace(slot, bend=replace(slot.bend, operator=op, opts=keep))
    elif slot is None:
        raise CommandError(f"{a}: bend {n} is empty; set /netbend/bend/{n}/operator first")
    elif field_name == "layer":
        _count(args, 1, a, "a layer name or index")
        layer = args[0] if isinstance(args[0], str) else _integer(args[0], a)
        if isinstance(layer, str) and layer.isdigit():
            layer = int(layer)
        if layers is not None and layer != "latent":
            if isinstance(layer, int):
                if not 0 <= layer < len(layers):
                    raise CommandError(f"{a}: layer index {layer} out of range 0..{len(layers) - 1}")
                layer = layers[layer]
            elif layer not in layers:
                raise CommandError(f"{a}: unknown layer {layer!r}; valid: latent, 0..{len(layers) - 1}, "
                                   f"{', '.join(layers)}")
        slot = replace(slot, bend=replace(slot.bend, layer=layer))
    elif field_name == "param":
        _count(args, 1, a, "one number")
        slot = replace(slot, bend=slot.bend.with_param(_number(args[0], a)))
    elif field_name == "scale":
        _count(args, 2, a, "two numbers (low, high)")
        lo, hi = _number(args[0], a), _number(args[1], a)
        mapping = slot.mapping or Mapping("rms")
        slot = replace(slot, mapping=replace(mapping, out_range=(lo, hi)))
    elif field_name == "feature":
        _count(args, 1, a, "a feature name, or 'none' to stop mapping")
        feature = _text(args[0], a)
        if feature == "none":
            slot = replace(slot, mapping=None)
        else:
            mapping = slot.mapping or Mapping(feature, out_range=(0.0, 1.0))
            slot = replace(slot, mapping=replace(mapping, feature=feature))
    elif field_name == "target":
        if not args:
            raise CommandError(f"{a} takes a target: all | channels 0 2 | random 0.25 | rows a:b | cols a:b | box a:b c:d")
        words = " ".join(str(w) if not isinstance(w, float) or not w.is_integer() else str(int(w)) for w in args)
        slot = replace(slot, bend=replace(slot.bend, target=words))
    elif field_name == "step":
        _count(args, 1, a, "a step: an integer, 'all', '1,2' or 'a:b'")
        step = args[0] if isinstance(args[0], str) else _integer(args[0], a)
        slot = replace(slot, bend=replace(slot.bend, step=step))
    elif field_name == "enable":
        _count(args, 1, a, "one integer, 0 or 1")
        slot = replace(slot, bend=replace(slot.bend, enabled=bool(_integer(args[0], a))))
    else:
        raise CommandError(f"{a}: unknown bend field {field_name!r}; allowed: operator, layer, param, scale, "
                           "feature, target, step, enable")
    slots[n - 1] = slot
    return replace(state, slots=tuple(slots))
