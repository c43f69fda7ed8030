"""The seed algorithm's augmentation (MXNet's default image augmenter), on uint8 tensor batches.

`augmentation_type` (the hyperparameter page; MXNet `src/io/image_aug_default.cc`):

- `crop`: a random `image_shape` crop and a horizontal flip with probability 1/2;
- `crop_color`: then integer offsets h in [-36, 36], s and l in [-50, 50] added to the H, L, S
  channels on OpenCV's 8-bit HLS scale (H 0..180 = degrees/2, L and S 0..255), each clamped
  (not wrapped) to its range, as MXNet's C++ loop does;
- `crop_color_transform`: before the crop, an affine warp of the whole (resized) image with a
  rotation of an integer angle in [-10, 10] degrees, a shear m in [-0.1, 0.1] and an aspect
  ratio r in [0.75, 1.25], bilinear, the uncovered area filled with 255, MXNet's matrix exactly.

Without `augmentation_type` (and always for validation) the image is only centre-cropped.
All randomness comes from the `torch.Generator` passed in, so a batch is a function of its seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as nnf

__all__ = [
    "AUGMENTATIONS",
    "Augmentation",
    "augment_batch",
    "center_crop_batch",
    "hls_to_rgb",
    "rgb_to_hls",
    "sample_affine",
    "sample_hls_offsets",
    "shift_hls",
]


@dataclass(frozen=True)
class Augmentation:
    """What one `augmentation_type` does, with MXNet's bounds."""

    random_crop: bool = True
    mirror: bool = True
    random_h: int = 0
    random_s: int = 0
    random_l: int = 0
    max_rotate_angle: int = 0
    max_shear_ratio: float = 0.0
    max_aspect_ratio: float = 0.0

    @property
    def color(self) -> bool:
        return bool(self.random_h or self.random_s or self.random_l)

    @property
    def affine(self) -> bool:
        return bool(self.max_rotate_angle or self.max_shear_ratio or self.max_aspect_ratio)


AUGMENTATIONS: dict[str | None, Augmentation] = {
    None: Augmentation(random_crop=False, mirror=False),
    "crop": Augmentation(),
    "crop_color": Augmentation(random_h=36, random_s=50, random_l=50),
    "crop_color_transform": Augmentation(
        random_h=36,
        random_s=50,
        random_l=50,
        max_rotate_angle=10,
        max_shear_ratio=0.1,
        max_aspect_ratio=0.25,
    ),
}


def _uniform(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g, dtype=torch.float64)


# ------------------------------------------------------------------------------------ colour


def rgb_to_hls(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 RGB `(..., 3, H, W)` -> float HLS on OpenCV's 8-bit scale (H 0..180, L, S 0..255),
    rounded to integers as OpenCV's `cvtColor(..., COLOR_RGB2HLS)` stores them."""
    x = rgb.float() / 255.0
    r, g, b = x.unbind(-3)
    vmax, vmin = x.amax(-3), x.amin(-3)
    diff = vmax - vmin
    light = (vmax + vmin) / 2
    has_hue = diff > 1e-6
    safe = torch.where(has_hue, diff, torch.ones_like(diff))
    denom = torch.where(light < 0.5, vmax + vmin, 2.0 - vmax - vmin)
    sat = torch.where(has_hue, diff / torch.where(has_hue, denom, torch.ones_like(denom)), 0.0)
    hue = torch.where(
        vmax == r,
        (g - b) * 60 / safe,
        torch.where(vmax == g, (b - r) * 60 / safe + 120, (r - g) * 60 / safe + 240),
    )
    hue = torch.where(hue < 0, hue + 360, hue)
    hue = torch.where(has_hue, hue, 0.0)
    return torch.stack([(hue / 2).round(), (light * 255).round(), (sat * 255).round()], dim=-3)


def hls_to_rgb(hls: torch.Tensor) -> torch.Tensor:
    """The inverse of `rgb_to_hls` (8-bit HLS scale in, uint8 RGB out, rounded)."""
    hue, light, sat = hls.unbind(-3)
    hue = hue * 2
    light = light / 255
    sat = sat / 255
    amount = sat * torch.minimum(light, 1 - light)
    channels = []
    for n in (0, 8, 4):  # R, G, B
        k = (n + hue / 30) % 12
        step = torch.clamp(torch.minimum(k - 3, 9 - k), -1, 1)
        channels.append(light - amount * step)
    rgb = torch.stack(channels, dim=-3)
    return (rgb * 255).round().clamp(0, 255).to(torch.uint8)


def sample_hls_offsets(n: int, aug: Augmentation, g: torch.Generator) -> torch.Tensor:
    """`(n, 3)` integer (h, l, s) offsets: `int(U(0,1) * 2r - r)`, truncated toward zero as
    MXNet's C++ does (so each lies in [-r, r])."""
    h = (_uniform(n, g) * aug.random_h * 2 - aug.random_h).trunc()
    s = (_uniform(n, g) * aug.random_s * 2 - aug.random_s).trunc()
    light = (_uniform(n, g) * aug.random_l * 2 - aug.random_l).trunc()
    return torch.stack([h, light, s], dim=1).float()


def shift_hls(batch: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Add per-image (h, l, s) `offsets` to a uint8 RGB batch in HLS, clamping H to 0..180 and
    L, S to 0..255."""
    hls = rgb_to_hls(batch) + offsets[:, :, None, None]
    limits = torch.tensor([180.0, 255.0, 255.0]).view(1, 3, 1, 1)
    return hls_to_rgb(torch.minimum(hls.clamp(min=0), limits))


# ------------------------------------------------------------------------------------ affine


def sample_affine(
    n: int, aug: Augmentation, sizes: torch.Tensor, g: torch.Generator
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """MXNet's warp matrices `(n, 2, 3)` (source -> destination pixel coordinates) for images of
    `sizes` `(n, 2)` = (height, width), and the drawn parameters (`shear`, `angle`, `ratio`)."""
    shear = _uniform(n, g) * aug.max_shear_ratio * 2 - aug.max_shear_ratio
    angle = torch.randint(-aug.max_rotate_angle, aug.max_rotate_angle + 1, (n,), generator=g)
    ratio = _uniform(n, g) * aug.max_aspect_ratio * 2 - aug.max_aspect_ratio + 1
    a = torch.cos(angle.double() / 180 * math.pi)
    b = torch.sin(angle.double() / 180 * math.pi)
    hs = 2 / (1 + ratio)
    ws = ratio * hs
    height, width = sizes[:, 0].double(), sizes[:, 1].double()
    m00, m01 = hs * a - shear * b * ws, hs * b + shear * a * ws
    m10, m11 = -b * ws, a * ws
    tx = (width - (m00 * width + m01 * height)) / 2
    ty = (height - (m10 * width + m11 * height)) / 2
    matrix = torch.stack([torch.stack([m00, m01, tx], 1), torch.stack([m10, m11, ty], 1)], 1)
    return matrix, {"shear": shear, "angle": angle, "ratio": ratio}


def _warp_crops(
    padded: torch.Tensor,
    matrix: torch.Tensor,
    tops: torch.Tensor,
    lefts: torch.Tensor,
    height: int,
    width: int,
    fill: float = 255.0,
) -> torch.Tensor:
    """Window `(top, left, height, width)` of each warped image, sampling only that window:
    `dst(x, y) = src(M^-1 (x, y))` bilinear, outside the source = `fill` (cv::warpAffine)."""
    n, _, hp, wp = padded.shape
    lin = matrix[:, :, :2]
    inv = torch.linalg.inv(lin)
    ys = torch.arange(height, dtype=torch.float64)[None, :, None] + tops[:, None, None]
    xs = torch.arange(width, dtype=torch.float64)[None, None, :] + lefts[:, None, None]
    dx = xs - matrix[:, 0, 2, None, None]
    dy = ys - matrix[:, 1, 2, None, None]
    src_x = inv[:, 0, 0, None, None] * dx + inv[:, 0, 1, None, None] * dy
    src_y = inv[:, 1, 0, None, None] * dx + inv[:, 1, 1, None, None] * dy
    grid = torch.stack([src_x / (wp - 1) * 2 - 1, src_y / (hp - 1) * 2 - 1], dim=-1).float()
    shifted = padded.float() - fill
    out = nnf.grid_sample(shifted, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return (out + fill).round().clamp(0, 255).to(torch.uint8)


# ------------------------------------------------------------------------------------ batches


def _as_list(images: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return list(images.unbind(0)) if isinstance(images, torch.Tensor) else list(images)


def _sizes(images: list[torch.Tensor]) -> torch.Tensor:
    return torch.tensor([[im.shape[1], im.shape[2]] for im in images], dtype=torch.int64)


def center_crop_batch(
    images: torch.Tensor | Sequence[torch.Tensor], height: int, width: int
) -> torch.Tensor:
    """Centre `height x width` crops (MXNet's offset `(size - crop) // 2`), stacked to NCHW."""
    if isinstance(images, torch.Tensor) and images.shape[2:] == (height, width):
        return images
    crops = []
    for im in _as_list(images):
        top, left = (im.shape[1] - height) // 2, (im.shape[2] - width) // 2
        crops.append(im[:, top : top + height, left : left + width])
    return torch.stack(crops)


def augment_batch(
    images: torch.Tensor | Sequence[torch.Tensor],
    height: int,
    width: int,
    aug: Augmentation,
    g: torch.Generator,
) -> torch.Tensor:
    """Augment and crop a batch of uint8 CHW images (any sizes >= the crop) to uint8 NCHW."""
    if not aug.random_crop:
        return center_crop_batch(images, height, width)
    ims = _as_list(images)
    n = len(ims)
    sizes = _sizes(ims)
    tops = (_uniform(n, g) * (sizes[:, 0] - height + 1)).floor().long()
    lefts = (_uniform(n, g) * (sizes[:, 1] - width + 1)).floor().long()
    if aug.affine:
        matrix, _ = sample_affine(n, aug, sizes, g)
        if isinstance(images, torch.Tensor):
            padded = images
        else:
            hp, wp = int(sizes[:, 0].max()), int(sizes[:, 1].max())
            padded = torch.full((n, ims[0].shape[0], hp, wp), 255, dtype=torch.uint8)
            for i, im in enumerate(ims):
                padded[i, :, : im.shape[1], : im.shape[2]] = im
        batch = _warp_crops(padded, matrix, tops.double(), lefts.double(), height, width)
    else:
        batch = torch.stack(
            [
                im[:, t : t + height, le : le + width]
                for im, t, le in zip(ims, tops.tolist(), lefts.tolist(), strict=True)
            ]
        )
    if aug.mirror:
        flip = _uniform(n, g) < 0.5
        batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
    if aug.color and batch.shape[1] == 3:
        batch = shift_hls(batch, sample_hls_offsets(n, aug, g))
    return batch
