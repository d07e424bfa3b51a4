"""Presets from the show's side: slot numbers, reading a preset into a show state, saving one.

``read`` and ``save`` touch files, so the show runs them on its DiskWorker (live/show/disk.py),
never on the render thread; they are plain functions of their arguments, safe on any thread.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from live.control.arguments import CommandError
from live.control.state import ShowState, state_from_preset

log = logging.getLogger("netbend.show")

__all__ = ["PresetRecall"]


class PresetRecall:
    """slots: the presets on keys 1-9 and ``/netbend/preset/load N``; limits: the model's
    ModelLimits, which a recalled preset's bends must fit; model_name: written into saves."""

    def __init__(self, slots: Sequence[str], limits, model_name: str):
        self.slots, self.limits, self.model_name = list(slots), limits, model_name

    def name_of(self, which) -> str:
        """A slot number (1-based) or a name -> the preset name; CommandError for an empty slot."""
        if isinstance(which, str):
            return which
        n = int(which)
        if not 1 <= n <= len(self.slots):
            raise CommandError(f"preset slot {n} is empty; slots 1..{len(self.slots)}: {', '.join(self.slots)}")
        return self.slots[n - 1]

    def read(self, which) -> ShowState:
        """The show state of a preset (file work: the disk thread calls this)."""
        from live.control.presets import load_preset

        preset = load_preset(self.name_of(which))
        if preset.pipeline != "stream":
            raise CommandError(f"preset {preset.name!r} is a {preset.pipeline} preset; the live show runs stream presets")
        return state_from_preset(preset, limits=self.limits)

    def save(self, name: str, state: ShowState, steps: int) -> Path:
        """Write the show's state as a user preset (file work: the disk thread calls this)."""
        from live.control.preset_files import user_preset_path
        from live.control.presets import Preset, save_preset

        settings = {"prompt": state.prompt, "strength": state.strength, "seed": state.seed, "steps": steps}
        preset = Preset(name=name, pipeline="stream", description="saved from the live show", model=self.model_name,
                        settings=settings, bends=state.bends, mappings=state.mappings)
        path = save_preset(preset, user_preset_path(name))
        log.info("saved preset %s to %s", name, path)
        return path
