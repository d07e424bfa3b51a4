"""Checks of values that the commands, the live show and the outputs share, made before
anything is loaded: picture sizes (``SizeRule``, ``FRAME_SIZE``) and the U-Net back-end's
name (``check_backend``).

A size is given as 'WIDTHxHEIGHT' and parsed and checked in one place, ``SizeRule``.

``FRAME_SIZE`` is the rule for the frames render, live, sweep and bench make (render raises
it as its own RenderError: ``live.cli.render.parse_frame_size``); other flags state theirs
where they are read (TensorRT engines need multiples of 64: ``live.cli.build_engines``;
outputs any size from 2 pixels: ``live.outputs.framing``). A
wrong value is one message naming the flag, what was given and what is allowed.

    rule = SizeRule(multiple=64, smallest=64, why="engines have fixed shapes, so ")
    rule.parse("512x384")            # (512, 384)
    rule.parse("500x500")            # ValueError: bad --size '500x500'; engines … multiples of 64 …
    rule.check((512, 384), "size")   # the same rule on a (width, height) pair
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ["FRAME_SIZE", "SizeRule", "check_backend"]


@dataclass(frozen=True)
class SizeRule:
    multiple: int = 8  # the VAE halves three times: latents need multiples of 8 pixels
    smallest: int = 8
    largest: Optional[int] = None  # None: no upper bound
    why: str = ""  # the rule's reason, said before it: "engines have fixed shapes …, so "
    example: str = "512x512"
    error: type[ValueError] = ValueError  # a ValueError: the command line reports it as wrong input

    def parse(self, text: Optional[str], flag: str = "--size") -> Optional[tuple[int, int]]:
        """'WxH' -> (width, height); None stays None."""
        if text is None:
            return None
        try:
            width, height = (int(v) for v in text.lower().split("x"))
        except ValueError:
            raise self.error(f"bad {flag} {text!r}; write WIDTHxHEIGHT, e.g. {self.example}") from None
        self._check(width, height, f"bad {flag} {text!r}")
        return width, height

    def check(self, size: Optional[tuple[int, int]], name: str = "size") -> Optional[tuple[int, int]]:
        """A (width, height) pair of ints under the same rule, as a tuple; None stays None."""
        if size is None:
            return None
        if not (isinstance(size, (tuple, list)) and len(size) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in size)):
            raise self.error(f"bad {name} {size!r}; give (width, height) in whole pixels, e.g. "
                             f"({self.example.replace('x', ', ')})")
        self._check(size[0], size[1], f"bad {name} {size[0]}x{size[1]}")
        return int(size[0]), int(size[1])

    def _check(self, width: int, height: int, bad: str) -> None:
        top = self.largest if self.largest is not None else max(width, height)
        if all(self.smallest <= side <= top and side % self.multiple == 0 for side in (width, height)):
            return
        if self.multiple == 1 and self.largest is not None:
            allowed = f"{self.smallest}..{self.largest} pixels"
        else:
            allowed = (f"multiples of {self.multiple}, " if self.multiple > 1 else "") + f"at least {self.smallest}" + (
                f" and at most {self.largest}" if self.largest is not None else "")
        raise self.error(f"{bad}; {self.why}width and height must be {allowed}")


# pixels: a 4096x4096 frame is 64x SD-Turbo's compute (made for 512) and ~1 GB of latents in fp16
FRAME_SIZE = SizeRule(multiple=8, smallest=8, largest=4096)


def check_backend(backend: str, error: type[ValueError] = ValueError) -> str:
    """The name of how the U-Net runs (engine.pipeline_base); ``error`` names what is allowed."""
    from engine.pipeline_base import PIPELINE_BACKENDS  # torch: only once a job is made

    if backend not in PIPELINE_BACKENDS:
        raise error(f"unknown --backend {backend!r}; allowed: {', '.join(PIPELINE_BACKENDS)}")
    return backend
