"""Image conversions at the engine's edge: (B, 3, H, W) float tensors in [0, 1] to and
from uint8 arrays and files. The pipelines never leave tensor land; callers convert once."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor


def to_uint8(image: Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    if image.dim() == 4:
        image = image[0]
    return (image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
            .permute(1, 2, 0).cpu().numpy())


def from_uint8(array: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.array(array[..., :3], dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0).float() / 255.0


def load_image(path: Union[str, Path], size: Optional[tuple[int, int]] = None) -> Tensor:
    """An image file as (1, 3, H, W) in [0, 1], resized to (height, width) if given.
    An unreadable file raises ValueError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size is not None:
                im = im.resize((size[1], size[0]), Image.LANCZOS)
            return from_uint8(np.asarray(im))
    except (OSError, UnidentifiedImageError) as e:
        raise ValueError(f"cannot read image {str(path)!r}: {e}") from None


def save_png(image: Tensor, path: Union[str, Path]) -> None:
    """Write atomically: a temp file next to the target, then rename."""
    write_png(to_uint8(image), path)


def write_png(array: np.ndarray, path: Union[str, Path]) -> None:
    """(H, W, 3) uint8 to a PNG, atomically (a temp file next to the target, then rename)."""
    from PIL import Image

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(array).save(tmp, format="PNG")
    tmp.replace(path)
