"""Decoding and resizing one image: encoded bytes -> uint8 CHW tensor with the wanted channels.

torchvision's libjpeg-turbo/libpng decoders are used (about 3.5x PIL's speed on CIFAR JPEGs here);
formats they do not read fall back to Pillow. `probe` reads only the header (size, mode).
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torchvision.io  # noqa: F401  (registers torch.ops.image)
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as F

from trainer.errors import DataError
from trainer.notices import notice

__all__ = ["decode", "probe", "resize_shorter", "resized_size"]

_GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
_reported_grey = False  # say once per process that greyscale images are being converted


def probe(data: bytes, *, name: str) -> tuple[int, int, bool]:
    """`(width, height, is_grey)` from the image header only; `DataError` if it is no image."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.width, img.height, img.mode in _GREY_MODES
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{name}: not a readable image ({exc})") from None


def _pil_decode(data: bytes, channels: int, name: str) -> torch.Tensor:
    try:
        with Image.open(io.BytesIO(data)) as img:
            arr = np.array(img.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{name}: cannot decode the image ({exc}); the file is corrupt") from None
    tensor = torch.from_numpy(arr)
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


def decode(data: bytes, channels: int, *, name: str) -> torch.Tensor:
    """Decode to a uint8 `(channels, H, W)` tensor; grey images are expanded to RGB (with a
    warning), RGBA loses alpha, RGB becomes grey when `channels == 1`."""
    try:
        # The op behind torchvision.io.decode_image (mode 0 = unchanged, no EXIF rotation):
        # torchvision 0.29 warns on every call that its decoders will move to torchcodec (not a
        # dependency here); they are still the fastest installed decoders.
        img = torch.ops.image.decode_image(
            torch.frombuffer(bytearray(data), dtype=torch.uint8), 0, False
        )
    except RuntimeError:
        img = _pil_decode(data, channels, name)
    if img.shape[0] == channels:
        return img
    if img.shape[0] in (1, 2) and channels == 3:
        global _reported_grey
        if not _reported_grey:
            _reported_grey = True
            notice(
                f"{name}: greyscale image converted to 3 channels because image_shape has 3 "
                "(further conversions are not reported)"
            )
        return img[:1].expand(3, -1, -1).contiguous()
    if img.shape[0] == 4 and channels == 3:
        return img[:3].contiguous()
    if channels == 1:
        return F.rgb_to_grayscale(img[:3])
    raise DataError(f"{name}: image has {img.shape[0]} channels, image_shape needs {channels}")


def resized_size(width: int, height: int, resize: int | None) -> tuple[int, int]:
    """`(width, height)` after scaling the shorter side to `resize` (MXNet's integer rule)."""
    if resize is None:
        return width, height
    if height > width:
        return resize, resize * height // width
    return resize * width // height, resize


def resize_shorter(img: torch.Tensor, resize: int | None) -> torch.Tensor:
    """Scale a CHW image so its shorter side is `resize` pixels (bilinear, antialiased)."""
    if resize is None:
        return img
    width, height = resized_size(img.shape[2], img.shape[1], resize)
    if (width, height) == (img.shape[2], img.shape[1]):
        return img
    return F.resize(img, [height, width], antialias=True)
