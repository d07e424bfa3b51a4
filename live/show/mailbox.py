"""The one-slot mailbox between the render thread and the display: newest wins.

A slow display never builds a backlog: ``put`` replaces whatever was waiting, and
``take`` returns the newest item once (or None). A lock guards one reference swap; no
thread ever waits on another.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Generic, Optional, TypeVar

import numpy as np

T = TypeVar("T")


class Mailbox(Generic[T]):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._item: Optional[T] = None
        self.dropped = 0  # items replaced before anyone took them

    def put(self, item: T) -> None:
        with self._lock:
            if self._item is not None:
                self.dropped += 1
            self._item = item

    def take(self) -> Optional[T]:
        """The newest item, once; None if nothing new arrived since the last take."""
        with self._lock:
            item, self._item = self._item, None
        return item


@dataclass(frozen=True)
class Frame:
    """One generated frame, as the render thread puts it in the Mailbox."""

    image: np.ndarray  # (H, W, 3) uint8 RGB, top row first; or a live.display.upload.DeviceImage (cuda-gl)
    index: int
    capture_time: float  # show-clock (time.monotonic) time of the audio window it reacted to
    rendered_time: float  # show-clock time the render thread finished it

    def __post_init__(self) -> None:
        shape, dtype = getattr(self.image, "shape", None), getattr(self.image, "dtype", None)
        if shape is None or len(shape) != 3 or shape[2] != 3 or dtype != np.uint8 or 0 in shape:
            raise ValueError(f"Frame.image must be a non-empty (H, W, 3) uint8 array, got {shape} {dtype}")
