"""The bounded hand-off in front of each output: newest wins, drops counted, put never waits.

The render thread ``put``s every frame; the output's own thread ``take``s. When the output
falls behind, the oldest waiting frame is dropped (and counted) to make room, so a slow or
stuck output costs the render thread one short lock and never a wait. A capacity of 1 is
the live feeds' choice (NDI, a camera: only the newest frame matters); a recording takes a
few so that one slow encode does not cost a frame of the file.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Generic, Optional, TypeVar

T = TypeVar("T")


class Handoff(Generic[T]):
    def __init__(self, capacity: int = 1) -> None:
        if int(capacity) != capacity or capacity < 1:
            raise ValueError(f"a hand-off holds at least 1 item, got capacity {capacity!r}")
        self.capacity = int(capacity)
        self._items: deque[T] = deque()
        self._ready = threading.Condition(threading.Lock())
        self.dropped = 0  # items pushed out by newer ones before the consumer took them

    def put(self, item: T) -> bool:
        """Hand ``item`` over (any thread, never waits). False if an older item was dropped for it."""
        with self._ready:
            dropped = len(self._items) >= self.capacity
            if dropped:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._ready.notify()
        return not dropped

    def take(self, timeout: Optional[float] = None) -> Optional[T]:
        """The oldest waiting item, waiting up to ``timeout`` s for one; None if none came."""
        with self._ready:
            if not self._items and not self._ready.wait_for(lambda: bool(self._items), timeout):
                return None
            return self._items.popleft()

    def clear(self) -> int:
        """Drop what is waiting (an output switched off or stopping), counted; returns how many."""
        with self._ready:
            n = len(self._items)
            self._items.clear()
            self.dropped += n
            return n

    def __len__(self) -> int:
        with self._ready:
            return len(self._items)
