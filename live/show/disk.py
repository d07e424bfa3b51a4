"""The show's file work, off the render thread: ``DiskWorker``.

Reading a preset (TOML parse, checks) or writing one (temp file, fsync, rename) takes
milliseconds to, on a busy or network disk, seconds; on the render thread that is a
visible hitch. The render thread hands such a job to ``run`` and carries on rendering;
the job runs on the worker's own thread and its result (or exception) comes back through
``results()``, which the render thread drains at a frame boundary.

``DiskWorker(inline=True)`` runs each job at once on the caller's thread instead: what an
offline render wants (a take re-rendered frame by frame must apply a preset at the same
frame every time) and what tests of the show's semantics use.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable, Optional

log = logging.getLogger("netbend.show")

__all__ = ["DiskWorker"]


class DiskWorker:
    """Runs file jobs on one background thread (or inline); results come back in order."""

    def __init__(self, inline: bool = False):
        self.inline = inline
        self._jobs: "queue.SimpleQueue[Optional[tuple[Any, Callable[[], Any]]]]" = queue.SimpleQueue()
        self._results: "queue.SimpleQueue[tuple[Any, Any, Optional[BaseException]]]" = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def run(self, tag: Any, job: Callable[[], Any]) -> None:
        """Do ``job()`` off the caller's thread; ``(tag, result, error)`` comes back from ``results``."""
        if self.inline:
            self._results.put(_call(tag, job))
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="netbend-disk", daemon=True)
                self._thread.start()
        self._jobs.put((tag, job))

    def results(self) -> list[tuple[Any, Any, Optional[BaseException]]]:
        """The finished jobs since the last call (never blocks)."""
        done = []
        while True:
            try:
                done.append(self._results.get_nowait())
            except queue.Empty:
                return done

    def _serve(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            self._results.put(_call(*item))

    def close(self, timeout: float = 5.0) -> None:
        """Finish the queued jobs and stop the thread; safe to call twice."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            thread.join(timeout)


def _call(tag: Any, job: Callable[[], Any]) -> tuple[Any, Any, Optional[BaseException]]:
    try:
        return tag, job(), None
    except Exception as e:  # noqa: BLE001 - reported to the render thread, which answers it
        return tag, None, e
