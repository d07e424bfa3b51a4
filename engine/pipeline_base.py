"""What the three pipelines share: a model, a config, and one Bender on the model's U-Net."""
from __future__ import annotations

from typing import Iterable

from .bending import Bender
from .bends import Bend


def check_size(config, pipeline: str) -> None:
    """width/height: None (the model's native size) or a multiple of 8, at least 8."""
    for name in ("width", "height"):
        v = getattr(config, name)
        if v is not None and (int(v) < 8 or int(v) % 8):
            raise ValueError(f"{pipeline} {name} must be a multiple of 8 and >= 8, got {v}")


class BentPipeline:
    def __init__(self, model, config, bends: Iterable[Bend] = ()):
        self.model = model
        self.config = config
        self.bender = Bender(model.unet, bends)  # hooks once; bends change freely after
        self._prepared = False

    @property
    def bends(self) -> tuple[Bend, ...]:
        return self.bender.bends

    @bends.setter
    def bends(self, bends: Iterable[Bend]) -> None:
        self.bender.bends = bends

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        c = self.config
        return (c.height or self.model.default_size, c.width or self.model.default_size)

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        h, w = self.size
        f = self.model.vae_scale_factor
        return (1, self.model.latent_channels, h // f, w // f)
