"""OSC control: the address table, a plain object tested without sockets (STYLE.md).

``OscControl.handle(address, args, sender)`` turns one message (or an OSC address pattern,
matched against every concrete address) into Commands, validates each with
``live.control.state.apply`` against the loaded model's limits and hands it to ``submit``
(the render thread's queue), or answers ``/netbend/error s:address s:reason``. It never
changes the show: the render thread applies queued commands at frame boundaries and calls
``OscServer.echo``. A preset load is read and checked here, on this thread, and travels to
the render thread parsed; the render thread reads no file. ``StartGate`` stands in for the
show while the model loads.

Messages validate against the newest snapshot *plus* the commands queued here that the
render thread has not applied yet (for at most ``pending_s``), so a message that depends on
one sent a moment earlier is accepted before the next frame boundary.

The rest of OSC: the server thread (live/control/osc_server.py), what goes back and where
(osc_feedback.py), who may send and how much (osc_senders.py), packets and address
patterns (osc_packets.py).
"""
from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from typing import Any, Callable, Optional

from live.log_once import LogOnce, shorten
from live.control.osc_packets import is_pattern, match_addresses
from live.control.osc_senders import Sender, who
from live.control.state import PREFIX, Command, CommandError, ShowState, addresses, apply

log = logging.getLogger("netbend.osc")

ERROR = "/netbend/error"          # s:address s:reason
STATE = "/netbend/state"          # query: replies with ShowState.messages() then STATE_END
STATE_END = "/netbend/state/end"  # marks the end of a state reply (UDP gives no other end)
AUDIO = "/netbend/audio"          # /netbend/audio/<feature> f
SAVED = "/netbend/preset/saved"   # s:name, echoed when a save has been written
STATS = "/netbend/stats"          # query: replies /netbend/stats/<name> f|i (fps, frames, errors …)
READY = "/netbend/ready"          # i: 1 once the show renders (0 while the model loads), in state replies
TEMPO_ADDRESSES = ("/netbend/tempo", "/netbend/tempo/tap", "/netbend/tempo/lock")
MAX_REASON = 1000                 # characters of an error reason sent back (the operator list fits)

Reply = tuple[str, tuple]


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
        self.get_state, self._submit, self._clock, self.ready = get_state, submit, clock, ready
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
                          "OSC %s from %s: %s", address, who(sender), reason, exc_info=True)
            return [(ERROR, (address, shorten(reason, MAX_REASON)))]
        if address == STATE:
            tempo = [(a, (v,)) for a, v in self.tempo.values().items()] if self.tempo is not None else []
            return list(self.get_state().messages()) + tempo + [(READY, (int(self.ready()),)), (STATE_END, ())]
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
                      address or "(unreadable packet)", who(sender), reason)
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
        return self._projected if self._projected is not None else self.get_state()

    def _validate(self, command: Command) -> ShowState:
        return apply(self._validation_state(), command, self.layers)


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
