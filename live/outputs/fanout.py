"""``Outputs``: the show's set of outputs, each on its own thread behind its own hand-off.

The render thread calls ``put(frame)`` once per frame; that copies the frame once (the
render thread's buffers are a small ring) and hands it to every enabled output, which
costs it a few short locks and never a wait. Outputs combine freely; each is switched by
name (``/netbend/output/<name>/enable i``) and reports its own fps and drops for the HUD
and the exit stats. A recording can also start and stop during the show.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

from live.outputs.commands import unknown_output
from live.outputs.framing import Framing
from live.outputs.output import STOP_WAIT_S, Output, OutputError, OutputThread, _hold

log = logging.getLogger("netbend.outputs")

__all__ = ["Outputs"]


class Outputs:
    def __init__(self, framing: Framing = Framing(), *, frame_size: tuple[int, int] = (512, 512), fps: float = 30.0,
                 recording: Optional[Callable[[Path], Output]] = None):
        self.framing = framing
        self.frame_size = tuple(frame_size)  # (width, height) the model renders
        self.fps = float(fps)
        self._make_recording = recording  # path -> an unopened recording Output (for /netbend/record/video/start)
        self._threads: dict[str, OutputThread] = {}
        self._lock = threading.Lock()  # add/remove (render or main thread) against put (render thread)
        self.finished: dict[str, dict] = {}  # stats of outputs removed during the show
        self.error: Callable[[str, str], None] = lambda address, reason: None  # -> /netbend/error
        self._opening = False
        self._workers: list[threading.Thread] = []  # recordings opening or finishing off the render thread

    @property
    def picture_size(self) -> tuple[int, int]:
        return self.framing.picture_size(self.frame_size)

    # -- which outputs

    def add(self, output: Output, enabled: bool = True) -> OutputThread:
        """Open ``output`` at the picture size and start its thread. Its errors (OutputError)
        reach the caller: a missing device stops the show before it starts."""
        if not output.name.replace("-", "").isalnum():
            raise OutputError(f"output name {output.name!r} may use letters, digits and '-' only (it is an OSC address)")
        if output.name in self._threads:
            raise OutputError(f"there is already an output named {output.name!r}; outputs: {', '.join(self.names)}")
        output.open(self.picture_size, self.fps)
        thread = OutputThread(output, self.framing, enabled=enabled).start()
        with self._lock:
            self._threads = {**self._threads, output.name: thread}
        log.info("output %s: %s at %dx%d", output.name, output.describe(), *self.picture_size)
        return thread

    def remove(self, name: str, timeout: float = STOP_WAIT_S) -> dict:
        """Stop one output (its thread closes it); returns its final numbers."""
        with self._lock:
            threads = dict(self._threads)
            thread = threads.pop(self._known(name), None)
            self._threads = threads
        self._finish(name, thread, timeout)
        return self.finished[name]

    def _known(self, name: str) -> str:
        if name not in self._threads:
            raise OutputError(unknown_output(name, self.names))
        return name

    @property
    def names(self) -> list[str]:
        return list(self._threads)

    def __contains__(self, name: str) -> bool:
        return name in self._threads

    def __getitem__(self, name: str) -> OutputThread:
        return self._threads[self._known(name)]

    def states(self) -> tuple[tuple[str, bool], ...]:
        """(name, enabled) of every output, for the show's state and /netbend/state."""
        return tuple((name, t.enabled) for name, t in self._threads.items())

    def enable(self, name: str, on: bool) -> None:
        self[name].set_enabled(on)
        log.info("output %s %s", name, "on" if on else "off")

    # -- recording during the show (asked for on the render thread, which never touches a file)

    def start_recording(self, path) -> None:
        """/netbend/record/video/start: a new recording to ``path``, opened on a thread of its
        own (checking and creating the file is disk work); a refusal (the file exists, the
        folder does not) goes to ``error`` as /netbend/error."""
        if self._make_recording is None:
            raise OutputError("this show cannot record video (no recording was configured)")
        with self._lock:
            if "record" in self._threads or self._opening:
                raise OutputError("already recording; send /netbend/record/video/stop first")
            self._opening = True
        self._background(self._open_recording, Path(path))

    def _open_recording(self, path: Path) -> None:
        try:
            self.add(self._make_recording(path))
        except Exception as e:  # noqa: BLE001 - answered, never raised into a thread's top
            log.error("recording not started: %s", e)
            self.error("/netbend/record/video/start", str(e))
        finally:
            self._opening = False

    def stop_recording(self) -> None:
        """/netbend/record/video/stop: the recording finishes its file on its own time."""
        with self._lock:
            if "record" not in self._threads:
                raise OutputError("not recording video; start with /netbend/record/video/start PATH.mp4")
            threads = dict(self._threads)
            thread = threads.pop("record")
            self._threads = threads
        self._background(self._finish, "record", thread, STOP_WAIT_S)

    def _finish(self, name: str, thread: OutputThread, timeout: float) -> None:
        thread.stop(timeout)
        self.finished[name] = thread.stats()

    def _background(self, target, *args) -> None:
        worker = threading.Thread(target=target, args=args, name="netbend-outputs", daemon=True)
        self._workers = [w for w in self._workers if w.is_alive()] + [worker]
        worker.start()

    def act(self, command) -> None:
        """Carry out an output command at a frame boundary (live.outputs.commands has the
        addresses); raises OutputError, which the show answers on /netbend/error."""
        from live.outputs.commands import START, STOP, output_name

        a, args = command.address, tuple(command.args)
        if a == START:
            self.start_recording(args[0])
        elif a == STOP:
            self.stop_recording()
        else:
            self.enable(output_name(a), bool(args[0]))

    # -- frames

    def put(self, frame) -> None:
        """Hand one frame to every enabled output (the render thread; never waits)."""
        threads = self._threads  # one read of an immutable dict: add/remove swap it whole
        if not any(t.enabled for t in threads.values()):
            for t in threads.values():
                t.put(frame)  # counts it as skipped
            return
        held = replace(frame, image=_hold(frame.image))  # one copy, shared read-only by every output
        for t in threads.values():
            t.put(held)

    # -- numbers

    def stats(self) -> dict:
        out = dict(self.finished)
        out.update({name: t.stats() for name, t in self._threads.items()})
        return out

    def hud_lines(self) -> list[str]:
        return [t.hud_line() for t in self._threads.values()]

    def close(self, timeout: float = STOP_WAIT_S) -> dict:
        """Stop every output (recordings finish their file); returns the final numbers. An
        output stuck longer than ``timeout`` is left behind (logged), never waited for."""
        for worker in list(self._workers):
            worker.join(timeout + 1.0)  # a recording still opening or finishing its file
        for name in list(self._threads):
            self.remove(name, timeout)
        return dict(self.finished)
