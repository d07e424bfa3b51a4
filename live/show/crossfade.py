"""The preset crossfade: bend params glide from the old preset's to the new one's.

Recalling a preset mid-show must not cut: for ``PRESET_FADE_S`` the show renders a chain
part-way between the two. A bend present in both (same operator and layer) glides from
its old param to its new one; a bend only in the old fades to its neutral param during
the first half and then leaves; one only in the new fades in from neutral during the
second half. Operators without a neutral value switch at the half-way point.

Order matters (bends chain in order): the old-only bends keep their order, before the
new chain, which keeps its own.
"""
from __future__ import annotations

from typing import Optional

from engine.bends import Bend
from engine.operators import OPERATORS

__all__ = ["PRESET_FADE_S", "PresetFade", "crossfade"]

PRESET_FADE_S = 0.5  # bend params crossfade this long when a preset is recalled


def crossfade(old: list[Bend], new: list[Bend], t: float) -> list[Bend]:
    """The chain at fraction ``t`` (0..1) of the fade from ``old`` to ``new``."""
    out, matched = [], set()
    for b in new:
        partner = next((o for o in old if id(o) not in matched and o.operator == b.operator and o.layer == b.layer),
                       None)
        neutral = OPERATORS[b.operator].neutral
        if partner is not None:
            matched.add(id(partner))
            out.append(b.with_param(partner.param + (b.param - partner.param) * t))
        elif neutral is not None:
            u = max(0.0, 2 * t - 1)
            out.append(b.with_param(neutral + (b.param - neutral) * u))
        elif t >= 0.5:
            out.append(b)
    leaving = []
    if t < 0.5:
        for o in old:
            if id(o) in matched:
                continue
            neutral = OPERATORS[o.operator].neutral
            leaving.append(o if neutral is None else o.with_param(o.param + (neutral - o.param) * 2 * t))
    return leaving + out


class PresetFade:
    """The fade in progress, if any: ``start`` it at a recall, ``apply`` it to each frame's chain."""

    def __init__(self, seconds: float = PRESET_FADE_S):
        self.seconds = seconds
        self._from: Optional[tuple[list[Bend], float]] = None  # (bends faded from, start time)

    def start(self, old: list[Bend], now: float) -> None:
        self._from = (list(old), now)

    @property
    def active(self) -> bool:
        return self._from is not None

    def apply(self, bends: list[Bend], now: float) -> list[Bend]:
        if self._from is None:
            return bends
        old, started = self._from
        t = (now - started) / self.seconds
        if t >= 1.0:
            self._from = None
            return bends
        return crossfade(old, bends, t)
