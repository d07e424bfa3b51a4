"""Which outputs this platform offers, in the words of the command line.

NDI and the recording work everywhere; GPU texture sharing is Syphon on macOS and Spout
on Windows; a virtual camera is v4l2loopback on Linux and OBS's camera elsewhere. An
output asked for on the wrong platform fails with a line naming what this one offers
(``only_on``).
"""
from __future__ import annotations

import sys

from live.outputs.output import OutputError

__all__ = ["platform_name", "platform_outputs", "offered", "only_on"]


def platform_name(platform: str = sys.platform) -> str:
    return {"darwin": "macOS", "win32": "Windows"}.get(platform, "Linux" if platform.startswith("linux") else platform)


def platform_outputs(platform: str = sys.platform) -> list[str]:
    """The output options that can work on ``platform`` (sys.platform's spelling)."""
    options = ["--ndi NAME", "--record-video OUT.mp4"]
    if platform == "darwin":
        options += ["--syphon NAME", "--virtual-camera (OBS's camera)"]
    elif platform == "win32":
        options += ["--spout NAME", "--virtual-camera (OBS's or Unity Capture's camera)"]
    else:
        options += ["--virtual-camera [/dev/videoN] (v4l2loopback)"]
    return options


def offered(platform: str = sys.platform) -> str:
    return f"{platform_name(platform)} offers {', '.join(platform_outputs(platform))}"


def only_on(option: str, wanted: str, platform: str = sys.platform) -> None:
    """Refuse ``option`` (an output that exists on ``wanted`` alone) on any other ``platform``."""
    if platform != wanted:
        raise OutputError(f"{option} works on {platform_name(wanted)} only; {offered(platform)}")
