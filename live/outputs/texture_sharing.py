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

from live.outputs.output import Output, OutputError, import_for
from live.outputs.platforms import offered, only_on, platform_name

__all__ = ["SpoutOutput", "SyphonOutput", "texture_sharing_output"]

GL_RGBA = 0x1908  # OpenGL's enum, so SpoutGL needs no PyOpenGL alongside


class _SharedTexture(Output):
    """What Syphon and Spout share: one platform, and a sender name other apps list."""

    option = platform_needed = kind = ""  # "--syphon", "darwin", "Syphon server"

    def __init__(self, sender_name: str, *, platform: str = sys.platform):
        only_on(self.option, self.platform_needed, platform)
        self.sender_name = str(sender_name).strip()
        if not self.sender_name:
            raise OutputError(f"{self.option} needs a sender name, e.g. {self.option} netbend")

    def describe(self) -> str:
        return f"{self.kind} {self.sender_name!r}"


class SyphonOutput(_SharedTexture):
    name, option, platform_needed, kind = "syphon", "--syphon", "darwin", "Syphon server"
    _server = _texture = None

    def open(self, size: tuple[int, int], fps: float) -> None:
        syphon = import_for("--syphon", "syphon-python", "syphon")
        raw = import_for("--syphon", "syphon-python", "syphon.utils.raw")
        self._server = syphon.SyphonMetalServer(self.sender_name)
        self._texture = raw.create_mtl_texture(self._server.device, size[0], size[1])
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


class SpoutOutput(_SharedTexture):
    name, option, platform_needed, kind = "spout", "--spout", "win32", "Spout sender"
    _sender = _ctx = None

    def open(self, size: tuple[int, int], fps: float) -> None:
        self._spout = import_for("--spout", "SpoutGL")
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
