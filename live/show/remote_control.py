"""The show's remote control: OSC and its OSCQuery twin, opened before the model loads.

``open_remote_control`` starts the OSC server at once, so a patch's first messages are not
lost while the model loads: they wait in a ``StartGate`` and are answered from the starting
state; ``RemoteControl.connect`` hands them to the show once it runs and from then on
checks every command against the loaded model. OSCQuery (default: the OSC port + 10) is
optional: a port in use costs the show its discovery, not its start.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

from live.show.options import LiveOptions

log = logging.getLogger("netbend.live")

__all__ = ["FeatureStream", "RemoteControl", "mapped_values", "open_remote_control"]


@dataclass
class RemoteControl:
    """The OSC server and its OSCQuery twin; until ``connect`` commands wait in ``gate``."""
    server: Any
    control: Any
    gate: Any
    query: Any = None
    features_hz: float = 30.0
    stream: Optional["FeatureStream"] = None

    def connect(self, show, features: bool) -> None:
        """From now on commands are checked against the show's model and go to the show;
        with ``features`` the show's audio features go out too (frozen or not)."""
        server = self.server
        self.control.layers = show.limits
        self.control.stats = lambda: {**show.stats(), "osc_dropped": server.dropped,
                                      "osc_replies_dropped": server.replies_dropped}
        show.echo, show.error = server.echo, server.error
        if features:
            self.stream = FeatureStream(server, show, self.features_hz).start()
        held = self.gate.open(show)
        if held:
            log.info("%d OSC command(s) sent while the model loaded go to the show now", held)

    def stop(self) -> None:
        """Safe to call twice: the show's close and run_live's both do."""
        for thing in (self.stream, self.query, self.server):
            if thing is not None:
                thing.stop()
        self.stream = self.query = self.server = None


class FeatureStream:
    """The show's audio features (and mapped bends' values) out to the feedback target at
    ``hz`` bundles a second, on a thread of their own: the rate a patch asked for, whatever
    the render rate, frozen or not."""

    def __init__(self, server, show, hz: float):
        self.server, self.show, self.period = server, show, 1.0 / hz
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="netbend-features-out", daemon=True)
        self.failures = 0

    def start(self) -> "FeatureStream":
        self._thread.start()
        return self

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            due = max(due + self.period, time.monotonic())  # late: no catch-up burst
            try:
                self.server.send_features(self.show.current_features(), mapped_values(self.show))
            except Exception as e:  # noqa: BLE001 - a feedback hiccup must not stop the stream
                self.failures += 1
                if self.failures == 1:
                    log.warning("sending the audio features over OSC failed: %s: %s", type(e).__name__, e)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)


def open_remote_control(opts: LiveOptions, first, slots: list[str], tempo) -> RemoteControl:
    from live.control.osc import OscControl, StartGate
    from live.control.osc_server import OscServer
    from live.control.preset_files import user_preset_path
    from live.control.presets import preset_state

    gate = StartGate(first)
    control = OscControl(get_state=gate.get_state, submit=gate.submit, tempo=tempo,
                         # presets are read on the OSC thread, by name from the preset folders
                         load_preset=lambda which: preset_state(which, slots, control.layers),
                         check_save=user_preset_path, ready=lambda: gate.is_open)
    server = OscServer(control, host=opts.osc_host, port=opts.osc_port, allow=opts.osc_allow or None,
                       feedback=opts.osc_feedback, features_hz=opts.features_hz).start()
    side = RemoteControl(server, control, gate, features_hz=opts.features_hz)
    try:
        log.info("OSC on %s:%d (commands wait for the show to start)", opts.osc_host, server.port)
        tempo.on_change.append(lambda bpm: server.to_feedback("/netbend/tempo", (float(bpm),)))
        side.query = _open_oscquery(opts, side, tempo)
    except BaseException:
        side.stop()
        raise
    return side


def _open_oscquery(opts: LiveOptions, side: RemoteControl, tempo):
    """OSCQuery on --oscquery-port (default the OSC port + 10, 0: none); a port in use
    costs the show its discovery, not its start."""
    port = opts.oscquery_port if opts.oscquery_port is not None else side.server.port + 10
    if not port:
        return None
    from live.control.oscquery import OscQueryServer

    try:
        query = OscQueryServer(side.gate.get_state, osc_port=side.server.port, host=opts.osc_host, port=port,
                               layers=lambda: side.control.layers.layers if side.control.layers else (),
                               extra_values=tempo.values).start()
    except OSError as e:
        log.warning("%s; the show goes on without OSCQuery (--oscquery-port 0 turns it off)", e)
        return None
    side.server.on_changed.append(query.changed)
    return query


def mapped_values(show) -> dict:
    """/netbend/bend/<n>/value: the param each mapped bend's mapping gave the newest frame,
    so a slider in the patch can follow what the audio does to it."""
    return {f"/netbend/bend/{n}/value": param for n, param in show.mapped_params.items()}
