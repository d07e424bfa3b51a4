"""`netbend live`: the show. Wires the threads of DESIGN.md together and owns their lifetimes.

    audio    AudioInput / FileSource callback -> ring;  FeatureThread -> feature ring
    render   Show.run: commands -> mappings -> bends -> StreamPipeline.step -> Mailbox
    main     Window.run (glfw needs the main thread), or a timer in --headless mode
    osc      OscServer: validate -> Show.submit; echoes, errors, state replies, features out
    replay   TakePlayer: a take's commands -> Show.submit at their recorded times

Every thread stops on one ``threading.Event``; Ctrl-C, the window's double-Escape, the
end of --duration or of a replayed take set it.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

log = logging.getLogger("netbend.live")


@dataclass
class LiveOptions:
    preset: str = "default"
    model: Optional[str] = None
    device: Optional[str] = None  # torch device
    size: Optional[tuple[int, int]] = None
    audio_device: Optional[str] = None
    audio_file: Optional[Path] = None
    play: bool = False  # with --audio-file: also play it to the speakers
    channels: Optional[str] = None
    gain_db: float = 0.0
    gate_db: float = -70.0
    osc_host: str = "127.0.0.1"
    osc_port: Optional[int] = 9000  # None: no OSC (and no OSCQuery)
    osc_allow: list[str] = field(default_factory=list)
    osc_feedback: Optional[tuple[str, int]] = None
    features_hz: float = 30.0
    headless: bool = False
    duration: Optional[float] = None
    fullscreen: bool = False
    monitor: Optional[str] = None
    record: Optional[Path] = None
    record_audio: bool = False  # also write the input audio into the take
    replay: Optional[Path] = None
    slots: list[str] = field(default_factory=list)
    allow_pickle: bool = False
    no_audio: bool = False
    backend: str = "eager"  # eager | compile: how the U-Net runs (see engine.pipeline_base)
    oscquery_port: Optional[int] = None  # None: the OSC port + 10; 0: no OSCQuery
    link: bool = False  # join an Ableton Link session
    tempo: float = 120.0  # BPM until tapped, set, or Link says otherwise
    quantize: str = "off"  # off | beat | bar: when preset loads and prompts take effect
    outputs: Optional[object] = None  # a live.outputs.options.OutputOptions: NDI, recording, output size …

    def __post_init__(self) -> None:
        """Checks that need no file, device or model: a wrong option fails at once, named."""
        if self.audio_device is not None and self.audio_file is not None:
            raise ValueError("give --audio-device or --audio-file, not both")
        if self.no_audio and (self.audio_device is not None or self.audio_file is not None):
            raise ValueError("--no-audio takes no --audio-device or --audio-file")
        if self.duration is not None and not self.duration > 0:
            raise ValueError(f"--duration must be > 0 seconds, got {self.duration}")
        if self.osc_port is not None and not (isinstance(self.osc_port, int) and 0 <= self.osc_port <= 65535):
            raise ValueError(f"--osc-port must be a UDP port 0..65535 (0: any free port), got {self.osc_port!r}; "
                             "no OSC: --no-osc")
        if not self.features_hz > 0:
            raise ValueError(f"--features-hz must be > 0, got {self.features_hz}")
        if self.play and self.audio_file is None:
            raise ValueError("--play plays an --audio-file to the speakers; give one")


def parse_host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad address {text!r}; write HOST:PORT, e.g. 127.0.0.1:9001")
    return host, int(port)


def _audio_source(opts: LiveOptions):
    from live.audio.filesource import FileSource
    from live.audio.input import AudioInput

    if opts.audio_file is not None:
        return FileSource(opts.audio_file, loop=True, play=opts.play)
    channels = None
    if opts.channels:
        channels = [int(c) for c in opts.channels.split(",")]
    device = opts.audio_device
    if device is not None and device.isdigit():
        device = int(device)
    return AudioInput(device=device, channels=channels, gain_db=opts.gain_db, gate_db=opts.gate_db)


def default_slots(count: int = 9) -> list[str]:
    """The presets on keys 1-9 when --slots is not given: the first ``count`` that can run
    live (stream presets), so no key recalls a preset the show must refuse."""
    from live.control.preset_files import PresetError, list_presets
    from live.control.presets import load_preset

    slots = []
    for name, path in list_presets():
        try:
            if load_preset(path).pipeline == "stream":
                slots.append(name)
        except PresetError as e:
            log.warning("preset %s is not offered on a key: %s", name, e)
        if len(slots) == count:
            break
    return slots


_STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


def _stop_on_signals(stop: threading.Event) -> dict:
    """Ctrl-C, SIGTERM and SIGHUP set ``stop`` (every thread then ends and is joined) instead
    of raising wherever the main thread happens to be; a second one acts as usual. Returns
    {"signal": name or None, "previous": handlers} for ``_restore_signals``. Main thread only."""
    import signal

    state: dict = {"signal": None, "previous": {}}
    if threading.current_thread() is not threading.main_thread():
        return state

    def handler(signum, frame) -> None:
        state["signal"] = signal.Signals(signum).name
        stop.set()
        _restore_signals(state)  # a second signal: the default action (KeyboardInterrupt, exit)

    for name in _STOP_SIGNALS:
        number = getattr(signal, name, None)
        if number is not None:
            state["previous"][number] = signal.signal(number, handler)
    return state


def _restore_signals(state: dict) -> None:
    import signal

    for number, previous in state["previous"].items():
        try:
            signal.signal(number, previous)
        except (ValueError, OSError):
            pass
    state["previous"] = {}


def _mapped_values(show) -> dict:
    """/netbend/bend/<n>/value: the param each mapped bend rendered with last, so a slider
    in the patch can follow what the audio does to it."""
    out, bends, k = {}, list(getattr(show, "_last_bends", ())), 0
    for n, slot in enumerate(show.state.slots, start=1):
        if slot is None:
            continue
        if slot.mapping is not None and k < len(bends):
            out[f"/netbend/bend/{n}/value"] = float(bends[k].param)
        k += 1
    return out


def run_live(opts: LiveOptions) -> dict:
    """Run the show until stopped; returns its numbers (fps, latency percentiles …)."""
    from live.control.presets import load_preset
    from live.control.state import state_from_preset

    from live.outputs.options import OutputOptions

    output_options = opts.outputs or OutputOptions()
    output_options.check()  # a wrong output option fails before the model loads
    take = None
    if opts.replay is not None:
        from live.control.takes import load_take

        take = load_take(opts.replay)
    preset = load_preset(opts.preset)
    if preset.pipeline != "stream":
        raise ValueError(f"preset {preset.name!r} is a {preset.pipeline} preset; `netbend live` runs stream presets "
                         f"(render it with `netbend render --preset {preset.name}`)")
    stop = threading.Event()
    stopped_by = _stop_on_signals(stop)  # from here on a signal ends the show cleanly
    slots = opts.slots or default_slots()
    from live.control.tempo import LinkTempo, Tempo

    tempo = LinkTempo(opts.tempo).start() if opts.link else Tempo(opts.tempo)
    osc = control = gate = oscquery = None
    if opts.osc_port is not None:  # open before the model loads: nothing sent is lost
        from live.control.osc import OscControl, OscServer, StartGate
        from live.control.preset_files import user_preset_path
        from live.control.presets import preset_state

        from dataclasses import replace as _replace

        first = take.start_state if take is not None else state_from_preset(preset)
        gate = StartGate(_replace(first, quantize=opts.quantize) if opts.quantize != "off" else first)
        control = OscControl(get_state=gate.get_state, submit=gate.submit, tempo=tempo,
                             # presets are read on the OSC thread, by name from the preset folders
                             load_preset=lambda which: preset_state(which, slots, control.layers),
                             check_save=user_preset_path, ready=lambda: gate.is_open)
        try:
            osc = OscServer(control, host=opts.osc_host, port=opts.osc_port, allow=opts.osc_allow or None,
                            feedback=opts.osc_feedback, features_hz=opts.features_hz).start()
        except BaseException:
            _restore_signals(stopped_by)
            raise
        log.info("OSC on %s:%d (commands wait for the show to start)", opts.osc_host, osc.port)
        tempo.on_change.append(lambda bpm: osc._to_feedback("/netbend/tempo", (float(bpm),)))
        query_port = opts.oscquery_port if opts.oscquery_port is not None else osc.port + 10
        if query_port:
            from live.control.oscquery import OscQueryServer

            try:
                oscquery = OscQueryServer(gate.get_state, osc_port=osc.port, host=opts.osc_host, port=query_port,
                                          layers=lambda: control.layers.layers if control.layers else (),
                                          extra_values=tempo.values).start()
                osc.on_changed.append(oscquery.changed)
            except OSError as e:
                log.warning("%s; the show goes on without OSCQuery (--oscquery-port 0 turns it off)", e)
    try:
        return _run_live(opts, preset, take, output_options, stop, stopped_by, slots, osc, control, gate, tempo)
    finally:
        stop.set()
        _restore_signals(stopped_by)
        for thing in (oscquery, osc, tempo if opts.link else None):
            if thing is not None:
                thing.stop()


def _run_live(opts: LiveOptions, preset, take, output_options, stop: threading.Event, stopped_by: dict,
              slots: list, osc, control, gate, tempo) -> dict:
    """run_live once the OSC port is open: load the model, run the show, close it all."""
    import torch

    from engine.stream import StreamPipeline
    from live.control.presets import load_preset_model
    from live.control.state import state_from_preset
    from live.display.upload import CudaGLInterop, choose_upload
    from live.show.show import Show

    window = None
    if not opts.headless:
        from live.display.window import Window

        window = Window(fullscreen=opts.fullscreen, monitor=opts.monitor)  # fails early: no display, bad monitor
        window.display.framing = output_options.framing  # the window shows what the outputs get
    model, preset = load_preset_model(preset, opts.model, device=opts.device, allow_pickle=opts.allow_pickle)
    model_name = model.name
    config = preset.config()
    if opts.size:
        config.width, config.height = opts.size
    pipe = StreamPipeline(model, config, backend=opts.backend)
    pipe.prepare()
    upload, interop = choose_upload(model.device, window is None,
                                    (lambda: CudaGLInterop(window.ctx, model.device)) if window is not None else None)
    log.info("frame upload: %s", upload)
    if window is not None:
        window.display.interop = interop
    state = take.start_state if take is not None else state_from_preset(preset)
    pipe.bends = state.bends  # layers checked against this model before the show starts

    source = feature_thread = player = outputs = render = None
    try:
        if take is not None and opts.audio_file is None and opts.audio_device is None:
            from live.control.takes import TakeFeatures

            features = TakeFeatures(take)
        elif opts.no_audio:
            features = None
        else:
            from live.audio.features import FeatureThread

            source = _audio_source(opts)
            source.start()
            feature_thread = FeatureThread(source, hop=0.01, taper=preset.taper)  # the starting preset's window
            feature_thread.start()
            features = feature_thread
        from live.control.tempo import TempoFeatures

        features = TempoFeatures(features, tempo)  # beat_phase, lfo_sine … map like audio features
        h, w = pipe.size
        outputs = output_options.build((w, h), audio=source if hasattr(source, "read_since") else None)
        show = Show(pipe, state, features=features, model_name=model_name, slots=slots, upload=upload,
                    take_root=opts.record.parent if opts.record else None,
                    # a file's audio always goes into takes (render --take has it); a line-in's on request
                    audio_source=source if opts.record_audio or opts.audio_file is not None else None)
        show.outputs = outputs
        outputs.error = lambda address, reason: show.error(address, reason)  # answered like any command
        if osc is not None:
            control.layers = show.limits  # from now on commands are checked against this model
            control.stats = lambda: {**show.stats(), "osc_dropped": osc.dropped, "osc_replies_dropped":
                                     osc.replies_dropped}
            show.echo = osc.echo
            show.error = osc.error
            held = gate.open(show)
            if held:
                log.info("%d OSC command(s) sent while the model loaded go to the show now", held)
        if opts.record is not None:
            show.start_recording(opts.record)
        render = threading.Thread(target=show.run, args=(stop,), name="netbend-render", daemon=True)
        render.start()
        if take is not None:
            from live.control.takes import TakePlayer

            player = TakePlayer(take, show.submit).start()
        started = time.monotonic()

        def should_stop() -> bool:
            if opts.duration is not None and time.monotonic() - started >= opts.duration:
                return True
            if player is not None and opts.duration is None and player.done and \
                    time.monotonic() - started >= take.duration + 0.5:
                return True
            return False

        if osc is not None and feature_thread is not None:
            show.on_features = lambda frame: osc.send_features(frame, _mapped_values(show))  # frozen or not
        if window is not None:
            def on_key(action: str) -> None:
                from live.control.state import Command

                if action == "quit":
                    stop.set()
                elif action == "freeze":
                    show.submit(Command("/netbend/freeze", (int(not show.state.frozen),), time.monotonic(), "key"))
                elif action.startswith("preset:"):
                    show.submit(Command("/netbend/preset/load", (int(action[7:]),), time.monotonic(), "key"))
                elif action == "save":
                    show.submit(Command("/netbend/preset/save", (time.strftime("live-%Y%m%d-%H%M%S"),),
                                        time.monotonic(), "key"))
                elif action == "tap":
                    tempo.tap()
                elif action == "record":
                    address = "/netbend/record/stop" if show.state.recording else "/netbend/record/start"
                    show.submit(Command(address, (), time.monotonic(), "key"))

            def watch() -> None:  # --duration and the end of a replay, while the window runs
                while not stop.is_set():
                    if should_stop():
                        stop.set()
                    time.sleep(0.05)

            threading.Thread(target=watch, name="netbend-watch", daemon=True).start()
            window.run(show.mailbox, stop, on_key, lambda: show.hud_lines() + outputs.hud_lines())
        else:
            while not stop.is_set() and not should_stop():
                show.mailbox.take()  # headless: frames are shown nowhere, but taken as a display would
                time.sleep(0.005)
        stop.set()
        render.join(timeout=10)
        stats = show.stats()
        stats["outputs"] = outputs.close()  # recordings finish their file here
        if window is not None and window.latencies:
            import numpy as np

            lat = np.asarray(window.latencies)
            stats["photon_latency_ms_p50"] = round(1000 * float(np.percentile(lat, 50)), 1)
            stats["photon_latency_ms_p95"] = round(1000 * float(np.percentile(lat, 95)), 1)
            stats["display_fps"] = round(window.fps, 2)
        if source is not None and hasattr(source, "overruns"):
            stats["audio_overruns"] = int(source.overruns)
        stats["device"] = str(model.device)
        if stopped_by["signal"]:
            stats["stopped_by"] = stopped_by["signal"]
        stats["model"] = model_name
        return stats
    finally:
        stop.set()
        _restore_signals(stopped_by)
        if render is not None and render.is_alive():
            render.join(timeout=10)  # exiting with the render thread inside torch aborts the process
        if outputs is not None:
            outputs.close()  # nothing left after an error: no output thread outlives the show
        for thing in (player, osc, feature_thread, source):
            if thing is not None:
                try:
                    thing.stop()
                except Exception:  # noqa: BLE001 - shutting down: keep closing the rest
                    log.exception("while stopping %s", type(thing).__name__)
        if window is not None:
            window.close()
        if torch.cuda.is_available():
            torch.cuda.synchronize()


def format_stats(stats: dict) -> str:
    return json.dumps(stats, sort_keys=True)
