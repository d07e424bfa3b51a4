"""How a command's arguments are checked: ``CommandError`` and the small checks every rule
in live/control/state.py and live/control/slots.py uses.

OSC carries ints and floats alike, so a number is either (a bool is neither); a message box
in Max sends a prompt as several words, so ``words`` joins them back. Every check raises a
``CommandError`` that names the address and says what it takes.
"""
from __future__ import annotations

import math
from typing import Any

__all__ = ["CommandError", "count", "integer", "number", "short", "switch", "text", "words"]


class CommandError(ValueError):
    """A command that cannot apply: says what was wrong and what is allowed."""


def count(args: tuple, n: int, address: str, what: str) -> None:
    if len(args) != n:
        raise CommandError(f"{address} takes {what}; got {len(args)} argument(s)")


def number(value: Any, address: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CommandError(f"{address} takes a number (int or float); got {type(value).__name__} {short(value)}")
    if not math.isfinite(value):
        raise CommandError(f"{address} takes a finite number; got {value!r}")
    return float(value)


def integer(value: Any, address: str) -> int:
    v = number(value, address)
    if v != int(v):
        raise CommandError(f"{address} takes a whole number; got {value!r}")
    return int(v)


def switch(value: Any, address: str) -> bool:
    v = integer(value, address)
    if v not in (0, 1):
        raise CommandError(f"{address} takes 0 or 1; got {v}")
    return bool(v)


def text(value: Any, address: str) -> str:
    if not isinstance(value, str):
        raise CommandError(f"{address} takes a string; got {type(value).__name__} {short(value)}")
    return value


def short(value: Any, n: int = 60) -> str:
    """``repr(value)`` cut to ``n`` characters: a reply never echoes a huge argument back."""
    shown = repr(value)
    return shown if len(shown) <= n else shown[:n] + "…"


def words(args: tuple) -> str:
    """Symbols and numbers as one string, the way Max sends a message box: 'fog 3 trees'."""
    return " ".join(str(w) if not isinstance(w, float) or not w.is_integer() else str(int(w)) for w in args)
