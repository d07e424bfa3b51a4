"""Who may talk to the show over OSC, and how much: the allow list and each sender's budget.

UDP source addresses can be forged, so replies go to a sender only if it is on this machine
(loopback) or on the ``allow`` list; anyone else gets nothing back. Every sender (IP and
port) has a budget: ``packet_rate`` messages a second (bursts of twice that) are read, the
rest are dropped unread and counted; replies are bounded in messages and bytes a second per
sender (live/control/osc_feedback.py spends those). So a flood from one sender costs a
small share of a core and does not starve the others.
"""
from __future__ import annotations

import ipaddress
from collections import OrderedDict
from typing import Optional, Sequence

Sender = tuple[str, int]

PACKET_RATE = 500.0       # messages a second read from one sender (burst: twice this)
REPLY_RATE = 20.0         # error replies a second to one sender (burst: twice this)
REPLY_BYTES = 64 * 1024   # bytes a second of replies to one sender (a state reply is ~5 KB)
MAX_SENDERS = 256         # senders whose budgets are remembered (least recent forgotten)


class Bucket:
    """A token bucket: ``rate`` tokens a second, at most ``burst`` saved up."""

    __slots__ = ("rate", "burst", "tokens", "last", "dropped")

    def __init__(self, rate: float, burst: float, now: float):
        self.rate, self.burst, self.tokens, self.last, self.dropped = rate, burst, burst, now, 0

    def take(self, now: float, n: float = 1.0) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= n:
            self.tokens -= n
            return True
        self.dropped += 1
        return False


class SenderBudget:
    """One sender's buckets: messages read, error replies, reply bytes; and when it may next
    be told how many replies it missed."""

    __slots__ = ("packets", "replies", "bytes", "summary_due")

    def __init__(self, now: float, packet_rate: float):
        self.packets = Bucket(packet_rate, 2 * packet_rate, now)
        self.replies = Bucket(REPLY_RATE, 2 * REPLY_RATE, now)
        self.bytes = Bucket(REPLY_BYTES, 2 * REPLY_BYTES, now)
        self.summary_due = now


class Budgets:
    """The budgets of the ``MAX_SENDERS`` most recent senders (a sender forgotten starts
    afresh, which costs at most one burst)."""

    def __init__(self, packet_rate: float = PACKET_RATE):
        self.packet_rate = float(packet_rate)
        self._budgets: OrderedDict[Sender, SenderBudget] = OrderedDict()

    def of(self, sender: Sender, now: float) -> SenderBudget:
        budget = self._budgets.get(sender)
        if budget is None:
            budget = self._budgets[sender] = SenderBudget(now, self.packet_rate)
            if len(self._budgets) > MAX_SENDERS:
                self._budgets.popitem(last=False)
        else:
            self._budgets.move_to_end(sender)
        return budget


def who(sender: Sender) -> str:
    return f"{sender[0]}:{sender[1]}"


def allow_list(allow: Optional[Sequence[str]]) -> Optional[list]:
    """The networks of an allow list ("127.0.0.1", "192.168.1.0/24"); None: no list.
    ValueError names an entry that is not an address or network."""
    if allow is None:
        return None
    if isinstance(allow, str):
        allow = [allow]
    networks = []
    for entry in allow:
        try:
            networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
        except ValueError:
            raise ValueError(f"OSC allow list: {entry!r} is not an IP address or network "
                             "(e.g. 127.0.0.1, 192.168.1.20 or 192.168.1.0/24)") from None
    return networks


def ip_address(text: str):
    """The address of a sender's IP text (an IPv4-mapped IPv6 address as IPv4); None if unreadable."""
    try:
        addr = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None
    mapped = getattr(addr, "ipv4_mapped", None)
    return mapped if mapped is not None else addr
