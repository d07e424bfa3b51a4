"""The live show's render loop: commands in, frames out, one frame at a time.

Each frame, on the render thread:
  1. apply every queued command (OSC, keys, presets, a replayed take) to the control state;
  2. take the newest audio feature frame and evaluate the mappings into bend params;
  3. run one ``StreamPipeline.step`` and publish the frame to a newest-wins mailbox,
     stamped with the capture time of the audio window it came from.

Nothing here stops the show: a bad command is answered and dropped; an exception in a
frame (out of memory, a NaN/inf frame from an extreme bend) is logged once, the last good
frame stays on screen, and the feedback loop restarts from it.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from engine.bends import Bend
from engine.features import FEATURE_NAMES
from engine.mappings import MappingState
from live.control.state import Command, CommandError, ShowState, apply, state_from_preset
from live.show.mailbox import Frame, Mailbox

log = logging.getLogger("netbend.show")

QUEUE_SIZE = 1024  # commands between two frames; a flood beyond this is dropped and counted
PRESET_FADE_S = 0.5  # bend params crossfade this long when a preset is recalled


class SilentFeatures:
    """The feature source when there is no audio: every feature 0, stamped now."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock

    def latest(self):
        from engine.features import FeatureFrame

        return FeatureFrame(self._clock(), {n: 0.0 for n in FEATURE_NAMES})


class _OnceLog:
    """Log each distinct problem once (a patcher can send the same mistake 100 times a second)."""

    def __init__(self, logger: logging.Logger):
        self._log, self._seen = logger, set()
        self.count = 0

    def __call__(self, key: str, message: str) -> None:
        self.count += 1
        if key not in self._seen:
            self._seen.add(key)
            self._log.error("%s", message)


def _percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if len(values) else float("nan")


class Show:
    def __init__(self, pipe, state: ShowState, *, features=None, mailbox: Optional[Mailbox] = None,
                 echo: Callable[[Command], None] = lambda c: None,
                 error: Callable[[str, str], None] = lambda address, reason: None,
                 model_name: str = "sd-turbo", slots: Sequence[str] = (), take_root: Optional[Path] = None,
                 clock: Callable[[], float] = time.monotonic, audio_source=None, upload=None):
        from live.display.upload import FramePacker, UploadChoice

        self.pipe = pipe
        # how frames reach the window (live.display.upload.choose_upload); a plain host copy by default
        self.upload: UploadChoice = upload or UploadChoice("host", "the default host copy")
        self.packer = FramePacker(self.upload.path)
        self.features = features or SilentFeatures(clock)
        self.mailbox: Mailbox[Frame] = mailbox or Mailbox()
        self.echo, self.error = echo, error
        self.model_name, self.slots, self.take_root = model_name, list(slots), take_root
        self.clock = clock
        self.queue: "queue.Queue[Command]" = queue.Queue(maxsize=QUEUE_SIZE)
        self.dropped = 0
        self.layers = list(pipe.bender.names)
        self._state = state
        self._mapping_states: dict[int, tuple] = {}
        self._fade: Optional[tuple[list[Bend], float]] = None  # (bends faded from, start time)
        self._last_bends: list[Bend] = []
        self._last_good: Optional[torch.Tensor] = None
        self._problem = _OnceLog(log)
        self.recorder = None
        self.audio_source = audio_source  # with read_since(): its input audio goes into takes
        self._audio_position = 0
        self.index = 0
        self.frame_times: deque = deque(maxlen=600)
        self.latencies: deque = deque(maxlen=6000)  # capture -> frame ready, seconds
        self._last_frame_time: Optional[float] = None
        self._apply_pipeline_settings(None, state)
        self.on_applied: list[Callable[[Command], None]] = []
        self.on_frame: Optional[Callable[[Frame], None]] = None  # e.g. send features out over OSC
        self.outputs = None  # a live.outputs.fanout.Outputs: every frame also goes to NDI, a recording …

    # -- control ---------------------------------------------------------------------------

    @property
    def state(self) -> ShowState:
        """The newest control state (an immutable snapshot; safe to read from any thread)."""
        return self._state

    def submit(self, command: Command) -> bool:
        """Queue a command for the next frame boundary (any thread). False if the queue is full."""
        try:
            self.queue.put_nowait(command)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def apply_pending(self) -> None:
        """Apply every queued command now (the render loop does this at each frame boundary)."""
        self._drain()

    @property
    def last_good(self) -> Optional[torch.Tensor]:
        """The newest frame that came out finite, (1, 3, H, W) on the model's device."""
        return self._last_good

    def _drain(self) -> None:
        while True:
            try:
                command = self.queue.get_nowait()
            except queue.Empty:
                return
            self._apply(command)

    def _apply(self, command: Command) -> None:
        before = self._state
        try:
            after = apply(before, command, self.layers)
            self._act(command, before, after)
        except (CommandError, ValueError, OSError) as e:
            self._problem(f"{command.address}:{e}", f"{command.address} {list(command.args)}: {e}")
            self.error(command.address, str(e))
            return
        if self.recorder is not None and not self.recorder.closed:
            self.recorder.command(command)
        self.echo(command)
        for callback in self.on_applied:
            callback(command)

    def _act(self, command: Command, before: ShowState, after: ShowState) -> None:
        """Carry out a command's side effects, then publish the new state."""
        a = command.address
        if a == "/netbend/preset/load":
            after = self._recall(command.args[0])
        elif a == "/netbend/preset/save":
            self._save(str(command.args[0]), before)
        elif a == "/netbend/record/start":
            self.start_recording()
        elif a == "/netbend/record/stop":
            self.stop_recording()
        elif a.startswith(("/netbend/output/", "/netbend/record/video/")):
            if self.outputs is None:
                raise CommandError("this show has no outputs (start it with --ndi, --record-video …)")
            self.outputs.act(command)
        self._apply_pipeline_settings(before, after)
        self._state = after

    def _apply_pipeline_settings(self, before: Optional[ShowState], after: ShowState) -> None:
        if before is None or after.prompt != before.prompt:
            if before is not None or after.prompt != self.pipe.config.prompt:
                self.pipe.set_prompt(after.prompt)
        if before is None or after.strength != before.strength:
            if after.strength != self.pipe.config.strength:
                self.pipe.set_strength(after.strength)
        if before is None or after.seed != before.seed:
            if after.seed != self.pipe.config.seed:
                self.pipe.set_seed(after.seed)

    def _recall(self, which) -> ShowState:
        from live.control.presets import load_preset

        name = which
        if not isinstance(which, str):
            n = int(which)
            if not 1 <= n <= len(self.slots):
                raise CommandError(f"preset slot {n} is empty; slots 1..{len(self.slots)}: {', '.join(self.slots)}")
            name = self.slots[n - 1]
        preset = load_preset(name)
        if preset.pipeline != "stream":
            raise CommandError(f"preset {preset.name!r} is a {preset.pipeline} preset; the live show runs stream presets")
        new = state_from_preset(preset)
        for slot in new.slots:
            if slot is not None:
                for layer in [slot.bend.layer]:
                    if layer != "latent":
                        self.pipe.bender.resolve_layer(layer)  # unknown layer: refuse before switching
        self._fade = (list(self._last_bends), self.clock())
        return replace(new, recording=self._state.recording)

    def _save(self, name: str, state: ShowState) -> None:
        from live.control.preset_files import user_preset_path
        from live.control.presets import Preset, save_preset

        config = self.pipe.config
        settings = {"prompt": state.prompt, "strength": state.strength, "seed": state.seed, "steps": config.steps}
        preset = Preset(name=name, pipeline="stream", description="saved from the live show", model=self.model_name,
                        settings=settings, bends=state.bends, mappings=state.mappings)
        path = save_preset(preset, user_preset_path(name))
        log.info("saved preset %s to %s", name, path)

    # -- recording ---------------------------------------------------------------------------

    def start_recording(self, folder: Optional[Path] = None) -> Path:
        from live.control.takes import TakeRecorder

        if self.recorder is not None and not self.recorder.closed:
            return self.recorder.folder
        root = self.take_root or Path("takes")
        folder = Path(folder) if folder else root / time.strftime("take-%Y%m%d-%H%M%S")
        h, w = self.pipe.size
        records_audio = hasattr(self.audio_source, "read_since")
        self.recorder = TakeRecorder(folder, start_state=self._state, feature_names=FEATURE_NAMES, clock=self.clock,
                                     model=self.model_name, size=(w, h),
                                     audio_rate=int(self.audio_source.sample_rate) if records_audio else None)
        if records_audio:
            self._audio_position = self.audio_source.frames_received
        self._recorded_until = self.clock()
        self._state = replace(self._state, recording=True)
        log.info("recording take to %s", folder)
        return folder

    def stop_recording(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
        self._state = replace(self._state, recording=False)

    # -- one frame ---------------------------------------------------------------------------

    def _bends(self, state: ShowState, features, now: float, dt: float) -> list[Bend]:
        bends = []
        for k, slot in enumerate(state.slots):
            if slot is None:
                continue
            bend = slot.bend
            if slot.mapping is not None:
                held = self._mapping_states.get(k)
                if held is None or held[0] != slot.mapping:
                    held = (slot.mapping, MappingState(slot.mapping))
                    self._mapping_states[k] = held
                value = float(features[slot.mapping.feature])
                bend = bend.with_param(held[1].update(value, dt))
            bends.append(bend)
        if self._fade is not None:
            old, started = self._fade
            t = (now - started) / PRESET_FADE_S
            if t >= 1.0:
                self._fade = None
            else:
                bends = _crossfade(old, bends, t)
        return bends

    def frame(self) -> Optional[Frame]:
        """One frame of the show. Returns the published Frame, or None (frozen or failed)."""
        now = self.clock()
        dt = 1.0 / 30 if self._last_frame_time is None else min(0.5, now - self._last_frame_time)
        self._last_frame_time = now
        self._drain()
        state = self._state
        features = self.features.latest()
        if self.recorder is not None and not self.recorder.closed and hasattr(self.features, "frames_since"):
            new = self.features.frames_since(self._recorded_until)
            if new:
                self.recorder.features(new)
                self._recorded_until = new[-1].time
        if self.recorder is not None and not self.recorder.closed and self.recorder.records_audio:
            samples, self._audio_position = self.audio_source.read_since(self._audio_position)
            self.recorder.audio(samples)
        if state.frozen:
            return None
        try:
            bends = self._bends(state, features, now, dt)
            self.pipe.bends = bends
            image = self.pipe.step()
            if not bool(torch.isfinite(image).all()):  # one sync; the download below syncs anyway
                raise FloatingPointError("the frame came out NaN/inf (an extreme bend?); showing the last good frame")
        except Exception as e:  # noqa: BLE001 - nothing may stop the show
            self._problem(f"{type(e).__name__}:{e}", f"frame {self.index}: {type(e).__name__}: {e}")
            if isinstance(e, torch.cuda.OutOfMemoryError):
                torch.cuda.empty_cache()
            if self._last_good is not None:
                self.pipe.resume(self._last_good, self.pipe.frame_index)
            return None
        self._last_bends = bends
        self._last_good = image
        packed = self.packer.pack(image)  # the device -> host copy (or none, for cuda-gl) counts in the latency
        ready = self.clock()
        out = Frame(packed, self.index, features.time, ready)
        self.mailbox.put(out)
        if self.outputs is not None:
            self.outputs.put(out)  # never waits: each output has its own hand-off and thread
        self.index += 1
        self.frame_times.append(ready)
        self.latencies.append(ready - features.time)
        if self.on_frame is not None:
            try:
                self.on_frame(out)
            except Exception as e:  # noqa: BLE001 - a feedback hiccup must not stop the show
                self._problem(f"on_frame:{e}", f"after frame {out.index}: {type(e).__name__}: {e}")
        return out

    def run(self, stop: threading.Event) -> None:
        """The render thread's loop, until ``stop`` is set."""
        while not stop.is_set():
            if self.frame() is None:
                time.sleep(0.005)  # frozen or failed: don't spin
        if self.recorder is not None:
            self.recorder.close()

    # -- numbers -----------------------------------------------------------------------------

    @property
    def fps(self) -> float:
        t = self.frame_times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def stats(self) -> dict:
        lat = list(self.latencies)
        return {"frames": self.index, "fps": round(self.fps, 2),
                "latency_ms_p50": round(1000 * _percentile(lat, 50), 1),
                "latency_ms_p95": round(1000 * _percentile(lat, 95), 1),
                "frame_errors": self._problem.count, "commands_dropped": self.dropped,
                "display_dropped": self.mailbox.dropped, "upload": str(self.upload)}

    def hud_lines(self) -> list[str]:
        features = self.features.latest()
        meters = "  ".join(f"{n} {'#' * int(min(1.0, features[n] * 4) * 10):10s}" for n in ("rms", "bass", "mid", "high"))
        lines = [f"{self.fps:5.1f} fps   audio->frame p50 {1000 * _percentile(list(self.latencies)[-120:], 50):.0f} ms"
                 + ("   REC" if self._state.recording else "") + ("   FROZEN" if self._state.frozen else ""),
                 meters, f"upload: {self.upload.path}"]
        lines += [f"{i + 1}. {b}" for i, b in enumerate(self._last_bends)]
        return lines


def _crossfade(old: list[Bend], new: list[Bend], t: float) -> list[Bend]:
    """Bend params part-way from the old preset's to the new one's. A bend present in both
    (same operator and layer) glides; one only in the old fades to its neutral param during
    the first half; one only in the new fades in from neutral during the second half."""
    from engine.operators import OPERATORS

    out = []
    matched = set()
    for b in new:
        partner = next((o for o in old if o.operator == b.operator and o.layer == b.layer), None)
        neutral = OPERATORS[b.operator].neutral
        if partner is not None:
            matched.add(id(partner))
            out.append(b.with_param(partner.param + (b.param - partner.param) * t))
        elif neutral is not None:
            u = max(0.0, 2 * t - 1)
            out.append(b.with_param(neutral + (b.param - neutral) * u))
        elif t >= 0.5:
            out.append(b)
    for o in old:
        if id(o) in matched:
            continue
        neutral = OPERATORS[o.operator].neutral
        if neutral is not None and t < 0.5:
            out.insert(0, o.with_param(o.param + (neutral - o.param) * 2 * t))
        elif neutral is None and t < 0.5:
            out.insert(0, o)
    return out
