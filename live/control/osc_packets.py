"""OSC packets as netbend reads them: strict, cheap, and never sleeping.

Why not python-osc's ``OscMessage``/``OscPacket``: they read a truncated float as a number
(zero-padded) and an RGBA colour ``,r`` as an int, and ``OscPacket`` reorders bundles by time tag.

``parse_packet(dgram)`` returns the messages of one datagram as (address, args, time tag) in
the sender's order. Arguments are read by their type tags with python-osc's ``osc_types``,
after checking that the bytes each tag needs are there (``/netbend/strength ,f`` with two
data bytes would otherwise read 0.125). Only the tags a netbend address can take are read:
i f d h (numbers), s S (strings), T F (true, false); an RGBA colour (r), MIDI message (m),
blob (b), time tag (t), char (c), nil (N), impulse (I) or array ([ ]) is refused with its
name, never read as a number.

Bundles are walked here (sizes checked, depth bounded): ``OscPacket`` sorts a bundle's
messages by time tag, so a nested bundle tagged later would overtake the messages after it,
and python-osc's Dispatcher sleeps until a bundle's time tag on the server thread. Time
tags are returned, not honoured (see live/control/osc_server.py).

``match_addresses(pattern, addresses)``: OSC 1.0 address patterns (``* ? [abc] [!a-z]
{one,two}``) matched against netbend's concrete addresses.
"""
from __future__ import annotations

import functools
import re
from typing import Iterable

from pythonosc.parsing import osc_types

MAX_BUNDLE_DEPTH = 8    # nested bundles deeper than this are refused (no recursion bomb)
MAX_ADDRESS = 256       # characters; netbend's longest is 30
MAX_ARGS = 256          # arguments in one message (a 16 x 16 mix matrix is the most anyone needs)

_FIXED = {"i": (4, osc_types.get_int), "f": (4, osc_types.get_float), "d": (8, osc_types.get_double),
          "h": (8, osc_types.get_int64)}
_NAMES = {"r": "RGBA colour", "m": "MIDI message", "b": "blob", "t": "time tag", "c": "char", "N": "nil",
          "I": "impulse", "[": "array", "]": "array"}
READ_TAGS = "ifdhsSTF"


class PacketError(ValueError):
    """A datagram that is not a readable OSC packet; ``address`` is "" when unknown."""

    def __init__(self, reason: str, address: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.address = address


def parse_packet(dgram: bytes) -> list[tuple[str, tuple, float]]:
    """The messages of one datagram as (address, args, time tag), in the sender's order.

    The time tag is seconds since the epoch, 0 for a plain message or a bundle tagged
    "immediately". Raises PacketError (with a reason fit for /netbend/error).
    """
    if not dgram:
        raise PacketError("empty packet")
    if dgram[:1] == b"/":
        address, args = parse_message(dgram)
        return [(address, args, 0.0)]
    if dgram[:8] == b"#bundle\x00":
        return _parse_bundle(dgram, 0)
    raise PacketError("not an OSC packet: an OSC message starts with '/' and a bundle with '#bundle'")


def parse_message(dgram: bytes) -> tuple[str, tuple]:
    """(address, args) of one OSC message; PacketError when any byte is wrong or missing."""
    try:
        address, index = osc_types.get_string(dgram, 0)
    except UnicodeDecodeError:
        raise PacketError("malformed OSC message: the address is not UTF-8") from None
    except osc_types.ParseError:
        raise PacketError("malformed OSC message: the address string is not terminated") from None
    if len(address) > MAX_ADDRESS:
        raise PacketError(f"OSC address of {len(address)} characters; at most {MAX_ADDRESS}", address[:64] + "…")
    if not address.startswith("/") or any(c <= " " or c == "\x7f" for c in address):
        raise PacketError("malformed OSC address: it must start with '/' and hold no spaces or control "
                          "characters", address.encode("unicode_escape").decode()[:64])
    if index >= len(dgram):
        return address, ()  # OSC 1.0 allows a message without a type tag string
    try:
        tags, index = osc_types.get_string(dgram, index)
    except (osc_types.ParseError, UnicodeDecodeError):
        raise PacketError("malformed OSC message: unreadable type tag string", address) from None
    if not tags.startswith(","):
        raise PacketError(f"malformed OSC message: the type tag string must start with ','; got {tags[:20]!r}",
                          address)
    if len(tags) - 1 > MAX_ARGS:
        raise PacketError(f"{len(tags) - 1} arguments; at most {MAX_ARGS}", address)
    args: list = []
    for tag in tags[1:]:
        if tag in _FIXED:
            size, get = _FIXED[tag]
            if index + size > len(dgram):
                raise PacketError(f"truncated OSC message: argument {len(args) + 1} ('{tag}') needs {size} bytes, "
                                  f"{max(0, len(dgram) - index)} left", address)
            value, index = get(dgram, index)
        elif tag in "sS":
            try:
                value, index = osc_types.get_string(dgram, index)
            except osc_types.ParseError:
                raise PacketError(f"truncated OSC message: string argument {len(args) + 1} is not terminated",
                                  address) from None
            except UnicodeDecodeError:
                raise PacketError(f"string argument {len(args) + 1} is not UTF-8", address) from None
        elif tag in "TF":
            value = tag == "T"
        else:
            name = _NAMES.get(tag)
            what = f"{name} ('{tag}')" if name else f"unknown type tag {tag!r}"
            raise PacketError(f"argument {len(args) + 1} is an OSC {what}; netbend takes numbers (i f d h), "
                              "strings (s) and T/F", address)
        args.append(value)
    if index != len(dgram):
        raise PacketError(f"malformed OSC message: {len(dgram) - index} byte(s) after the arguments its type tags "
                          f"{tags[:20]!r} describe", address)
    return address, tuple(args)


def _parse_bundle(dgram: bytes, depth: int) -> list[tuple[str, tuple, float]]:
    if depth >= MAX_BUNDLE_DEPTH:
        raise PacketError(f"OSC bundles nested deeper than {MAX_BUNDLE_DEPTH}")
    if len(dgram) < 16:
        raise PacketError("malformed OSC bundle: truncated time tag")
    seconds, index = _timetag_seconds(dgram), 16
    out: list[tuple[str, tuple, float]] = []
    while index < len(dgram):
        if index + 4 > len(dgram):
            raise PacketError("malformed OSC bundle: truncated element size")
        size = int.from_bytes(dgram[index:index + 4], "big", signed=True)
        index += 4
        if size <= 0 or size % 4 or index + size > len(dgram):
            raise PacketError(f"malformed OSC bundle: an element of {size} bytes does not fit the "
                              f"{len(dgram)}-byte packet (or is not a multiple of 4)")
        element = dgram[index:index + size]
        index += size
        if element[:8] == b"#bundle\x00":
            out += _parse_bundle(element, depth + 1)
        elif element[:1] == b"/":
            address, args = parse_message(element)
            out.append((address, args, seconds))
        else:
            raise PacketError("malformed OSC bundle: an element is neither a message nor a bundle")
    return out


_NTP_EPOCH = 2208988800  # seconds from 1900 (NTP) to 1970 (Unix)


def _timetag_seconds(dgram: bytes) -> float:
    """A bundle's time tag as Unix seconds; 0 for "immediately" (0x0000000000000001)."""
    seconds = int.from_bytes(dgram[8:12], "big")
    fraction = int.from_bytes(dgram[12:16], "big")
    if seconds == 0 and fraction <= 1:
        return 0.0
    return seconds - _NTP_EPOCH + fraction / 2**32


# -- address patterns ----------------------------------------------------------------------

PATTERN_CHARS = frozenset("*?[]{}")


def is_pattern(address: str) -> bool:
    return any(c in PATTERN_CHARS for c in address)


@functools.lru_cache(maxsize=256)  # a patch sends the same few patterns; a bounded cache
def pattern_regex(pattern: str) -> "re.Pattern[str]":
    """The regex of an OSC 1.0 address pattern; ValueError for a malformed one."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise ValueError(f"unclosed '[' in OSC address pattern {pattern!r}")
            body = pattern[i + 1:end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            if not body:
                raise ValueError(f"empty '[]' in OSC address pattern {pattern!r}")
            chars = "".join(re.escape(ch) if ch != "-" or k in (0, len(body) - 1) else "-"
                            for k, ch in enumerate(body))
            out.append(f"[^/{chars}]" if negate else f"[{chars}]")
            i = end
        elif c == "{":
            end = pattern.find("}", i + 1)
            if end < 0:
                raise ValueError(f"unclosed '{{' in OSC address pattern {pattern!r}")
            out.append("(?:" + "|".join(re.escape(part) for part in pattern[i + 1:end].split(",")) + ")")
            i = end
        elif c in "]}":
            raise ValueError(f"unmatched {c!r} in OSC address pattern {pattern!r}")
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


def match_addresses(pattern: str, addresses: Iterable[str]) -> list[str]:
    """The addresses (in their order) that an OSC address pattern matches."""
    rx = pattern_regex(pattern)
    return [a for a in addresses if rx.fullmatch(a)]
