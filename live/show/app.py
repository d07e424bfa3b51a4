"""`netbend live`: the show. Wires the threads of docs/ARCHITECTURE.md together and owns their lifetimes.

    audio    AudioInput / FileSource callback -> ring;  FeatureThread -> feature ring
    render   Show.run: commands -> mappings -> bends -> StreamPipeline.step -> Mailbox
    main     Window.run (glfw needs the main thread), or a timer in --headless mode
    osc      OscServer: validate -> Show.submit; echoes, errors, state replies, features out
    replay   TakePlayer: a take's commands -> Show.submit at their recorded times

``run_live`` is a few steps, each named for what it starts: the inputs are read
(``_inputs``), OSC opens before the model loads so nothing sent is lost
(live/show/remote_control.py),
then the model and pipeline (``_load_pipeline``), the features (``_start_features``), the
show with its outputs (``_make_show``) and the main loop (``_play``); ``_Parts.close``
ends what was started, whatever failed. Every thread stops on one ``threading.Event``;
Ctrl-C (live/show/signals.py), the window's double-Escape, the end of --duration or of a
replayed take set it. The options are live/show/options.py's ``LiveOptions``.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Optional

from live.show.options import LiveOptions
from live.show.remote_control import RemoteControl, open_remote_control
from live.show.signals import StopSignals

if TYPE_CHECKING:
    from live.audio.features import SupervisedSource

log = logging.getLogger("netbend.live")

__all__ = ["default_slots", "format_stats", "run_live", "starting_state"]


def run_live(opts: LiveOptions) -> dict:
    """Run the show until stopped; returns its numbers (fps, latency percentiles …)."""
    from live.control.tempo import LinkTempo, Tempo
    from live.outputs.options import OutputOptions

    output_options = opts.outputs or OutputOptions()
    output_options.check()  # a wrong output option fails before the model loads
    preset, take = _inputs(opts)
    stop = threading.Event()
    signals = StopSignals(stop).install()  # from here on a signal ends the show cleanly
    tempo = osc = None
    try:
        slots = opts.slots or default_slots()
        tempo = LinkTempo(opts.tempo).start() if opts.link else Tempo(opts.tempo)
        if opts.osc_port is not None:  # open before the model loads: nothing sent is lost
            osc = open_remote_control(opts, starting_state(opts, preset, take), slots, tempo)
        return _run_loaded(opts, preset, take, output_options, stop, signals, slots, osc, tempo)
    finally:
        stop.set()
        signals.restore()
        for thing in (osc, tempo if opts.link else None):
            if thing is not None:
                thing.stop()


def format_stats(stats: dict) -> str:
    return json.dumps(stats, sort_keys=True)


def starting_state(opts: LiveOptions, preset, take):
    """The ShowState the show starts in: a replayed take's, else the preset's, with the
    command line's input gain (what the audio source applies, so /netbend/state reports
    it from the first query) and --quantize when one is given."""
    from live.control.state import state_from_preset

    state = take.start_state if take is not None else state_from_preset(preset)
    return replace(state, gain_db=opts.gain_db, quantize=opts.quantize if opts.quantize != "off" else state.quantize)


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


def _inputs(opts: LiveOptions):
    """(the preset, the take to replay or None), read and checked before anything starts."""
    from live.control.presets import load_preset

    take = None
    if opts.replay is not None:
        from live.control.takes import load_take

        take = load_take(opts.replay)
    preset = load_preset(opts.preset)
    if preset.pipeline != "stream":
        raise ValueError(f"preset {preset.name!r} is a {preset.pipeline} preset; `netbend live` runs stream presets "
                         f"(render it with `netbend render --preset {preset.name}`)")
    if _feature_source(opts, take) == "line-in":  # a wrong device or channel is told before the model loads
        from live.audio.devices import find_device, input_channels

        input_channels(opts.channel_list() or 1, find_device(opts.audio_device, "input"))
    return preset, take


def _feature_source(opts: LiveOptions, take) -> str:
    """What the mappings read: "take" (a replayed take's recorded features, unless a file or
    device is given), "none" (--no-audio), "file" (--audio-file) or "line-in"."""
    if take is not None and opts.audio_file is None and opts.audio_device is None:
        return "take"
    if opts.no_audio:
        return "none"
    return "file" if opts.audio_file is not None else "line-in"


# -- the show, once the model is loaded ------------------------------------------------------


@dataclass
class _Parts:
    """What the show started, each None until made; ``close`` ends them in a safe order."""
    window: Any = None
    source: Optional[SupervisedSource] = None  # the AudioInput or FileSource
    feature_thread: Any = None
    outputs: Any = None
    render: Optional[threading.Thread] = None
    player: Any = None

    def close(self, osc: Optional[RemoteControl]) -> None:
        import torch

        if self.render is not None and self.render.is_alive():
            self.render.join(timeout=10)  # exiting with the render thread inside torch aborts the process
        if self.outputs is not None:
            self.outputs.close()  # nothing left after an error: no output thread outlives the show
        for thing in (self.player, osc, self.feature_thread, self.source):
            if thing is not None:
                try:
                    thing.stop()
                except Exception:  # noqa: BLE001 - shutting down: keep closing the rest
                    log.exception("while stopping %s", type(thing).__name__)
        if self.window is not None:
            self.window.close()
        if torch.cuda.is_available():
            torch.cuda.synchronize()


def _run_loaded(opts: LiveOptions, preset, take, output_options, stop: threading.Event, signals: StopSignals,
                slots: list[str], osc: Optional[RemoteControl], tempo) -> dict:
    """run_live once the OSC port is open: load the model, run the show, close it all."""
    parts = _Parts()
    try:
        parts.window = _open_window(opts, output_options)  # fails early: no display, bad monitor
        pipe, preset, upload = _load_pipeline(opts, preset, parts.window)
        state = starting_state(opts, preset, take)
        pipe.bends = state.bends  # layers checked against this model before the show starts
        features = _start_features(opts, take, preset, tempo, parts)
        show = _make_show(opts, pipe, state, features, parts, slots, upload, output_options, osc)
        parts.render = threading.Thread(target=show.run, args=(stop,), name="netbend-render", daemon=True)
        parts.render.start()
        if take is not None:
            from live.control.takes import TakePlayer

            parts.player = TakePlayer(take, show.submit).start()
        _play(opts, show, parts, stop, tempo, take)
        stop.set()
        parts.render.join(timeout=10)
        return _numbers(show, parts, pipe.model, signals)
    finally:
        stop.set()
        signals.restore()
        parts.close(osc)


def _open_window(opts: LiveOptions, output_options):
    if opts.headless:
        return None
    from live.display.window import Window

    window = Window(fullscreen=opts.fullscreen, monitor=opts.monitor)
    window.display.framing = output_options.framing  # the window shows what the outputs get
    return window


def _load_pipeline(opts: LiveOptions, preset, window):
    """(the prepared StreamPipeline, the preset as it runs on the loaded model, how frames
    reach the screen)."""
    from engine.stream import StreamPipeline
    from live.control.presets import load_preset_model
    from live.display.upload import CudaGLInterop, choose_upload

    model, preset = load_preset_model(preset, opts.model, device=opts.device, allow_pickle=opts.allow_pickle)
    config = preset.config()
    if opts.size:
        config.width, config.height = opts.size
    pipe = StreamPipeline(model, config, backend=opts.backend)
    pipe.prepare()
    make_interop = (lambda: CudaGLInterop(window.ctx, model.device)) if window is not None else None
    upload, interop = choose_upload(model.device, window is None, make_interop)
    log.info("frame upload: %s", upload)
    if window is not None:
        window.display.interop = interop
    return pipe, preset, upload


def _audio_source(opts: LiveOptions) -> SupervisedSource:
    from live.audio.filesource import FileSource
    from live.audio.input import AudioInput

    if opts.audio_file is not None:
        return FileSource(opts.audio_file, loop=True, play=opts.play, gain_db=opts.gain_db)
    return AudioInput(device=opts.audio_device, channels=opts.channel_list() or 1, gain_db=opts.gain_db,
                      gate_db=opts.gate_db)


def _start_features(opts: LiveOptions, take, preset, tempo, parts: _Parts):
    """What the mappings read: a line-in's or a file's features, a replayed take's
    recorded ones, or none (silence), with the beat features added."""
    from live.control.tempo import TempoFeatures

    source = _feature_source(opts, take)
    if source == "take":
        from live.control.takes import TakeFeatures

        features = TakeFeatures(take)
    elif source == "none":
        features = None
    else:
        from live.audio.features import FeatureThread

        parts.source = _audio_source(opts)
        parts.source.start()
        parts.feature_thread = FeatureThread(parts.source, hop=0.01, taper=preset.taper)  # the starting preset's window
        parts.feature_thread.start()
        features = parts.feature_thread
    return TempoFeatures(features, tempo)  # beat_phase, lfo_sine … map like audio features


def _make_show(opts: LiveOptions, pipe, state, features, parts: _Parts, slots: list[str], upload, output_options,
               osc: Optional[RemoteControl]):
    """The Show with its outputs, connected to OSC, recording if asked."""
    from live.show.show import Show

    h, w = pipe.size
    parts.outputs = output_options.build((w, h), audio=parts.source)
    show = Show(pipe, state, features=features, model_name=pipe.model.name, slots=slots, upload=upload,
                take_root=opts.record.parent if opts.record else None,
                # a file's audio always goes into takes (render --take has it); a line-in's on request
                audio_source=parts.source if opts.record_audio or opts.audio_file is not None else None)
    show.outputs = parts.outputs
    parts.outputs.error = lambda address, reason: show.error(address, reason)  # answered like any command
    if osc is not None:
        osc.connect(show, features=parts.feature_thread is not None)
    if opts.record is not None:
        show.start_recording(opts.record)
    return show


def _play(opts: LiveOptions, show, parts: _Parts, stop: threading.Event, tempo, take) -> None:
    """Until stopped: the window's loop on this (the main) thread, or, headless, a timer
    that takes frames as a display would."""
    should_stop = _end_condition(opts, parts.player, take)
    if parts.window is None:
        while not stop.is_set() and not should_stop():
            show.mailbox.take()  # frames are shown nowhere, but taken as a display would
            time.sleep(0.005)
        return

    def watch() -> None:  # --duration and the end of a replay, while the window runs
        while not stop.is_set():
            if should_stop():
                stop.set()
            time.sleep(0.05)

    threading.Thread(target=watch, name="netbend-watch", daemon=True).start()
    parts.window.run(show.mailbox, stop, _key_actions(show, stop, tempo),
                     lambda: show.hud_lines() + parts.outputs.hud_lines())


def _end_condition(opts: LiveOptions, player, take) -> Callable[[], bool]:
    """True once --duration has passed, or without one, half a second after a replayed
    take's last command (its last frames reach the screen)."""
    started = time.monotonic()

    def should_stop() -> bool:
        elapsed = time.monotonic() - started
        if opts.duration is not None:
            return elapsed >= opts.duration
        return player is not None and player.done and elapsed >= take.duration + 0.5

    return should_stop


def _key_actions(show, stop: threading.Event, tempo) -> Callable[[str], None]:
    """The window's keys, as commands from the source "key" (tap tempo goes to the clock)."""
    from live.control.state import Command

    def submit(address: str, *args) -> None:
        show.submit(Command(address, args, time.monotonic(), "key"))

    def on_key(action: str) -> None:
        if action == "quit":
            stop.set()
        elif action == "freeze":
            submit("/netbend/freeze", int(not show.state.frozen))
        elif action.startswith("preset:"):
            submit("/netbend/preset/load", int(action[7:]))
        elif action == "save":
            submit("/netbend/preset/save", time.strftime("live-%Y%m%d-%H%M%S"))
        elif action == "tap":
            tempo.tap()
        elif action == "record":
            submit("/netbend/record/stop" if show.state.recording else "/netbend/record/start")

    return on_key


def _numbers(show, parts: _Parts, model, signals: StopSignals) -> dict:
    """The show's stats, with the display's, the audio input's and how it ended."""
    from live.audio.input import AudioInput

    stats = show.stats()
    stats["outputs"] = parts.outputs.close()  # recordings finish their file here
    window = parts.window
    if window is not None and window.latencies:
        import numpy as np

        lat = np.asarray(window.latencies)
        stats["photon_latency_ms_p50"] = round(1000 * float(np.percentile(lat, 50)), 1)
        stats["photon_latency_ms_p95"] = round(1000 * float(np.percentile(lat, 95)), 1)
        stats["display_fps"] = round(window.fps, 2)
    if isinstance(parts.source, AudioInput):
        stats["audio_overruns"] = int(parts.source.overruns)
    stats["device"] = str(model.device)
    stats["backend"] = show.pipe.backend  # as resolved: --backend auto is trace on a CPU
    if signals.caught:
        stats["stopped_by"] = signals.caught
    stats["model"] = model.name
    return stats
