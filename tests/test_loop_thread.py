"""LoopThread: the one home of an asyncio loop on its own thread (OSCQuery, Ableton Link)."""
from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest

from live.control.loop_thread import LoopThread


def test_the_session_is_entered_on_the_loop_thread_called_into_and_left_on_stop():
    seen = []

    @contextlib.asynccontextmanager
    async def session():
        seen.append(("enter", threading.current_thread().name))
        try:
            yield
        finally:
            seen.append(("leave", threading.current_thread().name))

    loop = LoopThread("test-loop", session)
    loop.start()
    assert seen == [("enter", "test-loop")]  # start() returns once the session is entered
    called = threading.Event()
    assert loop.call(lambda: (seen.append(("call", threading.current_thread().name)), called.set()))
    assert called.wait(2.0)
    loop.stop()
    assert seen == [("enter", "test-loop"), ("call", "test-loop"), ("leave", "test-loop")]
    assert not loop.call(print)  # the loop is gone: nothing runs, nothing raises
    loop.stop()  # twice is fine


def test_a_session_that_fails_to_open_raises_from_start():
    @contextlib.asynccontextmanager
    async def session():
        raise OSError("port in use")
        yield  # pragma: no cover

    with pytest.raises(OSError, match="port in use"):
        LoopThread("test-loop", session).start()


def test_a_session_that_never_opens_times_out():
    release = threading.Event()

    @contextlib.asynccontextmanager
    async def session():
        while not release.is_set():
            await asyncio.sleep(0.01)
        yield

    loop = LoopThread("test-loop", session)
    with pytest.raises(TimeoutError, match="test-loop did not start"):
        loop.start(timeout=0.1)
    release.set()
    loop.stop()


def test_stop_before_start_does_nothing():
    LoopThread("test-loop", contextlib.nullcontext).stop()
