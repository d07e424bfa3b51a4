"""Rehearsal recording from the show's side: ``Recording``.

The show calls ``command`` for every command it applied and ``frame`` once a frame; this
feeds the take's ``TakeRecorder`` (live.control.takes), which writes on its own thread.

A take holds what the show did, replayable anywhere:
  * a preset recalled by slot number (a key, ``/netbend/preset/load 3``) is written by
    name, because another machine, or ``netbend render --take``, has other slots or none;
  * ``/netbend/record/start`` and ``/stop`` are about the take, not the show, so they are
    not written (and ``Show`` ignores them in a replay of an older take that has them).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Optional

from engine.features import FEATURE_NAMES
from live.control.state import Command, ShowState

log = logging.getLogger("netbend.show")

__all__ = ["RECORD_ADDRESSES", "Recording"]

RECORD_ADDRESSES = ("/netbend/record/start", "/netbend/record/stop")


class Recording:
    """The take being recorded, if any, and everything that goes into it.

    audio_source: with ``read_since`` and ``frames_received`` (AudioInput, FileSource),
        its audio goes into the take too.
    name_slot: slot number -> preset name (raises for an empty slot).
    """

    def __init__(self, *, clock: Callable[[], float], model_name: str, size: tuple[int, int],
                 take_root: Optional[Path] = None, audio_source=None,
                 name_slot: Callable[[int], str] = str):
        self.clock, self.model_name, self.size = clock, model_name, size
        self.take_root, self.audio_source, self.name_slot = take_root, audio_source, name_slot
        self.recorder = None
        self.audio_position = 0  # the input sample the take's audio has reached
        self._features_until = 0.0

    @property
    def active(self) -> bool:
        return self.recorder is not None and not self.recorder.closed

    def start(self, state: ShowState, folder: Optional[Path] = None) -> Path:
        from live.control.takes import TakeRecorder

        if self.active:
            return self.recorder.folder
        root = self.take_root or Path("takes")
        folder = Path(folder) if folder else root / time.strftime("take-%Y%m%d-%H%M%S")
        records_audio = hasattr(self.audio_source, "read_since")
        self.recorder = TakeRecorder(folder, start_state=state, feature_names=FEATURE_NAMES, clock=self.clock,
                                     model=self.model_name, size=self.size,
                                     audio_rate=int(self.audio_source.sample_rate) if records_audio else None)
        if records_audio:
            self.audio_position = self.audio_source.frames_received
        self._features_until = self.clock()
        log.info("recording take to %s", folder)
        return folder

    def stop(self, wait: bool = True) -> None:
        """Close the take; ``wait``: until it is on disk (the render thread does not wait)."""
        if self.recorder is not None:
            self.recorder.close(wait=wait)

    def command(self, command: Command) -> None:
        if not self.active or command.address in RECORD_ADDRESSES:
            return
        if command.address == "/netbend/preset/load" and not isinstance(command.args[0], str):
            command = Command(command.address, (self.name_slot(int(command.args[0])),) + tuple(command.args[1:]),
                              command.time, command.source)
        self.recorder.command(command)

    def frame(self, features) -> None:
        """The feature frames and input audio since the last call (``features``: the show's source)."""
        if not self.active:
            return
        if hasattr(features, "frames_since"):
            new = features.frames_since(self._features_until)
            if new:
                self.recorder.features(new)
                self._features_until = new[-1].time
        if self.recorder.records_audio:
            samples, self.audio_position = self.audio_source.read_since(self.audio_position)
            self.recorder.audio(samples)

    def wait(self) -> None:
        if self.recorder is not None:
            self.recorder.close(wait=True)

    def __repr__(self) -> str:
        return f"Recording({self.recorder.folder if self.active else 'off'})"

