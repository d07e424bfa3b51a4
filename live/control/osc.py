"""OSC control: UDP packets in, validated ``Command`` values out; replies and echoes back.

* ``OscControl`` is the address table, a plain object tested without sockets (STYLE.md).
  ``handle(address, args, sender)`` turns one message (or an OSC address pattern, matched
  against every concrete address) into Commands, validates each with
  ``live.control.state.apply`` against the loaded model's limits and hands it to ``submit``
  (the render thread's queue), or answers ``/netbend/error s:address s:reason``. It never
  changes the show: the render thread applies queued commands at frame boundaries and
  calls ``OscServer.echo``. A preset load is read and checked here, on this thread, and
  travels to the render thread parsed; the render thread reads no file.
* ``OscServer`` is the thin shell: one thread reads datagrams, parses them
  (live/control/osc_packets.py), passes each message to ``OscControl`` and sends the
  replies.

Where replies go. A reply (errors, the /netbend/state reply) goes to the packet's sender
*and* to the feedback target: Max's ``[udpsend]`` and TouchDesigner's OSC Out send from
random ports, so a patch listens on the feedback port. Echoes of applied changes, the
audio features and each mapped bend's effective value go to the feedback target only.
An echo is the difference between the state before and after: every value a change set
(a preset load sets many), each in its one canonical type, and nothing that did not change.

A show stays up whatever arrives. UDP source addresses can be forged, so replies go to a
sender only if it is on this machine (loopback) or on the ``allow`` list; anyone else gets
nothing back (the feedback target still hears). Every sender (IP and port) has a budget:
``packet_rate`` messages a second (bursts of twice that) are read, the rest are dropped
unread and counted; replies are bounded in messages and bytes a second per sender, and
when over, one short summary a second says how many were dropped. Log lines are bounded
in number and length. So a flood from one sender costs a small share of a core and does
not starve the others.

Bundles and time tags. python-osc's Dispatcher sleeps until a bundle's time tag on the
server thread; here every message of a bundle is handled at once, in the sender's order.
Time tags are not honoured, on purpose: commands take effect at the next frame boundary
anyway, so a tag could buy at most a frame; tags are the sender's wall clock, which Max,
TouchDesigner and the show machine rarely share; and a queue of future bundles is state a
sender could grow without bound. A bundle tagged in the future is logged once per sender.

Messages validate against the newest snapshot *plus* the commands queued here that the
render thread has not applied yet (for at most ``pending_s``), so a message that depends on
one sent a moment earlier is accepted before the next frame boundary.
"""
from __future__ import annotations

import ipaddress
import logging
import math
import queue
import socket
import threading
import time
from collections import OrderedDict, deque
from typing import Any, Callable, Optional, Sequence

from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import build_msg

from live.log_once import LogOnce, shorten
from live.control.osc_packets import PacketError, is_pattern, match_addresses, parse_packet
from live.control.state import (PREFIX, Command, CommandError, ShowState, addresses, apply, echo_messages)

__all__ = ["AUDIO", "ERROR", "OscControl", "OscServer", "PacketError", "STATE", "STATE_END", "parse_packet"]

log = logging.getLogger("netbend.osc")

ERROR = "/netbend/error"          # s:address s:reason
STATE = "/netbend/state"          # query: replies with ShowState.messages() then STATE_END
STATE_END = "/netbend/state/end"  # marks the end of a state reply (UDP gives no other end)
AUDIO = "/netbend/audio"          # /netbend/audio/<feature> f
SAVED = "/netbend/preset/saved"   # s:name, echoed when a save has been written
STATS = "/netbend/stats"          # query: replies /netbend/stats/<name> f|i (fps, frames, errors …)
READY = "/netbend/ready"          # i: 1 once the show renders (0 while the model loads), in state replies
TEMPO_ADDRESSES = ("/netbend/tempo", "/netbend/tempo/tap", "/netbend/tempo/lock")

Reply = tuple[str, tuple]
Sender = tuple[str, int]

FUTURE_NOTE_S = 0.1       # a bundle tagged further ahead than this is noted in the log
POLL_S = 0.1              # the server thread checks its stop Event this often
MAX_DATAGRAM = 65535      # the largest UDP payload
MAX_REASON = 1000       # characters of an error reason sent back (the operator list fits)
PACKET_RATE = 500.0       # messages a second read from one sender (burst: twice this)
REPLY_RATE = 20.0         # error replies a second to one sender (burst: twice this)
REPLY_BYTES = 64 * 1024   # bytes a second of replies to one sender (a state reply is ~5 KB)
MAX_SENDERS = 256         # senders whose budgets are remembered (least recent forgotten)


# -- budgets and logging ------------------------------------------------------------------------

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


class _SenderBudget:
    __slots__ = ("packets", "replies", "bytes", "summary_due")

    def __init__(self, now: float, packet_rate: float):
        self.packets = Bucket(packet_rate, 2 * packet_rate, now)
        self.replies = Bucket(REPLY_RATE, 2 * REPLY_RATE, now)
        self.bytes = Bucket(REPLY_BYTES, 2 * REPLY_BYTES, now)
        self.summary_due = now


# -- the address table --------------------------------------------------------------------------

class OscControl:
    """OSC messages in, validated Commands to ``submit``, replies out. No sockets here.

    get_state: the show's newest immutable snapshot (the render thread publishes it).
    submit: hands a validated Command to the render thread (a queue's put); may raise
        queue.Full, which is answered as an error.
    layers: the loaded model's ``ModelLimits`` (or its U-Net point names), so a command
        that this model cannot render is refused here.
    load_preset: name or slot number -> the ShowState that preset sets, checked (raises
        ValueError with the reason). None: preset loads are refused.
    check_save: name -> None, or raises ValueError (a shipped preset's name, say).
    tempo: a live.control.tempo.Tempo taking /netbend/tempo, /tempo/tap and /tempo/lock.
    ready: whether the show renders yet (``/netbend/ready`` in the state reply).
    stats: the show's numbers ({name: number}) for a ``/netbend/stats`` query.
    clock: the show clock stamped on each Command.
    pending_s: how long a queued command counts towards validating the next messages
        when the render thread has not applied it yet.
    """

    def __init__(self, get_state: Callable[[], ShowState], submit: Callable[[Command], None],
                 layers=None, clock: Callable[[], float] = time.monotonic, pending_s: float = 2.0,
                 load_preset: Optional[Callable[[Any], ShowState]] = None,
                 check_save: Optional[Callable[[str], None]] = None, tempo=None,
                 ready: Callable[[], bool] = lambda: True, stats: Optional[Callable[[], dict]] = None):
        self._get_state, self._submit, self._clock, self.ready = get_state, submit, clock, ready
        self.stats = stats
        self.layers = layers
        self.load_preset, self.check_save, self.tempo = load_preset, check_save, tempo
        self._pending_s = pending_s
        self._pending: deque[Command] = deque(maxlen=4096)  # queued, not yet applied: server thread only
        self._projected: Optional[ShowState] = None  # the snapshot with every pending command applied
        self._applied: queue.SimpleQueue = queue.SimpleQueue()  # render thread -> server thread
        self._addresses = addresses()
        self._scheduled = 0  # commands waiting for the beat
        self.log_once = LogOnce(log, clock=clock)

    def handle(self, address: str, args: tuple, sender: Sender) -> list[Reply]:
        """The replies to send back to ``sender``: [] for an accepted change.

        An OSC address pattern (``/netbend/bend/*/enable``) applies to every address it
        matches; bend slots that are empty are skipped, and it is an error only when it
        matches nothing, or nothing it matches accepts the arguments.
        """
        args = tuple(args)
        if is_pattern(address):
            try:
                matches = match_addresses(address, self._addresses)
            except ValueError as e:
                return self.reject(address, str(e), sender)
            if not matches:
                return self.reject(address, "this OSC address pattern matches no netbend address; see the README",
                                   sender)
            replies: list[Reply] = []
            errors: list[Reply] = []
            for concrete in matches:
                if self._empty_bend(concrete):
                    continue
                out = self._handle_one(concrete, args, sender, quiet=True)
                (errors if out and out[0][0] == ERROR else replies).extend(out)
            if errors and not replies and len(errors) == len([m for m in matches if not self._empty_bend(m)]):
                return self.reject(address, f"no address it matches took the arguments: {errors[0][1][1]}", sender)
            if not errors and not replies and all(self._empty_bend(m) for m in matches):
                return self.reject(address, "every bend this pattern matches is empty", sender)
            return replies
        return self._handle_one(address, args, sender)

    def _empty_bend(self, address: str) -> bool:
        if not address.startswith(PREFIX + "/bend/") or address.endswith("/operator"):
            return False
        n = int(address.split("/")[3])
        return self._validation_state().slots[n - 1] is None

    def _handle_one(self, address: str, args: tuple, sender: Sender, quiet: bool = False) -> list[Reply]:
        if address in TEMPO_ADDRESSES:
            return self._tempo(address, args, sender)
        if address == STATS:
            if args:
                return self.reject(address, f"{STATS} takes no arguments; got {len(args)}", sender)
            numbers = self.stats() if self.stats is not None else {}
            return [(f"{STATS}/{k}", (float(v) if isinstance(v, float) else int(v),)) for k, v in numbers.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)] + [
                (f"{STATS}/end", ())]
        command = Command(address, args, time=self._clock(), source="osc")
        try:
            if address == "/netbend/preset/load":
                apply(self._validation_state(), command, self.layers)  # the arguments' form
                command = self._preload(command)
            elif address == "/netbend/preset/save" and self.check_save is not None:
                apply(self._validation_state(), command, self.layers)
                self.check_save(args[0])
            after = self._validate(command)
        except (CommandError, ValueError) as e:
            reason = str(e)
            if not reason.startswith(address):
                reason = f"{address}: {reason}"
            return self.reject(address, reason, sender)
        except Exception as e:  # a bug below apply(); the message is refused, the thread lives
            reason = f"{address}: could not apply: {type(e).__name__}: {e}"
            self.log_once((address, "internal", type(e).__name__), logging.ERROR,
                          "OSC %s from %s: %s", address, _who(sender), reason, exc_info=True)
            return [(ERROR, (address, shorten(reason, MAX_REASON)))]
        if address == STATE:
            tempo = [(a, (v,)) for a, v in self.tempo.values().items()] if self.tempo is not None else []
            return list(self._get_state().messages()) + tempo + [(READY, (int(self.ready()),)), (STATE_END, ())]
        when = self._quantized(command)
        if when is not None:
            return self._schedule(command, when, sender)
        try:
            self._submit(command)
        except queue.Full:
            return self.reject(address, "the show's command queue is full (render thread busy); message dropped",
                               sender)
        except Exception as e:
            return self.reject(address, f"could not queue the command: {type(e).__name__}: {e}", sender)
        self._pending.append(command)
        self._projected = after
        return []

    QUANTIZED = ("/netbend/preset/load", "/netbend/prompt")
    MAX_SCHEDULED = 16

    def _quantized(self, command: Command) -> Optional[float]:
        """The clock time a preset load or prompt change waits for (the next beat or bar), or
        None to apply it at the next frame. Per command (preset/load's second argument) or
        the show's /netbend/quantize."""
        if self.tempo is None or command.address not in self.QUANTIZED:
            return None
        mode = command.args[1] if command.address == "/netbend/preset/load" and len(command.args) == 2 \
            else self._validation_state().quantize
        if mode not in ("beat", "bar"):
            return None
        return self.tempo.next_boundary(mode)

    def _schedule(self, command: Command, when: float, sender: Sender) -> list[Reply]:
        if self._scheduled >= self.MAX_SCHEDULED:
            return self.reject(command.address, f"{self.MAX_SCHEDULED} changes already wait for the beat", sender)
        self._scheduled += 1

        def fire() -> None:
            self._scheduled -= 1
            try:
                self._submit(command)
            except Exception as e:  # noqa: BLE001 - the queue was full at the beat: say so in the log
                self.log_once((command.address, "scheduled"), logging.WARNING,
                              "OSC %s waited for the beat and was dropped: %s", command.address, e)

        timer = threading.Timer(max(0.0, when - self.tempo.clock()), fire)
        timer.daemon = True
        timer.start()
        return []

    def _preload(self, command: Command) -> Command:
        if self.load_preset is None:
            raise CommandError("/netbend/preset/load: no presets in this show")
        state = self.load_preset(command.args[0])
        return Command(command.address, command.args, command.time, command.source, payload=state)

    def _tempo(self, address: str, args: tuple, sender: Sender) -> list[Reply]:
        if self.tempo is None:
            return self.reject(address, f"{address}: no tempo in this show", sender)
        try:
            self.tempo.command(address, args)
        except ValueError as e:
            return self.reject(address, str(e), sender)
        return []

    def applied(self, command: Command) -> None:
        """The render thread applied ``command`` (called from any thread; never blocks)."""
        if command.source == "osc":
            self._applied.put(command)

    def reject(self, address: str, reason: str, sender: Sender) -> list[Reply]:
        """The /netbend/error reply for a bad message, logged once per (address, reason)."""
        address, reason = shorten(address, 120), shorten(reason, MAX_REASON)
        self.log_once((address, reason), logging.WARNING, "OSC %s from %s refused: %s",
                      address or "(unreadable packet)", _who(sender), reason)
        return [(ERROR, (address, reason))]

    def _validation_state(self) -> ShowState:
        """The newest snapshot, with the commands still queued here applied."""
        while not self._applied.empty():
            done = self._applied.get_nowait()  # only this thread takes from it
            if self._pending and self._pending[0] is done:
                self._pending.popleft()
            elif done in self._pending:
                self._pending.remove(done)
        now = self._clock()
        while self._pending and now - self._pending[0].time > self._pending_s:
            self._pending.popleft()
        if not self._pending:
            self._projected = None
        return self._projected if self._projected is not None else self._get_state()

    def _validate(self, command: Command) -> ShowState:
        return apply(self._validation_state(), command, self.layers)


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


def _ip(text: str):
    try:
        addr = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None
    mapped = getattr(addr, "ipv4_mapped", None)
    return mapped if mapped is not None else addr


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
        self._allow = _allow_list(allow)
        self._clock = clock
        self._features_period = 1.0 / features_hz if features_hz else 0.0
        self._features_due = -float("inf")
        self._packet_rate = float(packet_rate)
        self._budgets: OrderedDict[Sender, _SenderBudget] = OrderedDict()
        self.dropped = 0  # messages not read: over a sender's budget
        self.replies_dropped = 0

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

        self.on_changed: list[Callable[[list[Reply]], None]] = []  # e.g. OSCQuery's LISTEN push
        self._echo_lock = threading.Lock()
        self._echoed: Optional[ShowState] = None  # the state the controller was last told
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._closed = False

    # lifecycle
    def start(self) -> "OscServer":
        if self._closed:
            raise RuntimeError("this OscServer was stopped; make a new one")
        if self._thread is None:
            self._echoed = self.control._get_state()
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
        """The render thread applied ``command``: tell the feedback target every value that
        changed since it was last told (a preset load: every value the preset set)."""
        self.control.applied(command)
        with self._echo_lock:
            now = self.control._get_state()
            before = self._echoed if self._echoed is not None else ShowState()
            self._echoed = now
            changed = echo_messages(before, now)
        for address, args in changed:
            self._to_feedback(address, args)
        for listener in self.on_changed:
            try:
                listener(changed)
            except Exception:  # noqa: BLE001 - a listener's hiccup never stops the render thread
                self.control.log_once(("on_changed", "internal"), logging.ERROR, "OSC change listener failed",
                                      exc_info=True)
        if command.address == "/netbend/preset/save":
            self._to_feedback(SAVED, (str(command.args[0]),))

    def send_features(self, frame, extra: Optional[dict] = None) -> bool:
        """One bundle of ``/netbend/audio/<name> f`` for each feature of ``frame`` (an
        engine.features.FeatureFrame, or a {name: value} dict) plus ``extra`` {address:
        value} (mapped bends' values, beat features).

        Call it as often as you like; it lets at most ``features_hz`` bundles a second
        through and returns whether it sent this one.
        """
        if self._feedback_address is None or self._closed:
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
        self._send_feedback(bundle.build().dgram)
        return True

    def error(self, address: str, reason: str) -> None:
        """Report on the feedback target a command the show refused after it was queued
        (rare: the state changed between validation and the frame boundary)."""
        self._to_feedback(ERROR, (shorten(address, 120), shorten(reason, MAX_REASON)))

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
            except Exception:  # never let one packet end the thread
                self.control.log_once(("packet", "internal"), logging.ERROR,
                                      "OSC packet from %s could not be handled", _who(sender), exc_info=True)

    def _budget(self, sender: Sender, now: float) -> _SenderBudget:
        budget = self._budgets.get(sender)
        if budget is None:
            budget = self._budgets[sender] = _SenderBudget(now, self._packet_rate)
            if len(self._budgets) > MAX_SENDERS:
                self._budgets.popitem(last=False)
        else:
            self._budgets.move_to_end(sender)
        return budget

    def _on_packet(self, data: bytes, sender: Sender) -> None:
        now = self._clock()
        budget = self._budget(sender, now)
        if not budget.packets.take(now):
            self.dropped += 1  # over this sender's budget: not even parsed
            return
        if not self._allowed(sender[0]):
            self.control.log_once(("denied", sender[0]), logging.WARNING,
                                  "OSC from %s dropped: not on the allow list (%s)", sender[0],
                                  ", ".join(map(str, self._allow)))
            return
        try:
            messages = parse_packet(data)
        except PacketError as e:
            self._reply(self.control.reject(e.address, e.reason, sender), sender, budget, now)
            return
        wall = time.time()
        for k, (address, args, timetag) in enumerate(messages):
            if k and not budget.packets.take(now):  # each message of a bundle counts
                self.dropped += len(messages) - k
                self._reply(self.control.reject("", f"{len(messages) - k} messages of a bundle dropped: over "
                                                    f"{self._packet_rate:g} messages a second from one sender",
                                                sender), sender, budget, now)
                return
            if timetag and timetag > wall + FUTURE_NOTE_S:
                self.control.log_once(("future", sender[0]), logging.INFO,
                                      "OSC bundle from %s is time-tagged %.2f s ahead; netbend applies bundles "
                                      "on arrival (see live/control/osc.py)", sender[0], timetag - wall)
            replies = self.control.handle(address, args, sender)
            if replies:
                self._reply(replies, sender, budget, now)

    def _allowed(self, ip: str) -> bool:
        if self._allow is None:
            return True
        addr = _ip(ip)
        return addr is not None and any(addr in net for net in self._allow)

    def _answers(self, ip: str) -> bool:
        """Whether ``ip`` may get replies: loopback, or on the allow list (it was checked)."""
        if self._allow is not None:
            return True
        addr = _ip(ip)
        return addr is not None and addr.is_loopback

    def _reply(self, replies: list[Reply], sender: Sender, budget: _SenderBudget, now: float) -> None:
        is_error = replies[0][0] == ERROR
        if is_error and not budget.replies.take(now):
            self.replies_dropped += 1
            self._summary(sender, budget, now)
            return
        dgrams = [d for d in (self._build(a, args) for a, args in replies) if d is not None]
        size = sum(len(d) for d in dgrams)
        if not budget.bytes.take(now, size):
            self.replies_dropped += 1
            self._summary(sender, budget, now)
            return
        to_sender = self._answers(sender[0])
        for dgram in dgrams:
            if to_sender:
                try:
                    self._sock.sendto(dgram, sender)
                except OSError as e:
                    self.control.log_once(("reply", sender[0], e.errno), logging.WARNING,
                                          "OSC reply to %s failed: %s", _who(sender), e)
            if self._feedback_address is not None and self._feedback_address != sender:
                self._send_feedback(dgram)

    def _summary(self, sender: Sender, budget: _SenderBudget, now: float) -> None:
        """At most one short note a second telling a sender how many replies it missed."""
        if now < budget.summary_due:
            return
        budget.summary_due = now + 1.0
        dropped = budget.replies.dropped + budget.bytes.dropped
        budget.replies.dropped = budget.bytes.dropped = 0
        dgram = self._build(ERROR, ("", f"{dropped} replies not sent: over {REPLY_RATE:g} errors or "
                                        f"{REPLY_BYTES // 1024} KB a second to {_who(sender)}"))
        if dgram is not None and self._answers(sender[0]):
            try:
                self._sock.sendto(dgram, sender)
            except OSError:
                pass

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
            return build_msg(address, tuple(args)).dgram  # int -> 'i', float -> 'f', str -> 's'
        except Exception as e:
            self.control.log_once(("build", shorten(address, 60), type(e).__name__), logging.ERROR,
                                  "cannot encode OSC %s %r: %s", address, tuple(args), e)
            return None


class StartGate:
    """Stands in for the show while the model loads, so the OSC port is open from the first
    second: commands are held (at most ``limit``, then answered "queue full") and handed to
    the show, in order, when it starts; a state query answers the starting preset's state.

        gate = StartGate(state_from_preset(preset))
        control = OscControl(gate.get_state, gate.submit, …)    # before load_model
        …
        gate.open(show)                                          # the show validates them again
    """

    def __init__(self, state: ShowState, limit: int = 1024):
        self._state, self._limit = state, limit
        self._held: deque[Command] = deque()
        self._show = None
        self._lock = threading.Lock()

    def get_state(self) -> ShowState:
        show = self._show
        return show.state if show is not None else self._state

    def submit(self, command: Command) -> None:
        with self._lock:
            if self._show is None:
                if len(self._held) >= self._limit:
                    raise queue.Full
                self._held.append(command)
                return
        if not self._show.submit(command):
            raise queue.Full

    @property
    def held(self) -> int:
        return len(self._held)

    @property
    def is_open(self) -> bool:
        return self._show is not None

    def open(self, show) -> int:
        """Hand the held commands to ``show`` and pass every later one straight on; returns
        how many were held."""
        with self._lock:
            count = len(self._held)
            while self._held:
                show.submit(self._held.popleft())
            self._show = show
        return count
