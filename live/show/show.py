"""The live show's render loop: commands in, frames out, one frame at a time.

Each frame, on the render thread:
  1. apply every queued command (OSC, keys, presets, a replayed take) to the control state;
  2. take the newest audio feature frame and evaluate the mappings into bend params;
  3. run one ``StreamPipeline.step`` and publish the frame to a newest-wins mailbox,
     stamped with the capture time of the audio window it came from.

Nothing here stops the show: a bad command is answered and dropped; an exception in a
frame is counted, logged once, and the loop recovers from the last good frame
(live/show/recovery.py). Files are never touched on the render thread: a preset load or
save runs on the DiskWorker (live/show/disk.py), and the commands queued behind it wait
for it (frames go on), so they still apply in the order they were sent. The show's other
jobs have their own homes: the preset fade (crossfade.py), the numbers and HUD text
(stats.py), the take being recorded (recording.py), preset reading and saving (recall.py).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from engine.features import FEATURE_NAMES, FeatureFrame
from engine.mappings import MappedBends
from live.control.arguments import CommandError
from live.control.limits import ModelLimits
from live.control.state import PREFIX, Command, ShowState, apply
from live.outputs.commands import is_output_address
from live.show.crossfade import PresetFade
from live.show.disk import DiskWorker
from live.show.mailbox import Frame, Mailbox
from live.show.recall import PresetRecall
from live.show.recording import RECORD_ADDRESSES, Recording
from live.show.recovery import Recovery
from live.show.stats import ShowStats

log = logging.getLogger("netbend.show")

QUEUE_SIZE = 1024  # commands between two frames; a flood beyond this is dropped and counted
FILE_ADDRESSES = ("/netbend/preset/load", "/netbend/preset/save")  # commands with file work


class SilentFeatures:
    """The feature source when there is no audio: every feature 0, stamped now."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock

    def latest(self) -> FeatureFrame:
        return silence(self._clock())


def silence(now: float) -> FeatureFrame:
    return FeatureFrame(now, {n: 0.0 for n in FEATURE_NAMES})


class Show:
    def __init__(self, pipe, state: ShowState, *, features=None, mailbox: Optional[Mailbox] = None,
                 echo: Callable[[Command], None] = lambda c: None,
                 error: Callable[[str, str], None] = lambda address, reason: None,
                 model_name: str = "sd-turbo", slots: Sequence[str] = (), take_root: Optional[Path] = None,
                 clock: Callable[[], float] = time.monotonic, audio_source=None, upload=None,
                 disk: Optional[DiskWorker] = None):
        from live.display.upload import FramePacker, UploadChoice

        self.pipe = pipe
        # how frames reach the window (live.display.upload.choose_upload); a plain host copy by default
        self.upload: UploadChoice = upload or UploadChoice("host", "the default host copy")
        self.packer = FramePacker(self.upload.path)
        self.features = features or SilentFeatures(clock)
        self.mailbox: Mailbox[Frame] = mailbox or Mailbox()
        self.echo, self.error = echo, error
        self.model_name = model_name
        self.clock = clock
        self.queue: "queue.Queue[Command]" = queue.Queue(maxsize=QUEUE_SIZE)
        self.dropped = 0
        self.layers = list(pipe.bender.names)
        self.limits = ModelLimits.from_pipe(pipe)  # what a command may ask of this model (checked in apply)
        self.disk = disk or DiskWorker()
        self.presets = PresetRecall(slots, self.limits, model_name)
        h, w = pipe.size
        self.recording = Recording(clock=clock, model_name=model_name, size=(w, h), take_root=take_root,
                                   audio_source=audio_source, name_slot=self.presets.name_of)
        self.numbers = ShowStats(log)
        self.fade = PresetFade()
        self.recovery = Recovery()
        self._state = state
        self._waiting: Optional[Command] = None  # the command whose file work is under way
        self.driver = MappedBends()  # the feature -> param driver (engine.mappings)
        self._last_bends: list = []
        self._mapped_params: dict[int, float] = {}
        self._last_frame_time: Optional[float] = None
        self._apply_pipeline_settings(None, state)
        self.on_applied: list[Callable[[Command], None]] = []
        self.on_frame: Optional[Callable[[Frame], None]] = None  # after each published frame
        self.outputs = None  # a live.outputs.fanout.Outputs: every frame also goes to NDI, a recording …

    # -- control ---------------------------------------------------------------------------

    @property
    def state(self) -> ShowState:
        """The newest control state (an immutable snapshot; safe to read from any thread)."""
        return self._state

    @property
    def last_bends(self) -> list:
        """The bends the newest frame was rendered with (mappings and a fade applied)."""
        return self._last_bends

    def current_features(self, now: Optional[float] = None) -> FeatureFrame:
        """The newest feature frame (silence until the first one); safe from any thread."""
        return self.features.latest() or silence(self.clock() if now is None else now)

    @property
    def mapped_params(self) -> dict[int, float]:
        """The param each mapped slot's mapping gave the newest frame, by 1-based slot number
        (what /netbend/bend/<n>/value reports; a preset fade or an empty slot shifts nothing)."""
        return self._mapped_params

    @property
    def slots(self) -> list[str]:
        return self.presets.slots

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
        return self.recovery.last_good

    def _drain(self) -> None:
        self._sync_outputs()
        while True:
            for command, result, error in self.disk.results():
                self._file_work_done(command, result, error)
            if self._waiting is not None:
                return  # the commands behind a preset load or save wait for its file
            try:
                command = self.queue.get_nowait()
            except queue.Empty:
                return
            self._apply(command)

    def _apply(self, command: Command) -> None:
        before = self._state
        try:
            after = apply(before, command, self.limits)
            if command.address in FILE_ADDRESSES and command.payload is None:
                self._start_file_work(command, before)
                return
            self._act(command, before, after)
        except Exception as e:  # noqa: BLE001 - a refused command never stops the render thread
            self._refuse(command, e)
            return
        self._applied(command)

    def _sync_outputs(self) -> None:
        """Bring the state's outputs up to date with what the outputs are now: a recording
        opens and finishes on threads of its own, so it appears and goes between commands.
        Controllers are told at once, like any other change."""
        if self.outputs is None:
            return
        now = self.outputs.states()
        if now != self._state.outputs:
            self._state = replace(self._state, outputs=now)
            self.echo(Command(f"{PREFIX}/output", source="show"))

    def _applied(self, command: Command) -> None:
        self.recording.command(command)
        self.echo(command)
        for callback in self.on_applied:
            callback(command)

    def _refuse(self, command: Command, e: BaseException) -> None:
        reason = str(e)
        shown = reason if reason.startswith(command.address) else f"{command.address}: {reason}"
        self.numbers.refused(f"{command.address}:{e}", f"{command.address} {list(command.args)}: {e}", shown)
        self.error(command.address, reason)

    def _start_file_work(self, command: Command, state: ShowState) -> None:
        self._waiting = command
        if command.address == "/netbend/preset/load":
            self.disk.run(command, lambda: self.presets.read(command.args[0]))
        else:
            steps = self.pipe.config.steps
            self.disk.run(command, lambda: self.presets.save(str(command.args[0]), state, steps))

    def _file_work_done(self, command: Command, result, error: Optional[BaseException]) -> None:
        self._waiting = None
        if error is not None:
            self._refuse(command, error)
        elif command.address == "/netbend/preset/load":
            self._apply(replace(command, payload=result))  # the preset, read and checked: fade to it
        else:
            self._applied(command)

    def _act(self, command: Command, before: ShowState, after: ShowState) -> None:
        """Carry out a command's side effects, then publish the new state."""
        a = command.address
        if a == "/netbend/preset/load":
            after = self._recalled(after)
        elif a in RECORD_ADDRESSES:
            after = self._record(command, before, after)
        elif is_output_address(a):
            if self.outputs is None:
                raise CommandError("this show has no outputs (start it with --ndi, --record-video …)")
            self.outputs.act(command)
            after = replace(after, outputs=self.outputs.states())
        self._apply_pipeline_settings(before, after)
        self._state = after

    def _record(self, command: Command, before: ShowState, after: ShowState) -> ShowState:
        if command.source == "replay":  # an older take's record/start: replaying it must not start takes
            return replace(after, recording=before.recording)
        if command.address.endswith("start"):
            self.recording.start(before)
        else:
            self.recording.stop(wait=False)  # the render thread never waits for the disk
        return after

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
        if before is not None and after.gain_db != before.gain_db:
            # /netbend/gain: the audio source's reader applies it from its next read on
            source = getattr(self.features, "source", None)
            if source is not None and hasattr(source, "gain_db"):
                source.gain_db = after.gain_db

    def _recalled(self, new: ShowState) -> ShowState:
        """A preset state read and checked (the command's payload): fade to it."""
        self.fade.start(self._last_bends, self.clock())
        return replace(new, recording=self._state.recording)

    # -- recording ---------------------------------------------------------------------------

    @property
    def recorder(self):
        """The take's TakeRecorder (None before the first take)."""
        return self.recording.recorder

    def start_recording(self, folder: Optional[Path] = None) -> Path:
        folder = self.recording.start(self._state, folder)
        self._state = replace(self._state, recording=True)
        return folder

    def stop_recording(self, wait: bool = True) -> None:
        self.recording.stop(wait=wait)
        self._state = replace(self._state, recording=False)

    # -- one frame ---------------------------------------------------------------------------

    def _bends(self, state: ShowState, features, now: float, dt: float) -> tuple[list, dict[int, float]]:
        """This frame's chain (mapped params from the features, then the preset fade), and
        each mapped slot's param by 1-based slot number, before the fade."""
        keys = [k for k, slot in enumerate(state.slots) if slot is not None]  # a slot keeps its smoothing
        self.driver.set(state.bends, state.mappings, keys)
        driven = self.driver.update(features, dt)
        mapped = {k + 1: float(b.param) for k, b, m in zip(keys, driven, state.mappings) if m is not None}
        return self.fade.apply(driven, now), mapped

    def frame(self) -> Optional[Frame]:
        """One frame of the show. Returns the published Frame, or None (frozen or failed)."""
        now = self.clock()
        dt = 1.0 / 30 if self._last_frame_time is None else min(0.5, now - self._last_frame_time)
        self._last_frame_time = now
        self._drain()
        state = self._state
        features = self.current_features(now)
        self.recording.frame(self.features)
        if state.frozen:
            return None
        try:
            bends, mapped = self._bends(state, features, now, dt)
            self.pipe.bends = bends
            image = self.pipe.step()
            self.recovery.check(image)
        except Exception as e:  # noqa: BLE001 - nothing may stop the show
            self.numbers.frame_failed(f"{type(e).__name__}:{e}", f"frame {self.index}: {type(e).__name__}: {e}")
            self.recovery.failed(self.pipe, e)
            return None
        self._last_bends, self._mapped_params = bends, mapped
        self.recovery.good(image)
        return self._publish(image, features)

    def _publish(self, image: torch.Tensor, features: FeatureFrame) -> Frame:
        packed = self.packer.pack(image)  # the device -> host copy (or none, for cuda-gl) counts in the latency
        ready = self.clock()
        out = Frame(packed, self.index, features.time, ready)
        self.mailbox.put(out)
        if self.outputs is not None:
            self.outputs.put(out)  # never waits: each output has its own hand-off and thread
        self.numbers.frame_done(ready, features.time)
        self._tell("on_frame", self.on_frame, out)
        return out

    def _tell(self, name: str, callback, value) -> None:
        if callback is None:
            return
        try:
            callback(value)
        except Exception as e:  # noqa: BLE001 - a feedback hiccup must not stop the show
            self.numbers.frame_failed(f"{name}:{e}", f"{name} after frame {self.index}: {type(e).__name__}: {e}")

    def run(self, stop: threading.Event) -> None:
        """The render thread's loop, until ``stop`` is set."""
        while not stop.is_set():
            if self.frame() is None:
                time.sleep(0.005)  # frozen or failed: don't spin
        self.close()

    def close(self) -> None:
        """Finish the file work and the take (waits for the disk: call it when the show ends)."""
        self.disk.close()
        for command, result, error in self.disk.results():
            self._file_work_done(command, result, error)
        self.recording.frame(self.features)  # the features and audio since the last frame, too
        self.recording.wait()

    # -- numbers -----------------------------------------------------------------------------

    @property
    def index(self) -> int:
        """Frames published so far (the next frame's index)."""
        return self.numbers.frames

    @property
    def fps(self) -> float:
        return self.numbers.fps

    @property
    def latencies(self):
        return self.numbers.latencies

    def stats(self) -> dict:
        return {**self.numbers.as_dict(), "commands_dropped": self.dropped, "display_dropped": self.mailbox.dropped,
                "upload": str(self.upload)}

    def hud_lines(self) -> list[str]:
        return self.numbers.hud_lines(self._state, self.features.latest(), self._last_bends, self.upload.path)
