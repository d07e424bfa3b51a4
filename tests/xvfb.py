"""A real X server for window tests: Xvfb on a free display, for the whole session.

``from xvfb import xvfb`` in a test module makes the fixture available. It starts
``Xvfb :N -screen 0 1280x720x24`` (N chosen by Xvfb itself through -displayfd, so
parallel sessions never collide; -noreset, or the server resets whenever the last client
disconnects and the next window's connection can be refused), points $DISPLAY at it while the session runs, and kills
it afterwards. Xvfb also maps its screen to a file (-fbdir), so ``server.screen()`` reads
what is really on the screen after a swap, without any X client tool.

If Xvfb is not installed the fixture FAILS (it does not skip): the window is part of the
product and must be tested. Install it with ``apt-get install xvfb``.
"""
from __future__ import annotations

import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from helpers_process import stop_process

SCREEN = (1280, 720)  # width, height
START_TIMEOUT = 10.0  # s


@dataclass
class XvfbServer:
    display: str  # ":N"
    process: subprocess.Popen
    fbdir: Path

    def screen(self) -> np.ndarray:
        """The X screen now, as (H, W, 3) uint8 RGB, top row first (parsed from the XWD
        file Xvfb keeps its framebuffer in)."""
        return read_xwd((self.fbdir / "Xvfb_screen0").read_bytes())


def read_xwd(data: bytes) -> np.ndarray:
    """Decode a ZPixmap XWD image with 24 or 32 bits per pixel to (H, W, 3) RGB."""
    header = np.frombuffer(data[:100], dtype=">u4")
    header_size, version, pixmap_format = int(header[0]), int(header[1]), int(header[2])
    width, height = int(header[4]), int(header[5])
    byte_order, bits_per_pixel, bytes_per_line = int(header[7]), int(header[11]), int(header[12])
    masks = [int(m) for m in header[14:17]]
    ncolors = int(header[19])
    if version != 7 or pixmap_format != 2 or bits_per_pixel != 32:
        raise ValueError(f"unsupported XWD: version {version}, format {pixmap_format}, {bits_per_pixel} bpp")
    start = header_size + 12 * ncolors
    rows = np.frombuffer(data, dtype="<u4" if byte_order == 0 else ">u4", count=height * bytes_per_line // 4,
                         offset=start).reshape(height, bytes_per_line // 4)[:, :width]
    channels = []
    for mask in masks:
        shift = (mask & -mask).bit_length() - 1
        channels.append(((rows & mask) >> shift).astype(np.uint8))
    return np.stack(channels, axis=-1)


@pytest.fixture(scope="session")
def xvfb():
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.fail("Xvfb is not installed, so the window cannot be tested: apt-get install xvfb", pytrace=False)
    fbdir = Path(tempfile.mkdtemp(prefix="netbend-xvfb-"))
    read_fd, write_fd = os.pipe()
    log = open(fbdir / "Xvfb.log", "wb")  # a file, not a pipe: a full pipe would stall Xvfb
    process = subprocess.Popen(
        [exe, "-displayfd", str(write_fd), "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24",
         "-nolisten", "tcp", "-noreset", "-fbdir", str(fbdir)],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=log,
    )
    os.close(write_fd)
    number = _read_display_number(read_fd)
    log.close()
    if not number:
        process.kill()
        process.wait(timeout=5)
        os.close(read_fd)
        err = (fbdir / "Xvfb.log").read_text(errors="replace")
        pytest.fail(f"Xvfb did not start within {START_TIMEOUT:g} s: {err.strip()[-500:]}", pytrace=False)
    server = XvfbServer(display=f":{number}", process=process, fbdir=fbdir)
    try:
        with pytest.MonkeyPatch.context() as patch:  # $DISPLAY as it was once this block ends
            patch.setenv("DISPLAY", server.display)
            yield server
    finally:
        stop_process(process)
        os.close(read_fd)  # only now: Xvfb treats a closed pipe as fatal
        shutil.rmtree(fbdir, ignore_errors=True)


def _read_display_number(fd: int) -> str:
    """Xvfb writes "N\n" to -displayfd once it accepts connections, maybe in pieces;
    read up to the newline (closing the pipe early would kill Xvfb)."""
    data, deadline = b"", time.monotonic() + START_TIMEOUT
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 64) if ready else b""
        if not chunk:
            return ""
        data += chunk
    return data.decode().strip()
