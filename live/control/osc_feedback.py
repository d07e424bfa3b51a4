"""What the show says over OSC: replies to senders, echoes, errors and audio features to the
feedback target, all sent from the OSC server's own socket (so from the port the controller
sends to).

Where replies go. A reply (errors, the /netbend/state reply) goes to the packet's sender
*and* to the feedback target: Max's ``[udpsend]`` and TouchDesigner's OSC Out send from
random ports, so a patch listens on the feedback port. Echoes of applied changes, the
audio features and each mapped bend's effective value go to the feedback target only.
An echo is the difference between the state before and after: every value a change set
(a preset load sets many), each in its one canonical type, and nothing that did not change.

Replies are bounded per sender (live/control/osc_senders.py); when over, one short summary
a second says how many were dropped.
"""
from __future__ import annotations

import logging
import socket
import threading
from typing import Any, Callable, Optional, Sequence

from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import build_msg

from live.control.osc import AUDIO, ERROR, MAX_REASON, SAVED, Reply
from live.control.osc_senders import REPLY_BYTES, REPLY_RATE, Sender, SenderBudget, who
from live.control.state import Command, ShowState, echo_messages
from live.log_once import LogOnce, shorten


class Feedback:
    """The outgoing side of an ``OscServer``; every method may be called from any thread.

    sock: the server's UDP socket. target: (host, port) as given, for log lines;
    address: that target resolved in the socket's family, or None for no feedback target.
    get_state: the show's newest snapshot, for echoes. features_hz: the most feature
    bundles a second ``send_features`` lets through (None: every call).
    """

    def __init__(self, sock: socket.socket, target: Optional[tuple], address: Optional[tuple],
                 get_state: Callable[[], ShowState], log_once: LogOnce, clock: Callable[[], float],
                 features_hz: Optional[float]):
        self._sock, self.target, self._address = sock, target, address
        self._get_state, self._log_once, self._clock = get_state, log_once, clock
        self._features_period = 1.0 / features_hz if features_hz else 0.0
        self._features_due = -float("inf")
        self.on_changed: list[Callable[[list[Reply]], None]] = []  # e.g. OSCQuery's LISTEN push
        self._echo_lock = threading.Lock()
        self._echoed: Optional[ShowState] = None  # the state the controller was last told
        self.closed = False
        self.replies_dropped = 0

    def begin(self) -> None:
        """The controller starts from the show's state as it is now."""
        self._echoed = self._get_state()

    # to the feedback target
    def echo(self, command: Command) -> None:
        """Tell the feedback target every value that changed since it was last told."""
        with self._echo_lock:
            now = self._get_state()
            before = self._echoed if self._echoed is not None else ShowState()
            self._echoed = now
            changed = echo_messages(before, now)
        for address, args in changed:
            self.to_feedback(address, args)
        for listener in self.on_changed:
            try:
                listener(changed)
            except Exception:  # noqa: BLE001 - a listener's hiccup never stops the render thread
                self._log_once(("on_changed", "internal"), logging.ERROR, "OSC change listener failed",
                               exc_info=True)
        if command.address == "/netbend/preset/save":
            self.to_feedback(SAVED, (str(command.args[0]),))

    def send_features(self, frame, extra: Optional[dict] = None) -> bool:
        """One bundle of ``/netbend/audio/<name> f`` for each feature of ``frame`` (an
        engine.features.FeatureFrame, or a {name: value} dict) plus ``extra`` {address:
        value} (mapped bends' values, beat features).

        Call it as often as you like; it lets at most ``features_hz`` bundles a second
        through and returns whether it sent this one.
        """
        if self._address is None or self.closed:
            return False
        now = self._clock()
        if now < self._features_due:
            return False
        self._features_due += self._features_period
        if self._features_due <= now:  # first call, or after a pause: no catch-up burst
            self._features_due = now + self._features_period
        values = frame.values if hasattr(frame, "values") and not isinstance(frame, dict) else frame
        bundle = OscBundleBuilder(IMMEDIATELY)
        for name, value in values.items():
            bundle.add_content(build_msg(f"{AUDIO}/{name}", (float(value),)))
        for address, value in (extra or {}).items():
            bundle.add_content(build_msg(address, (float(value),)))
        self._send(bundle.build().dgram)
        return True

    def error(self, address: str, reason: str) -> None:
        self.to_feedback(ERROR, (shorten(address, 120), shorten(reason, MAX_REASON)))

    def to_feedback(self, address: str, args: Sequence[Any]) -> None:
        """One message to the feedback target (nothing when there is none)."""
        if self._address is None or self.closed:
            return
        dgram = self._build(address, args)
        if dgram is not None:
            self._send(dgram)

    # to a sender (the server thread)
    def reply(self, replies: list[Reply], sender: Sender, budget: SenderBudget, now: float,
              to_sender: bool) -> None:
        """``replies`` to ``sender`` (if ``to_sender``) and to the feedback target, within the
        sender's budget."""
        is_error = replies[0][0] == ERROR
        if is_error and not budget.replies.take(now):
            self.replies_dropped += 1
            self._summary(sender, budget, now, to_sender)
            return
        dgrams = [d for d in (self._build(a, args) for a, args in replies) if d is not None]
        size = sum(len(d) for d in dgrams)
        if not budget.bytes.take(now, size):
            self.replies_dropped += 1
            self._summary(sender, budget, now, to_sender)
            return
        for dgram in dgrams:
            if to_sender:
                try:
                    self._sock.sendto(dgram, sender)
                except OSError as e:
                    self._log_once(("reply", sender[0], e.errno), logging.WARNING,
                                   "OSC reply to %s failed: %s", who(sender), e)
            if self._address is not None and self._address != sender:
                self._send(dgram)

    def _summary(self, sender: Sender, budget: SenderBudget, now: float, to_sender: bool) -> None:
        """At most one short note a second telling a sender how many replies it missed."""
        if now < budget.summary_due:
            return
        budget.summary_due = now + 1.0
        dropped = budget.replies.dropped + budget.bytes.dropped
        budget.replies.dropped = budget.bytes.dropped = 0
        dgram = self._build(ERROR, ("", f"{dropped} replies not sent: over {REPLY_RATE:g} errors or "
                                        f"{REPLY_BYTES // 1024} KB a second to {who(sender)}"))
        if dgram is not None and to_sender:
            try:
                self._sock.sendto(dgram, sender)
            except OSError:
                pass

    def _send(self, dgram: bytes) -> None:
        try:
            self._sock.sendto(dgram, self._address)
        except OSError as e:  # full buffer or nobody listening: the show goes on
            self._log_once(("feedback", e.errno), logging.WARNING, "OSC feedback to %s:%s failed: %s",
                           self.target[0], self.target[1], e)

    def _build(self, address: str, args: Sequence[Any]) -> Optional[bytes]:
        try:
            return build_msg(address, tuple(args)).dgram  # int -> 'i', float -> 'f', str -> 's'
        except Exception as e:
            self._log_once(("build", shorten(address, 60), type(e).__name__), logging.ERROR,
                           "cannot encode OSC %s %r: %s", address, tuple(args), e)
            return None
