"""Stopping a child process that a test (or a test fixture) started: ask, wait, insist."""
from __future__ import annotations

import subprocess


def wait_or_kill(process: subprocess.Popen, timeout: float = 5.0) -> None:
    """Wait up to ``timeout`` s for ``process`` to end by itself; then kill it and reap it."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def stop_process(process: subprocess.Popen, timeout: float = 5.0) -> None:
    """SIGTERM ``process``, then as ``wait_or_kill``."""
    process.terminate()
    wait_or_kill(process, timeout)
