"""An asyncio event loop on a thread of its own, for the libraries that want one (the
OSCQuery server's websockets, Ableton Link's aalink) while the show's threads stay plain.

    loop = LoopThread("netbend-link", session)   # session: () -> an async context manager
    loop.start()                                 # returns once the session is entered; raises what it raised
    loop.call(fn, *args)                         # fn on the loop's thread, from any thread
    loop.stop()                                  # leaves the session, ends the loop, joins the thread

The session is entered on the loop, held until ``stop()``, then left, so whatever it opened
(a listening socket, a Link session) is closed on the thread that opened it.
"""
from __future__ import annotations

import asyncio
import threading
from typing import AsyncContextManager, Callable, Optional


class LoopThread:
    """Runs ``session()`` on an asyncio loop in a daemon thread named ``name``."""

    def __init__(self, name: str, session: Callable[[], AsyncContextManager]):
        self.name, self._session = name, session
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Event] = None
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None
        self._thread: Optional[threading.Thread] = None

    def start(self, timeout: float = 10.0) -> None:
        """Start the thread and wait until the session is entered; re-raises the session's
        error, or TimeoutError when it takes longer than ``timeout`` seconds."""
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop(0.0)
            raise TimeoutError(f"{self.name} did not start within {timeout:g} s")
        if self._error is not None:
            raise self._error

    def call(self, fn: Callable, *args) -> bool:
        """Run ``fn(*args)`` on the loop soon (any thread, never blocks); False once the loop
        is gone."""
        loop = self._loop
        if loop is None:
            return False
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop closed after we looked
            return False
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Leave the session and end the loop; safe to call twice, or before ``start``."""
        if self._stop is not None:
            self.call(self._stop.set)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # noqa: BLE001 - re-raised by start()
            self._error = e
        finally:
            self._loop = None
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self._session():
            self._ready.set()
            await self._stop.wait()
