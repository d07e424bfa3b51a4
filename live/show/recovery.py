"""After a failed frame: ``Recovery`` keeps the last good frame and restarts the loop from it.

A frame can fail (out of GPU memory, a NaN/inf frame from an extreme bend, a driver
error). The show must go on: the failure is counted and logged once, the last good frame
stays on screen, and the feedback loop resumes from it, so the next frame is not built
on a broken one. ``StreamPipeline.resume`` is constant time, so recovery is too.
"""
from __future__ import annotations

from typing import Optional

import torch

__all__ = ["Recovery"]


class Recovery:
    def __init__(self):
        self.last_good: Optional[torch.Tensor] = None  # (1, 3, H, W) on the model's device

    @staticmethod
    def check(image: torch.Tensor) -> None:
        """Raise for a frame that must not be shown (one host sync; the download syncs anyway)."""
        if not bool(torch.isfinite(image).all()):
            raise FloatingPointError("the frame came out NaN/inf (an extreme bend?); showing the last good frame")

    def good(self, image: torch.Tensor) -> None:
        self.last_good = image

    def failed(self, pipe, error: BaseException) -> None:
        """Restart ``pipe``'s feedback loop from the last good frame (if there is one yet)."""
        if isinstance(error, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
        if self.last_good is not None:
            pipe.resume(self.last_good, pipe.frame_index)
