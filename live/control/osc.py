"""OSC control: UDP packets in, validated ``Command`` values out; replies and echoes back.

* ``OscControl`` is the address table, a plain object tested without sockets (STYLE.md).
  ``handle(address, args, sender)`` turns one message into a ``Command``, validates it with
  ``control.apply`` and hands it to ``submit`` (the render thread's queue), or answers
  ``/netbend/error s:address s:reason``. It never changes the show: the render thread
  applies queued commands at frame boundaries and calls ``OscServer.echo`` for each.
* ``OscServer`` is the thin shell: one thread reads datagrams, parses them with
  python-osc's parsers, passes each message to ``OscControl`` and sends the replies to the
  packet's sender (errors also to the feedback target, where Max or TouchDesigner listens
  for echoes of applied changes and ``/netbend/audio/<name> f``).

Bundles and time tags. python-osc's ``Dispatcher.call_handlers_for_packet`` (checked in
1.10.2, where ``strict_timing=True`` is the default) calls ``time.sleep`` until a bundle's
time tag on the server thread, so a bundle tagged a minute ahead stalls every message
behind it for a minute. This server does not use the Dispatcher, nor ``OscPacket``, which
sorts a bundle's messages by time tag (a nested bundle tagged later would overtake the
messages after it), nor ``OscBundle``'s walk, which reads an element that overruns the
packet and drops an unknown one with only a warning on the root logger. ``parse_packet``
walks the bundle itself (sizes checked, depth bounded) and reads each message with
python-osc's ``OscMessage``; every message of a bundle is handled at once, in the sender's
order (operator, then layer of the same bend, works), exactly like a single message. Time tags are not honoured, on purpose: commands take
effect at the next frame boundary anyway, so a tag could buy at most a frame; tags are the
sender's wall clock, which Max, TouchDesigner and the show machine rarely share, so a
skewed clock would hold a VJ's moves back by seconds; and a queue of future bundles is
state a misbehaving sender could grow without bound. A bundle tagged in the future is
logged once per sender, so a sequencer that relies on scheduling hears why.

Bad input (unknown address, wrong types or counts, NaN, out of range, unknown names, and
packets that are not OSC at all) is answered on ``/netbend/error`` with the reason, with
the address when it could be read and "" otherwise. Each distinct (address, reason) is
logged once, and at most a few new lines a second overall, so a patcher sending a hundred
bad messages a second does not flood the log. Senders not on the allow list get no reply
(answering would help a scanner) and are logged once per IP address.

Messages validate against the newest snapshot *plus* the commands queued here that the
render thread has not echoed yet (for at most ``pending_s``), so a message that depends on
one sent a moment earlier is accepted before the next frame boundary. Every command is a
plain "set", so replaying one that was applied already changes nothing.
"""
from __future__ import annotations

import ipaddress
import logging
import queue
import socket
import threading
import time
from collections import OrderedDict, deque
from typing import Any, Callable, Optional, Sequence

from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import build_msg
from pythonosc.parsing import osc_types

from live.control.state import Command, CommandError, ShowState, apply

log = logging.getLogger("netbend.osc")

ERROR = "/netbend/error"          # s:address s:reason
STATE = "/netbend/state"          # query: replies with ShowState.messages() then STATE_END
STATE_END = "/netbend/state/end"  # marks the end of a state reply (UDP gives no other end)
AUDIO = "/netbend/audio"          # /netbend/audio/<feature> f

Reply = tuple[str, tuple]
Sender = tuple[str, int]

# Type tags python-osc's OscMessage parses; any other tag it would skip with a warning per
# packet and misread the arguments after it, so such a message is refused here instead.
SUPPORTED_TAGS = "ifdhsbrmtTFN[]"
MAX_BUNDLE_DEPTH = 8      # nested bundles deeper than this are refused (no recursion bomb)
FUTURE_NOTE_S = 0.1       # a bundle tagged further ahead than this is noted in the log
POLL_S = 0.1              # the server thread checks its stop Event this often
MAX_DATAGRAM = 65535      # the largest UDP payload


class PacketError(ValueError):
    """A datagram that is not a readable OSC packet; ``address`` is "" when unknown."""

    def __init__(self, reason: str, address: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.address = address


# -- packets --------------------------------------------------------------------------------

def parse_packet(dgram: bytes) -> list[tuple[str, tuple, float]]:
    """The messages of one datagram as (address, args, time tag), in the sender's order.

    The time tag is seconds since the epoch, 0 for a plain message or a bundle tagged
    "immediately". Raises PacketError (with a reason fit for /netbend/error) for anything
    that is not a well-formed OSC message or bundle. Never sleeps.
    """
    if not dgram:
        raise PacketError("empty packet")
    if OscBundle.dgram_is_bundle(dgram):
        return _parse_bundle(dgram, 0)
    if OscMessage.dgram_is_message(dgram):
        address, args = _parse_message(dgram)
        return [(address, args, 0.0)]
    raise PacketError("not an OSC packet: an OSC message starts with '/' and a bundle with '#bundle'")


def _parse_message(dgram: bytes) -> tuple[str, tuple]:
    try:
        address, index = osc_types.get_string(dgram, 0)
    except UnicodeDecodeError:
        raise PacketError("malformed OSC message: the address is not UTF-8") from None
    except osc_types.ParseError:
        raise PacketError("malformed OSC message: the address string is not terminated") from None
    tags = ""
    if index < len(dgram):
        try:
            tags, _ = osc_types.get_string(dgram, index)
        except (osc_types.ParseError, UnicodeDecodeError):
            raise PacketError("malformed OSC message: unreadable type tag string", address) from None
        if not tags.startswith(","):
            raise PacketError(f"malformed OSC message: the type tag string must start with ','; got {tags!r}",
                              address)
        unknown = sorted(set(tags[1:]) - set(SUPPORTED_TAGS))
        if unknown:
            raise PacketError(f"unsupported OSC type tag(s) {''.join(unknown)!r}; supported: {SUPPORTED_TAGS}",
                              address)
    try:
        message = OscMessage(dgram)
    except Exception:  # ParseError, or a bare UnicodeDecodeError/struct/datetime error from osc_types
        raise PacketError(f"truncated or malformed OSC message: its arguments do not match its type tags "
                          f"{tags!r} (strings must be UTF-8)", address) from None
    return message.address, tuple(message.params)


def _parse_bundle(dgram: bytes, depth: int) -> list[tuple[str, tuple, float]]:
    if depth >= MAX_BUNDLE_DEPTH:
        raise PacketError(f"OSC bundles nested deeper than {MAX_BUNDLE_DEPTH}")
    try:
        timetag, index = osc_types.get_date(dgram, len(b"#bundle\x00"))
    except Exception:
        raise PacketError("malformed OSC bundle: truncated time tag") from None
    out: list[tuple[str, tuple, float]] = []
    while index < len(dgram):
        try:
            size, index = osc_types.get_int(dgram, index)
        except osc_types.ParseError:
            raise PacketError("malformed OSC bundle: truncated element size") from None
        if size <= 0 or index + size > len(dgram):
            raise PacketError(f"malformed OSC bundle: an element of {size} bytes does not fit the "
                              f"{len(dgram)}-byte packet")
        element = dgram[index:index + size]
        index += size
        if OscBundle.dgram_is_bundle(element):
            out += _parse_bundle(element, depth + 1)
        elif OscMessage.dgram_is_message(element):
            address, args = _parse_message(element)
            out.append((address, args, float(timetag)))
        else:
            raise PacketError("malformed OSC bundle: an element is neither a message nor a bundle")
    return out


# -- logging ----------------------------------------------------------------------------------

class _LogOnce:
    """Logs each distinct key once, and at most ``per_second`` new lines a second overall.

    Memory is bounded (the oldest keys are forgotten past ``limit``), so a sender that
    invents a new address per packet costs a few log lines a second, not a growing set.
    """

    def __init__(self, logger: logging.Logger, limit: int = 1024, per_second: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self._log, self._limit, self._rate, self._clock = logger, limit, per_second, clock
        self._seen: OrderedDict[Any, None] = OrderedDict()
        self._tokens, self._last, self._dropped = per_second, clock(), 0
        self._lock = threading.Lock()  # the server, render and feature threads all log here

    def __call__(self, key: Any, level: int, msg: str, *args: Any, exc_info: bool = False) -> bool:
        with self._lock:
            if key in self._seen:
                return False
            now = self._clock()
            self._tokens = min(self._rate, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens < 1.0:
                self._dropped += 1  # not marked seen: it is logged once the burst is over
                return False
            self._tokens -= 1.0
            self._seen[key] = None
            if len(self._seen) > self._limit:
                self._seen.popitem(last=False)
            dropped, self._dropped = self._dropped, 0
        if dropped:
            msg += " (%d more bad messages not logged: too many at once)"
            args += (dropped,)
        self._log.log(level, msg, *args, exc_info=exc_info)
        return True


# -- the address table --------------------------------------------------------------------------

class OscControl:
    """OSC messages in, validated Commands to ``submit``, replies out. No sockets here.

    get_state: the show's newest immutable snapshot (the render thread publishes it).
    submit: hands a validated Command to the render thread (a queue's put); may raise
        queue.Full, which is answered as an error.
    layers: the loaded model's U-Net point names, so an unknown layer is refused here.
    clock: the show clock stamped on each Command.
    pending_s: how long a queued command counts towards validating the next messages
        when the render thread has not echoed it (``applied``) yet.
    """

    def __init__(self, get_state: Callable[[], ShowState], submit: Callable[[Command], None],
                 layers: Optional[Sequence[str]] = None, clock: Callable[[], float] = time.monotonic,
                 pending_s: float = 2.0):
        self._get_state, self._submit, self._clock = get_state, submit, clock
        self.layers = list(layers) if layers is not None else None
        self._pending_s = pending_s
        self._pending: deque[Command] = deque()     # queued, not yet echoed: server thread only
        self._applied: queue.SimpleQueue = queue.SimpleQueue()  # render thread -> server thread
        self.log_once = _LogOnce(log, clock=clock)

    def handle(self, address: str, args: tuple, sender: Sender) -> list[Reply]:
        """The replies to send back to ``sender``: [] for an accepted change.

        A /netbend/state reply is the render thread's snapshot: a change still queued
        shows there once it has been applied (and echoed).
        """
        args = tuple(args)
        command = Command(address, args, time=self._clock(), source="osc")
        try:
            self._validate(command)
        except CommandError as e:
            return self.reject(address, str(e), sender)
        except Exception as e:  # a bug below apply(); the message is refused, the thread lives
            reason = f"{address}: could not apply {args!r}: {type(e).__name__}: {e}"
            self.log_once((address, "internal", type(e).__name__), logging.ERROR,
                          "OSC %s from %s: %s", address, _who(sender), reason, exc_info=True)
            return [(ERROR, (address, reason))]
        if address == STATE:
            return list(self._get_state().messages()) + [(STATE_END, ())]
        try:
            self._submit(command)
        except queue.Full:
            return self.reject(address, "the show's command queue is full (render thread busy); message dropped",
                               sender)
        except Exception as e:
            return self.reject(address, f"could not queue the command: {type(e).__name__}: {e}", sender)
        self._pending.append(command)
        log.debug("OSC %s %r from %s queued", address, args, _who(sender))
        return []

    def applied(self, command: Command) -> None:
        """The render thread applied ``command`` (called from any thread; never blocks)."""
        if command.source == "osc":
            self._applied.put(command)

    def reject(self, address: str, reason: str, sender: Sender) -> list[Reply]:
        """The /netbend/error reply for a bad message, logged once per (address, reason)."""
        self.log_once((address, reason), logging.WARNING, "OSC %s from %s refused: %s",
                      address or "(unreadable packet)", _who(sender), reason)
        return [(ERROR, (address, reason))]

    def _validate(self, command: Command) -> ShowState:
        while not self._applied.empty():
            done = self._applied.get_nowait()  # only this thread takes from it
            if done in self._pending:
                self._pending.remove(done)
        now = self._clock()
        while self._pending and now - self._pending[0].time > self._pending_s:
            self._pending.popleft()
        state = self._get_state()
        for queued in self._pending:
            try:
                state = apply(state, queued, self.layers)
            except CommandError:
                pass  # the show moved on (a preset load); the render thread will refuse it too
        return apply(state, command, self.layers)


def _who(sender: Sender) -> str:
    return f"{sender[0]}:{sender[1]}"


def _allow_list(allow: Optional[Sequence[str]]) -> Optional[list]:
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


def _resolve(host: str, port: int, what: str, family: int = 0) -> tuple:
    try:
        return socket.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        same = " in the listening socket's address family" if family else ""
        raise ValueError(f"OSC {what}: cannot resolve host {host!r}{same}: {e}") from None


# -- the server -------------------------------------------------------------------------------------

class OscServer:
    """A UDP OSC server thread around an ``OscControl``; also the feedback sender.

    host, port: where to listen (port 0 picks a free one; see ``.port``). The default
        host accepts only this machine; use "0.0.0.0" for a controller on the network.
    allow: sender IP addresses or networks ("192.168.1.0/24") that may talk to the show;
        others are dropped without a reply and logged once per address. None: anyone
        who can reach the port.
    feedback: (host, port) that receives echoes of applied changes, audio features and,
        besides the sender, every /netbend/error.
    features_hz: the most /netbend/audio/* frames a second ``send_features`` lets through
        (None: every call).

    The socket is bound at construction, so a port in use fails here, with the port named.
    """

    def __init__(self, control: OscControl, host: str = "127.0.0.1", port: int = 0,
                 allow: Optional[Sequence[str]] = None, feedback: Optional[tuple[str, int]] = None,
                 features_hz: Optional[float] = 30.0, clock: Callable[[], float] = time.monotonic):
        if features_hz is not None and not features_hz > 0:
            raise ValueError(f"features_hz must be > 0 or None; got {features_hz!r}")
        self.control = control
        self._allow = _allow_list(allow)
        self._clock = clock
        self._features_period = 1.0 / features_hz if features_hz else 0.0
        self._features_due = -float("inf")

        family, kind, proto, _, address = _resolve(host, port, "server")
        # Feedback leaves through the listening socket itself (so from the port the
        # controller sends to), hence resolved in that socket's address family.
        self.feedback = tuple(feedback) if feedback is not None else None
        self._feedback_address: Optional[tuple] = None
        if self.feedback is not None:
            fb_host, fb_port = self.feedback
            self._feedback_address = _resolve(fb_host, int(fb_port), "feedback", family)[4][:2]

        self._sock = socket.socket(family, kind, proto)
        try:
            self._sock.bind(address)
        except OSError as e:
            self._sock.close()
            raise OSError(e.errno, f"cannot listen for OSC on {host}:{port}: {e.strerror}") from None
        self._sock.settimeout(POLL_S)
        self.host = host
        self.port: int = self._sock.getsockname()[1]

        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._closed = False

    # lifecycle
    def start(self) -> "OscServer":
        if self._closed:
            raise RuntimeError("this OscServer was stopped; make a new one")
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="netbend-osc", daemon=True)
            self._thread.start()
            log.info("OSC listening on %s:%d%s", self.host, self.port,
                     f", feedback to {self.feedback[0]}:{self.feedback[1]}" if self.feedback else "")
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread (within POLL_S) and close the sockets; safe to call twice."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if not self._closed:
            self._closed = True
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
        """The render thread applied ``command``: tell the controller (same address and args)."""
        self.control.applied(command)
        if command.address != STATE:
            self._to_feedback(command.address, command.args)

    def send_features(self, frame) -> bool:
        """Send ``/netbend/audio/<name> f`` for each feature of an engine.features.FeatureFrame.

        Call it every frame; it lets at most ``features_hz`` frames a second through and
        returns whether it sent this one.
        """
        if self._feedback_address is None:
            return False
        now = self._clock()
        if now < self._features_due:
            return False
        self._features_due += self._features_period
        if self._features_due <= now:  # first call, or after a pause: no catch-up burst
            self._features_due = now + self._features_period
        for name, value in frame.values.items():
            self._to_feedback(f"{AUDIO}/{name}", (float(value),))
        return True

    # incoming (the server thread)
    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, sender = self._sock.recvfrom(MAX_DATAGRAM)
            except socket.timeout:
                continue
            except OSError as e:
                if self._stop.is_set() or self._closed:
                    break
                # e.g. Windows reports an earlier reply's ICMP "port unreachable" here
                self.control.log_once(("recv", e.errno), logging.WARNING, "OSC receive error: %s", e)
                continue
            try:
                self._on_packet(data, (sender[0], sender[1]))
            except Exception as e:  # never let one packet end the thread
                self.control.log_once(("packet", type(e).__name__), logging.ERROR,
                                      "OSC packet from %s could not be handled", _who(sender), exc_info=True)

    def _on_packet(self, data: bytes, sender: Sender) -> None:
        if not self._allowed(sender[0]):
            self.control.log_once(("denied", sender[0]), logging.WARNING,
                                  "OSC from %s dropped: not on the allow list (%s)", sender[0],
                                  ", ".join(map(str, self._allow)))
            return
        try:
            messages = parse_packet(data)
        except PacketError as e:
            self._reply(self.control.reject(e.address, e.reason, sender), sender)
            return
        wall = time.time()
        for address, args, timetag in messages:
            if timetag and timetag > wall + FUTURE_NOTE_S:
                self.control.log_once(("future", sender[0]), logging.INFO,
                                      "OSC bundle from %s is time-tagged %.2f s ahead; netbend applies bundles "
                                      "on arrival (see live/control/osc.py)", sender[0], timetag - wall)
            self._reply(self.control.handle(address, args, sender), sender)

    def _allowed(self, ip: str) -> bool:
        if self._allow is None:
            return True
        try:
            addr = ipaddress.ip_address(ip.split("%")[0])
        except ValueError:
            return False
        if getattr(addr, "ipv4_mapped", None) is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self._allow)

    def _reply(self, replies: list[Reply], sender: Sender) -> None:
        for address, args in replies:
            dgram = self._build(address, args)
            if dgram is None:
                continue
            try:
                self._sock.sendto(dgram, sender)
            except OSError as e:
                self.control.log_once(("reply", sender, e.errno), logging.WARNING,
                                      "OSC reply to %s failed: %s", _who(sender), e)
            if address == ERROR and self._feedback_address not in (None, sender):
                self._send_feedback(dgram)

    def error(self, address: str, reason: str) -> None:
        """Report on the feedback target a command the show refused after it was queued
        (rare: the state changed between validation and the frame boundary)."""
        self._to_feedback(ERROR, (address, reason))

    def _to_feedback(self, address: str, args: Sequence[Any]) -> None:
        if self._feedback_address is None or self._closed:
            return
        dgram = self._build(address, args)
        if dgram is not None:
            self._send_feedback(dgram)

    def _send_feedback(self, dgram: bytes) -> None:
        try:
            self._sock.sendto(dgram, self._feedback_address)
        except OSError as e:  # full buffer or nobody listening: the show goes on
            self.control.log_once(("feedback", e.errno), logging.WARNING, "OSC feedback to %s:%s failed: %s",
                                  self.feedback[0], self.feedback[1], e)

    def _build(self, address: str, args: Sequence[Any]) -> Optional[bytes]:
        try:
            return build_msg(address, tuple(args)).dgram  # int beyond int32 -> 'h', float -> 'f'
        except Exception as e:
            self.control.log_once(("build", address, type(e).__name__), logging.ERROR,
                                  "cannot encode OSC %s %r: %s", address, tuple(args), e)
            return None

