"""GPU texture sharing with other apps on the same machine: Syphon (macOS), Spout (Windows).

Both are thin over their well-kept Python wrappers and take the same (h, w, 3) pictures
as every other output:

    SyphonOutput   syphon-python: a SyphonMetalServer; each picture is copied into a Metal
                   texture and published (Metal needs no OpenGL context, so any thread)
    SpoutOutput    SpoutGL: a SpoutSender; ``sendImage`` needs an OpenGL context current
                   on the sending thread, so the output makes a hidden one on its own
                   thread (moderngl's standalone context) at the first picture

``texture_sharing_output(name)`` picks the one for this platform; asking for either on
the wrong platform fails before the show with a line naming what this platform offers.
Neither runs on the Linux CI: what is tested here is that choice and those errors.
"""
from __future__ import annotations

import sys

import numpy as np

from live.outputs.output import Output, OutputError
from live.outputs.platforms import offered, platform_name

__all__ = ["SpoutOutput", "SyphonOutput", "texture_sharing_output"]

GL_RGBA = 0x1908  # OpenGL's enum, so SpoutGL needs no PyOpenGL alongside


def _check_name(option: str, name: str) -> str:
    name = str(name).strip()
    if not name:
        raise OutputError(f"{option} needs a sender name, e.g. {option} netbend")
    return name


class SyphonOutput(Output):
    name = "syphon"

    def __init__(self, server_name: str, *, platform: str = sys.platform):
        if platform != "darwin":
            raise OutputError(f"--syphon works on macOS only; {offered(platform)}")
        self.server_name = _check_name("--syphon", server_name)
        self._server = self._texture = None

    def describe(self) -> str:
        return f"Syphon server {self.server_name!r}"

    def open(self, size: tuple[int, int], fps: float) -> None:
        try:
            import syphon
            from syphon.utils.raw import create_mtl_texture
        except ImportError as e:
            raise OutputError(f"--syphon needs syphon-python: pip install syphon-python ({e})") from None
        self._server = syphon.SyphonMetalServer(self.server_name)
        self._texture = create_mtl_texture(self._server.device, size[0], size[1])
        self._rgba = np.full((size[1], size[0], 4), 255, np.uint8)

    def send(self, picture: np.ndarray, frame) -> None:
        from syphon.utils.numpy import copy_image_to_mtl_texture

        self._rgba[..., :3] = picture
        copy_image_to_mtl_texture(self._rgba, self._texture)
        self._server.publish_frame_texture(self._texture)

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()


class SpoutOutput(Output):
    name = "spout"

    def __init__(self, sender_name: str, *, platform: str = sys.platform):
        if platform != "win32":
            raise OutputError(f"--spout works on Windows only; {offered(platform)}")
        self.sender_name = _check_name("--spout", sender_name)
        self._sender = self._ctx = None

    def describe(self) -> str:
        return f"Spout sender {self.sender_name!r}"

    def open(self, size: tuple[int, int], fps: float) -> None:
        try:
            import SpoutGL
        except ImportError as e:
            raise OutputError(f"--spout needs SpoutGL: pip install SpoutGL ({e})") from None
        self._spout = SpoutGL
        self._rgba = np.full((size[1], size[0], 4), 255, np.uint8)

    def send(self, picture: np.ndarray, frame) -> None:
        if self._ctx is None:  # on this output's thread: the GL context must be current here
            import moderngl

            self._ctx = moderngl.create_standalone_context()
            self._sender = self._spout.SpoutSender()
            self._sender.setSenderName(self.sender_name)
        self._rgba[..., :3] = picture
        h, w = picture.shape[:2]
        if not self._sender.sendImage(self._rgba, w, h, GL_RGBA, False, 0):
            raise RuntimeError("SpoutGL sendImage failed")

    def close(self) -> None:
        if self._sender is not None:
            self._sender.releaseSender()
            self._sender = None
        if self._ctx is not None:
            self._ctx.release()
            self._ctx = None


def texture_sharing_output(name: str, platform: str = sys.platform) -> Output:
    """``--share NAME``: Syphon on macOS, Spout on Windows; elsewhere an error naming what is offered."""
    if platform == "darwin":
        return SyphonOutput(name, platform=platform)
    if platform == "win32":
        return SpoutOutput(name, platform=platform)
    raise OutputError(f"--share (GPU texture sharing) is Syphon on macOS and Spout on Windows; "
                      f"{platform_name(platform)} has neither: {offered(platform)}")
