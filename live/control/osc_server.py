"""The OSC server: one thread reads UDP datagrams, parses them (live/control/osc_packets.py)
and hands each message to an ``OscControl`` (live/control/osc.py); what goes back leaves
through ``Feedback`` (live/control/osc_feedback.py) on this server's own socket.

A show stays up whatever arrives: each sender is read within its budget and only senders
on the allow list are heard (live/control/osc_senders.py); one bad packet never ends the
thread, and log lines are bounded in number and length.

Bundles and time tags. python-osc's Dispatcher sleeps until a bundle's time tag on the
server thread; here every message of a bundle is handled at once, in the sender's order.
Time tags are not honoured, on purpose: commands take effect at the next frame boundary
anyway, so a tag could buy at most a frame; tags are the sender's wall clock, which Max,
TouchDesigner and the show machine rarely share; and a queue of future bundles is state a
sender could grow without bound. A bundle tagged in the future is logged once per sender.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any, Callable, Optional, Sequence

from live.control.osc import OscControl
from live.control.osc_feedback import Feedback
from live.control.osc_packets import PacketError, parse_packet
from live.control.osc_senders import PACKET_RATE, Budgets, Sender, allow_list, ip_address, who
from live.control.state import Command

log = logging.getLogger("netbend.osc")

FUTURE_NOTE_S = 0.1       # a bundle tagged further ahead than this is noted in the log
POLL_S = 0.1              # the server thread checks its stop Event this often
MAX_DATAGRAM = 65535      # the largest UDP payload


class OscServer:
    """A UDP OSC server thread around an ``OscControl``; also the feedback sender.

    host, port: where to listen (port 0 picks a free one; see ``.port``). The default
        host accepts only this machine; use "0.0.0.0" for a controller on the network.
    allow: sender IP addresses or networks ("192.168.1.0/24") that may talk to the show
        and get replies; others are dropped and logged once per address. None: anyone who
        can reach the port may send, and only senders on this machine get replies.
    feedback: (host, port) that receives echoes of applied changes, replies, errors, audio
        features and mapped bends' values.
    features_hz: the most feature bundles a second ``send_features`` lets through
        (None: every call).
    packet_rate: messages a second read from one sender.

    The socket is bound at construction, so a port in use fails here, with the port named.
    """

    def __init__(self, control: OscControl, host: str = "127.0.0.1", port: int = 0,
                 allow: Optional[Sequence[str]] = None, feedback: Optional[tuple[str, int]] = None,
                 features_hz: Optional[float] = 30.0, clock: Callable[[], float] = time.monotonic,
                 packet_rate: float = PACKET_RATE):
        if features_hz is not None and not features_hz > 0:
            raise ValueError(f"features_hz must be > 0 or None; got {features_hz!r}")
        self.control = control
        self._allow = allow_list(allow)
        self._clock = clock
        self._budgets = Budgets(packet_rate)
        self.dropped = 0  # messages not read: over a sender's budget

        family, kind, proto, _, address = _resolve(host, port, "server")
        # Feedback leaves through the listening socket itself (so from the port the
        # controller sends to), hence resolved in that socket's address family.
        self.feedback = tuple(feedback) if feedback is not None else None
        feedback_address = None
        if self.feedback is not None:
            fb_host, fb_port = self.feedback
            feedback_address = _resolve(fb_host, int(fb_port), "feedback", family)[4][:2]

        self._sock = socket.socket(family, kind, proto)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # ride out bursts
        except OSError:
            pass
        try:
            self._sock.bind(address)
        except OSError as e:
            self._sock.close()
            raise OSError(e.errno, f"cannot listen for OSC on {host}:{port}: {e.strerror}") from None
        self._sock.settimeout(POLL_S)
        self.host = host
        self.port: int = self._sock.getsockname()[1]

        self._out = Feedback(self._sock, self.feedback, feedback_address, control.get_state, control.log_once,
                             clock, features_hz)
        self.on_changed = self._out.on_changed  # listeners of each echo's changes (OSCQuery's LISTEN push)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # lifecycle
    def start(self) -> "OscServer":
        if self._out.closed:
            raise RuntimeError("this OscServer was stopped; make a new one")
        if self._thread is None:
            self._out.begin()
            self._thread = threading.Thread(target=self._serve, name="netbend-osc", daemon=True)
            self._thread.start()
            log.info("OSC listening on %s:%d%s", self.host, self.port,
                     f", feedback to {self.feedback[0]}:{self.feedback[1]}" if self.feedback else "")
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread (within POLL_S) and close the socket; safe to call twice."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if not self._out.closed:
            self._out.closed = True
            self._sock.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> "OscServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # outgoing (any thread)
    def echo(self, command: Command) -> None:
        """The render thread applied ``command``: tell the feedback target every value that
        changed since it was last told (a preset load: every value the preset set)."""
        self.control.applied(command)
        self._out.echo(command)

    def send_features(self, frame, extra: Optional[dict] = None) -> bool:
        """See ``Feedback.send_features``: at most ``features_hz`` bundles a second."""
        return self._out.send_features(frame, extra)

    def error(self, address: str, reason: str) -> None:
        """Report on the feedback target a command the show refused after it was queued
        (rare: the state changed between validation and the frame boundary)."""
        self._out.error(address, reason)

    def to_feedback(self, address: str, args: Sequence[Any]) -> None:
        """One message to the feedback target (a tempo change from Link or a tap, say)."""
        self._out.to_feedback(address, args)

    @property
    def replies_dropped(self) -> int:
        return self._out.replies_dropped

    # incoming (the server thread)
    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, sender = self._sock.recvfrom(MAX_DATAGRAM)
            except socket.timeout:
                continue
            except OSError as e:
                if self._stop.is_set() or self._out.closed:
                    break
                # e.g. Windows reports an earlier reply's ICMP "port unreachable" here
                self.control.log_once(("recv", e.errno), logging.WARNING, "OSC receive error: %s", e)
                continue
            try:
                self._on_packet(data, (sender[0], sender[1]))
            except Exception:  # never let one packet end the thread
                self.control.log_once(("packet", "internal"), logging.ERROR,
                                      "OSC packet from %s could not be handled", who(sender), exc_info=True)

    def _on_packet(self, data: bytes, sender: Sender) -> None:
        now = self._clock()
        budget = self._budgets.of(sender, now)
        if not budget.packets.take(now):
            self.dropped += 1  # over this sender's budget: not even parsed
            return
        if not self._allowed(sender[0]):
            self.control.log_once(("denied", sender[0]), logging.WARNING,
                                  "OSC from %s dropped: not on the allow list (%s)", sender[0],
                                  ", ".join(map(str, self._allow)))
            return
        to_sender = self._answers(sender[0])
        try:
            messages = parse_packet(data)
        except PacketError as e:
            self._out.reply(self.control.reject(e.address, e.reason, sender), sender, budget, now, to_sender)
            return
        wall = time.time()
        for k, (address, args, timetag) in enumerate(messages):
            if k and not budget.packets.take(now):  # each message of a bundle counts
                self.dropped += len(messages) - k
                reason = (f"{len(messages) - k} messages of a bundle dropped: over "
                          f"{self._budgets.packet_rate:g} messages a second from one sender")
                self._out.reply(self.control.reject("", reason, sender), sender, budget, now, to_sender)
                return
            if timetag and timetag > wall + FUTURE_NOTE_S:
                self.control.log_once(("future", sender[0]), logging.INFO,
                                      "OSC bundle from %s is time-tagged %.2f s ahead; netbend applies bundles "
                                      "on arrival (see live/control/osc_server.py)", sender[0], timetag - wall)
            replies = self.control.handle(address, args, sender)
            if replies:
                self._out.reply(replies, sender, budget, now, to_sender)

    def _allowed(self, ip: str) -> bool:
        if self._allow is None:
            return True
        addr = ip_address(ip)
        return addr is not None and any(addr in net for net in self._allow)

    def _answers(self, ip: str) -> bool:
        """Whether ``ip`` may get replies: loopback, or on the allow list (it was checked)."""
        if self._allow is not None:
            return True
        addr = ip_address(ip)
        return addr is not None and addr.is_loopback


def _resolve(host: str, port: int, what: str, family: int = 0) -> tuple:
    try:
        return socket.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        same = " in the listening socket's address family" if family else ""
        raise ValueError(f"OSC {what}: cannot resolve host {host!r}{same}: {e}") from None
