"""A bend slot of the live show and the rules that change it: ``BendSlot``, what each
``/netbend/bend/<n>/<field>`` message does to one slot (``changed_slot``), the check every
changed slot passes against the model (``check_slot``), and a slot as OSC messages
(``slot_messages``, what echoes and state replies send).

``live.control.state.apply`` finds the slot a message names and calls ``changed_slot``;
the rules here see one slot and never the whole show.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

from engine.bends import LATENT, Bend, format_layer, parse_layer, parse_steps
from engine.mappings import CURVES, Mapping
from engine.operators import param_range
from live.control.arguments import CommandError, count, integer, number, short, switch, text, words
from live.control.limits import ModelLimits, check_channels, check_param

__all__ = ["BEND_FIELDS", "BendSlot", "changed_slot", "check_slot", "slot_messages"]

BEND_FIELDS = ("operator", "layer", "param", "amount", "opt", "target", "step", "enable", "feature", "scale",
               "in_range", "curve", "attack", "release", "invert")
MAPPING_FIELDS = ("scale", "in_range", "curve", "attack", "release", "invert")


@dataclass(frozen=True)
class BendSlot:
    """One of the show's bend slots: the bend and, optionally, the mapping that drives it."""
    bend: Bend
    mapping: Optional[Mapping] = None


def check_slot(slot: BendSlot, limits: ModelLimits, where: str) -> None:
    """ValueError unless the slot's param, mapped range, layer and channels suit the model."""
    b = slot.bend
    check_param(b.operator, b.param, f"{where}: param")
    if slot.mapping is not None:
        for v in slot.mapping.out_range:
            check_param(b.operator, v, f"{where}: scale")
    if limits.layers and b.layer != LATENT:
        limits.layer(b.layer)
    check_channels(b, limits, where)


def changed_slot(slot: Optional[BendSlot], n: int, field_name: str, args: tuple, a: str,
                 limits: ModelLimits) -> Optional[BendSlot]:
    """Bend slot ``n`` after the message ``a args`` (field ``field_name``), checked against
    ``limits``; None when the message empties it. CommandError (or the ValueError of a
    Bend, Mapping or limit check) when the message is wrong."""
    if field_name not in BEND_FIELDS:
        raise CommandError(f"{a}: unknown bend field {field_name!r}; allowed: {', '.join(BEND_FIELDS)}")
    if field_name == "operator":
        slot = _operator(slot, args, a, limits)
        if slot is None:
            return None
    elif slot is None:
        raise CommandError(f"{a}: bend {n} is empty; set /netbend/bend/{n}/operator first")
    elif field_name in MAPPING_FIELDS:
        slot = replace(slot, mapping=_mapping_field(slot, n, field_name, args, a))
    else:
        slot = _RULES[field_name](slot, n, field_name, args, a, limits)
    check_slot(slot, limits, f"bend {n}")
    return slot


def _neutral(op: str) -> float:
    """Where a new operator starts: its identity param, else the low end of its range."""
    r = param_range(op)
    return float(r.neutral) if r.neutral is not None else float(r.low)


def _operator(slot: Optional[BendSlot], args: tuple, a: str, limits: ModelLimits) -> Optional[BendSlot]:
    count(args, 1, a, "an operator name, or none")
    op = text(args[0], a)
    if op == "none":
        return None
    if slot is None:
        return BendSlot(Bend(op, "mid" if "mid" in limits.layers or not limits.layers else LATENT, _neutral(op)))
    if slot.bend.operator == op:
        return slot
    # a new operator starts at its neutral param (the old r means something else) unless mapped
    slot = replace(slot, bend=replace(slot.bend, operator=op, opts={}, param=_neutral(op)))
    if slot.mapping is not None:
        r = param_range(op)
        slot = replace(slot, mapping=replace(slot.mapping, out_range=(r.low, r.high)))
    return slot


def _layer(slot: BendSlot, n: int, field_name: str, args: tuple, a: str, limits: ModelLimits) -> BendSlot:
    count(args, 1, a, "a layer: latent, latent@N, a U-Net point name, unet:N or an index")
    spec = args[0] if isinstance(args[0], str) else integer(args[0], a)
    layer, step = parse_layer(spec)
    name = limits.layer(layer) if layer != LATENT else LATENT
    return replace(slot, bend=replace(slot.bend, layer=name, step=step if step is not None else slot.bend.step))


def _param(slot: BendSlot, n: int, field_name: str, args: tuple, a: str, limits: ModelLimits) -> BendSlot:
    count(args, 1, a, "one number" + (" 0..1" if field_name == "amount" else ""))
    if slot.mapping is not None:
        raise CommandError(f"{a}: bend {n}'s param is driven by the audio feature {slot.mapping.feature!r} "
                           f"every frame, so a value set here would be overwritten: send "
                           f"/netbend/bend/{n}/feature none to set it by hand, or /netbend/bend/{n}/scale lo hi "
                           "to change the range the feature drives")
    v = number(args[0], a)
    if field_name == "amount":
        if not 0.0 <= v <= 1.0:
            raise CommandError(f"{a} takes 0..1; got {v:g}")
        v = param_range(slot.bend.operator).param(v)
    return replace(slot, bend=slot.bend.with_param(v))


def _opt(slot: BendSlot, n: int, field_name: str, args: tuple, a: str, limits: ModelLimits) -> BendSlot:
    if len(args) < 2:
        raise CommandError(f"{a} takes an option name and its value(s), e.g. plane R1 | plane 0 3 | axis y")
    name = text(args[0], a)
    values = args[1:]
    for v in values:
        if isinstance(v, float):
            number(v, a)
    value = values[0] if len(values) == 1 else list(values)
    if name in ("planes", "matrix") and isinstance(value, list):
        c = len(values)
        k = 2 if name == "planes" else int(round(math.sqrt(c)))
        if name == "matrix" and k * k != c:
            raise CommandError(f"{a}: a mix matrix is C x C numbers, row by row; got {c}")
        value = [list(values[i:i + k]) for i in range(0, c, k)]
    slot = replace(slot, bend=replace(slot.bend, opts={**slot.bend.opts, name: value}))
    try:  # the operator itself checks the value, on a small tensor, before the show sees it
        import torch

        from engine.operators import get_operator

        c = limits.channels(slot.bend.layer) or 4
        get_operator(slot.bend.operator)(torch.zeros(c, 4, 4), slot.bend.param, **slot.bend.opts)
    except (ValueError, TypeError, IndexError) as e:
        raise CommandError(f"{a}: option {name} = {short(value)}: {e}") from None
    return slot


def _target(slot: BendSlot, n: int, field_name: str, args: tuple, a: str, limits: ModelLimits) -> BendSlot:
    if not args:
        raise CommandError(f"{a} takes a target: all | channels 0 2 | random 0.25 | rows a:b | cols a:b | box a:b c:d")
    if len(args) > 64:
        raise CommandError(f"{a}: a target of {len(args)} words; at most 64")
    return replace(slot, bend=replace(slot.bend, target=words(args)))


def _step(slot: BendSlot, n: int, field_name: str, args: tuple, a: str, limits: ModelLimits) -> BendSlot:
    count(args, 1, a, "a step: an integer, 'all', '1,2' or 'a:b'")
    steps = parse_steps(args[0] if isinstance(args[0], str) else integer(args[0], a))
    if steps is not None and (len(steps) > 1000 or max(steps) > 1000):
        raise CommandError(f"{a}: steps are 0..1000")
    return replace(slot, bend=replace(slot.bend, step=steps))


def _enable(slot: BendSlot, n: int, field_name: str, args: tuple, a: str, limits: ModelLimits) -> BendSlot:
    count(args, 1, a, "one integer, 0 or 1")
    return replace(slot, bend=replace(slot.bend, enabled=switch(args[0], a)))


def _feature(slot: BendSlot, n: int, field_name: str, args: tuple, a: str, limits: ModelLimits) -> BendSlot:
    count(args, 1, a, "a feature name, or 'none' to stop mapping")
    feature = text(args[0], a)
    if feature == "none":
        return replace(slot, mapping=None)
    r = param_range(slot.bend.operator)
    mapping = slot.mapping or Mapping(feature, out_range=(r.low, r.high))
    return replace(slot, mapping=replace(mapping, feature=feature))


def _mapping_field(slot: BendSlot, n: int, field_name: str, args: tuple, a: str) -> Mapping:
    if slot.mapping is None and field_name != "scale":
        raise CommandError(f"{a}: bend {n} has no mapping; set /netbend/bend/{n}/feature first")
    # scale on a bend without a mapping maps it from rms (the paper's feature), as it always has
    mapping = slot.mapping or Mapping("rms")
    if field_name == "scale":
        count(args, 2, a, "two numbers (low, high)")
        return replace(mapping, out_range=(number(args[0], a), number(args[1], a)))
    if field_name == "in_range":
        if len(args) == 1 and args[0] == "auto":
            return replace(mapping, in_range="auto")
        count(args, 2, a, "two numbers (low, high) or auto")
        return replace(mapping, in_range=(number(args[0], a), number(args[1], a)))
    if field_name == "curve":
        count(args, 1, a, f"a curve: {', '.join(CURVES)}")
        return replace(mapping, curve=text(args[0], a))
    if field_name in ("attack", "release"):
        count(args, 1, a, "a time in ms, 0..60000")
        ms = number(args[0], a)
        if not 0 <= ms <= 60000:
            raise CommandError(f"{a} takes 0..60000 ms; got {ms:g}")
        return replace(mapping, **{f"{field_name}_ms": ms})
    count(args, 1, a, "one integer, 0 or 1")  # invert
    return replace(mapping, invert=switch(args[0], a))


_RULES: dict[str, Callable[..., BendSlot]] = {
    "layer": _layer, "param": _param, "amount": _param, "opt": _opt, "target": _target, "step": _step,
    "enable": _enable, "feature": _feature,
}


# -- a slot as OSC messages -----------------------------------------------------------------


def slot_messages(n: int, slot: Optional[BendSlot]) -> list[tuple[str, tuple]]:
    """One bend slot as OSC (address, args) pairs; an empty slot is ``operator none``."""
    base = f"/netbend/bend/{n}"
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
