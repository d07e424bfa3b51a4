"""A virtual camera through pyvirtualcam: ``--virtual-camera [DEVICE]``.

OBS, Zoom or a browser then sees the show as a webcam. On Linux the camera is a
v4l2loopback device (/dev/videoN); on macOS and Windows, OBS's virtual camera (or Unity
Capture on Windows). When there is none, the show does not start and the message says how
to get one. The camera opens at the output size and frame rate; pictures are sent as the
render thread makes them (pyvirtualcam's pacing is not used: the show is the clock).
"""
from __future__ import annotations

import glob
import sys
from typing import Optional

import numpy as np

from live.outputs.output import Output, OutputError, import_for

__all__ = ["VirtualCamera", "how_to_get_a_camera"]


def how_to_get_a_camera(platform: str = sys.platform) -> str:
    if platform.startswith("linux"):
        return ("load v4l2loopback: sudo modprobe v4l2loopback devices=1 exclusive_caps=1 "
                "(package v4l2loopback-dkms), then pass its /dev/videoN if it is not the first")
    return "install OBS Studio and start its Virtual Camera once (Tools > Start Virtual Camera)"


class VirtualCamera(Output):
    name = "virtual-camera"

    def __init__(self, device: Optional[str] = None, *, backend: Optional[str] = None, platform: str = sys.platform):
        self.device = device or None
        self.backend = backend
        self.platform = platform
        self._camera = None

    def describe(self) -> str:
        return f"virtual camera {self._camera.device if self._camera is not None else self.device or '(first)'}"

    def open(self, size: tuple[int, int], fps: float) -> None:
        pyvirtualcam = import_for("--virtual-camera", "pyvirtualcam")
        try:
            self._camera = pyvirtualcam.Camera(size[0], size[1], fps, fmt=pyvirtualcam.PixelFormat.RGB,
                                               device=self.device, backend=self.backend, print_fps=False)
        except (RuntimeError, ValueError) as e:
            where = "" if self.device is None else f" {self.device}"
            found = sorted(glob.glob("/dev/video*")) if self.platform.startswith("linux") else []
            listing = f" (video devices here: {', '.join(found)})" if found else ""
            raise OutputError(f"--virtual-camera{where}: no virtual camera to open ({e}){listing}; "
                              f"{how_to_get_a_camera(self.platform)}") from None

    def send(self, picture: np.ndarray, frame) -> None:
        self._camera.send(picture)

    def close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            camera.close()
