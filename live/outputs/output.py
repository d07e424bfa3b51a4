"""The output interface, and the thread each output runs on.

An ``Output`` is a place the show's picture goes besides the window: NDI, Syphon, Spout, a
virtual camera, a recording. It is opened once with the picture size and frame rate,
gets pictures one at a time on its own thread, and is closed on that thread:

    class MyOutput(Output):
        name = "mine"
        def open(self, size, fps): ...            # may raise OutputError: the show does not start
        def send(self, picture, frame): ...       # (h, w, 3) uint8 RGB, top row first
        def close(self): ...

``OutputThread`` puts one output behind its own bounded newest-wins ``Handoff``: the render
thread only ever hands a frame over, the output's thread makes the picture (``Framing``)
and sends it. A slow output drops frames (counted); one that raises has the frame counted
as failed, the problem logged once, and keeps getting the next frames. Nothing it does can
stall rendering, the window or OSC.

``import_for`` imports the library an output is made with when it opens, or says how to
install it.
"""
from __future__ import annotations

import importlib
import logging
import threading
import time
from collections import deque
from typing import Callable, Optional

import numpy as np

from live.outputs.framing import Framing
from live.outputs.handoff import Handoff

log = logging.getLogger("netbend.outputs")

__all__ = ["Output", "OutputError", "OutputThread", "host_image", "import_for"]

IDLE_TICK_S = 0.05  # how often an output with nothing to send still gets ``tick`` (audio keeps flowing)
STOP_WAIT_S = 3.0  # how long closing waits for a stuck output before leaving it behind


class OutputError(ValueError):
    """An output that cannot be opened or used as asked: says what was wrong and what to do."""


def import_for(option: str, package: str, module: Optional[str] = None, brings: str = ""):
    """The module ``option``'s output is made with (``package``'s own by default), imported
    when the output opens; if it is missing, an OutputError that says how to install it."""
    try:
        return importlib.import_module(module or package)
    except ImportError as e:
        raise OutputError(f"{option} needs {package}{brings}: pip install {package} ({e})") from None


class Output:
    """One destination of the show's picture. Subclasses set ``name`` and implement ``send``."""

    name = "output"
    capacity = 1  # frames its hand-off holds: 1 for a live feed, where only the newest matters

    def open(self, size: tuple[int, int], fps: float) -> None:
        """Get ready for pictures of ``size`` (width, height) at about ``fps`` (main or render thread)."""

    def send(self, picture: np.ndarray, frame) -> None:
        """Send one (h, w, 3) uint8 RGB picture made from ``frame`` (a live Frame: index, times)."""
        raise NotImplementedError

    def tick(self, now: float) -> None:
        """Called on the output's thread when no frame came for a while (e.g. to keep audio going)."""

    def close(self) -> None:
        """Stop and let go of everything (on the output's thread, after the last send)."""

    def describe(self) -> str:
        """One line for the log and the HUD: where the picture goes."""
        return self.name


def host_image(image) -> np.ndarray:
    """A frame's image as a host (H, W, 3) uint8 array (a live.display.upload.DeviceImage is copied down)."""
    if hasattr(image, "tensor") and hasattr(image, "ready"):
        image.ready.synchronize()
        return image.tensor.cpu().numpy()
    return image


def _hold(image):
    """A copy of a frame's image that the render thread's buffer ring cannot overwrite while
    it waits in a hand-off (packed frames reuse a ring of RING buffers)."""
    if hasattr(image, "tensor") and hasattr(image, "ready"):
        import torch

        copy = image.tensor.clone()  # on the GPU, ordered after the pack on the same stream
        ready = torch.cuda.Event()
        ready.record()
        return type(image)(copy, ready)
    return np.array(image, copy=True)


class OutputThread:
    """One output on its own thread behind its own hand-off, with its numbers."""

    def __init__(self, output: Output, framing: Framing = Framing(), *, clock: Callable[[], float] = time.monotonic,
                 enabled: bool = True):
        self.output = output
        self.name = output.name
        self.framing = framing
        self.handoff: Handoff = Handoff(output.capacity)
        self._clock = clock
        self._enabled = enabled
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.sent = 0
        self.failed = 0
        self.skipped = 0  # frames not taken while switched off (not drops: nobody asked for them)
        self._times: deque[float] = deque(maxlen=120)
        self._costs: deque[float] = deque(maxlen=120)  # s per picture: framing + send, on this thread
        self._seen: set[str] = set()
        self.closed = threading.Event()

    # -- the render thread's side

    def put(self, frame) -> None:
        """Hand a frame over; never waits (any thread)."""
        if not self._enabled:
            self.skipped += 1
            return
        self.handoff.put(frame)

    @property
    def enabled(self) -> bool:
        return self._enabled

    def set_enabled(self, on: bool) -> None:
        self._enabled = bool(on)
        if not on:
            self.handoff.clear()
        self._times.clear()

    @property
    def dropped(self) -> int:
        """Frames lost to this output: pushed out of its hand-off, or failed to send."""
        return self.handoff.dropped + self.failed

    @property
    def fps(self) -> float:
        t = list(self._times)
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    @property
    def send_ms(self) -> float:
        """Median time to make and send one picture recently, in ms (what the output costs per frame)."""
        costs = sorted(self._costs)
        return 1000 * costs[len(costs) // 2] if costs else 0.0

    def stats(self) -> dict:
        return {"enabled": self._enabled, "sent": self.sent, "dropped": self.dropped, "failed": self.failed,
                "fps": round(self.fps, 2), "send_ms_p50": round(self.send_ms, 2)}

    def hud_line(self) -> str:
        state = f"{self.fps:5.1f} fps {self.send_ms:5.1f} ms" if self._enabled else "  off    "
        return f"{self.name}: {state}  {self.dropped} dropped" + (f" ({self.failed} failed)" if self.failed else "")

    # -- its own thread

    def start(self) -> "OutputThread":
        self._thread = threading.Thread(target=self._run, name=f"netbend-output-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self.handoff.take(timeout=IDLE_TICK_S)
                if frame is None:
                    self._guard("tick", lambda: self.output.tick(self._clock()))
                    continue
                began = time.perf_counter()
                if self._guard("send", lambda: self._send(frame)):
                    self.sent += 1
                    self._times.append(self._clock())
                    self._costs.append(time.perf_counter() - began)
                else:
                    self.failed += 1
        finally:
            self.handoff.clear()  # frames still waiting at the end are dropped, and counted
            self._guard("close", self.output.close)
            self.closed.set()

    def _send(self, frame) -> None:
        picture = self.framing.apply(host_image(frame.image))
        self.output.send(picture, frame)

    def _guard(self, what: str, call: Callable[[], None]) -> bool:
        try:
            call()
            return True
        except Exception as e:  # noqa: BLE001 - an output's trouble must never reach the show
            key = f"{what}:{type(e).__name__}:{e}"
            if key not in self._seen:
                self._seen.add(key)
                log.error("output %s: %s failed (%s: %s); frames are dropped and counted, the show goes on",
                          self.name, what, type(e).__name__, e)
            return False

    def stop(self, timeout: float = STOP_WAIT_S) -> bool:
        """Stop the thread (it closes its output). False if the output was stuck past ``timeout``."""
        self._stop.set()
        if self._thread is None:
            self._guard("close", self.output.close)
            return True
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("output %s did not stop within %.0f s (stuck in send?); left behind", self.name, timeout)
            return False
        return True
