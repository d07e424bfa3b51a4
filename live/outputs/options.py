"""The outputs of ``netbend live`` as options: checked before the show starts, built once.

    --ndi NAME [--ndi-audio]          NDI source NAME (with the input audio)
    --syphon NAME | --spout NAME      GPU texture sharing on macOS | Windows
    --share NAME                      whichever of the two this platform has
    --virtual-camera [DEVICE]         a virtual camera (the first one, or /dev/videoN)
    --record-video OUT.mp4 [--overwrite]   the show as H.264 + the input audio
    --output KIND[:ARG]               the same by name, repeatable: ndi:NAME, syphon:NAME, spout:NAME,
                                      share:NAME, virtual-camera[:DEVICE], record:OUT.mp4
    --output-size WxH --scaling fit|fill|stretch --upscale smooth|sharp --output-fps F

``check`` finds every wrong option (an unknown output, one this platform lacks, a bad size,
a recording that would overwrite a file) before a model is loaded; ``build`` opens the
outputs (a missing camera fails here, still before the show) and returns ``Outputs``.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from live.outputs.fanout import Outputs
from live.outputs.framing import Framing, parse_output_size
from live.outputs.output import Output, OutputError
from live.outputs.platforms import offered

__all__ = ["KINDS", "OutputOptions"]

KINDS = ("ndi", "syphon", "spout", "share", "virtual-camera", "record")


@dataclass
class OutputOptions:
    ndi: Optional[str] = None
    ndi_audio: bool = False
    syphon: Optional[str] = None
    spout: Optional[str] = None
    share: Optional[str] = None
    virtual_camera: Optional[str] = None  # "" = the first camera found; None = no camera
    record_video: Optional[Path] = None
    overwrite: bool = False
    output: list[str] = field(default_factory=list)  # --output KIND[:ARG] …
    output_size: Optional[tuple[int, int]] = None
    scaling: str = "fit"
    upscale: str = "smooth"
    output_fps: float = 30.0  # what NDI and a camera announce; the show sends as fast as it renders
    platform: str = sys.platform

    @classmethod
    def from_args(cls, args) -> "OutputOptions":
        """From `netbend live`'s parsed arguments (live.cli.parser)."""
        camera = args.virtual_camera
        return cls(ndi=args.ndi, ndi_audio=args.ndi_audio, syphon=args.syphon, spout=args.spout, share=args.share,
                   virtual_camera=camera, record_video=Path(args.record_video) if args.record_video else None,
                   overwrite=args.overwrite, output=list(args.output or []),
                   output_size=parse_output_size(args.output_size), scaling=args.scaling, upscale=args.upscale,
                   output_fps=args.output_fps)

    @property
    def framing(self) -> Framing:
        return Framing(self.output_size, self.scaling, self.upscale)

    def wanted(self) -> list[tuple[str, Optional[str]]]:
        """(kind, argument) of every output asked for, the dedicated flags first."""
        out = [(k, v) for k, v in (("ndi", self.ndi), ("syphon", self.syphon), ("spout", self.spout),
                                   ("share", self.share), ("virtual-camera", self.virtual_camera),
                                   ("record", None if self.record_video is None else str(self.record_video)))
               if v is not None]
        for text in self.output:
            kind, _, arg = text.partition(":")
            if kind not in KINDS:
                raise OutputError(f"--output {text!r}: unknown output {kind!r}; outputs: {', '.join(KINDS)} "
                                  f"({offered(self.platform)})")
            if kind != "virtual-camera" and not arg:
                raise OutputError(f"--output {text!r}: write {kind}:{'OUT.mp4' if kind == 'record' else 'NAME'}")
            out.append((kind, arg))
        kinds = [k for k, _ in out]
        for kind in set(kinds):
            if kinds.count(kind) > 1:
                raise OutputError(f"output {kind!r} asked for {kinds.count(kind)} times; each output runs once")
        return out

    def make(self, kind: str, arg: Optional[str], audio=None) -> Output:
        """One unopened output (raises OutputError for one this platform or this folder cannot have)."""
        if kind == "ndi":
            from live.outputs.ndi import NdiOutput

            return NdiOutput(arg, audio=audio if self.ndi_audio else None)
        if kind in ("syphon", "spout", "share"):
            from live.outputs.texture_sharing import SpoutOutput, SyphonOutput, texture_sharing_output

            if kind == "syphon":
                return SyphonOutput(arg, platform=self.platform)
            if kind == "spout":
                return SpoutOutput(arg, platform=self.platform)
            return texture_sharing_output(arg, platform=self.platform)
        if kind == "virtual-camera":
            from live.outputs.virtual_camera import VirtualCamera

            return VirtualCamera(arg or None, platform=self.platform)
        from live.outputs.recording import VideoRecording

        return VideoRecording(arg, audio=audio, overwrite=self.overwrite)

    def check(self) -> None:
        """Every wrong option, before any model loads: one OutputError/ValueError, one line."""
        self.framing  # noqa: B018 - validates scaling and upscale
        if not (isinstance(self.output_fps, (int, float)) and math.isfinite(self.output_fps)
                and 1 <= self.output_fps <= 240):
            raise OutputError(f"--output-fps must be 1..240 frames per second, got {self.output_fps}")
        if self.ndi_audio and self.ndi is None and not any(o.startswith("ndi:") for o in self.output):
            raise OutputError("--ndi-audio goes with --ndi NAME")
        if self.overwrite and self.record_video is None and not any(o.startswith("record:") for o in self.output):
            raise OutputError("--overwrite goes with --record-video OUT.mp4")
        for kind, arg in self.wanted():
            if kind != "virtual-camera":
                self.make(kind, arg)  # constructing checks names, platforms and paths; nothing opens

    def build(self, frame_size: tuple[int, int], audio=None) -> Outputs:
        """Open every output asked for (the recording last: a camera that fails leaves no file)."""
        wanted = sorted(self.wanted(), key=lambda kv: kv[0] == "record")
        outputs = Outputs(self.framing, frame_size=frame_size, fps=self.output_fps,
                          recording=lambda path: self.make("record", str(path), audio))
        try:
            for kind, arg in wanted:
                outputs.add(self.make(kind, arg, audio))
        except BaseException:
            outputs.close()
            raise
        return outputs
