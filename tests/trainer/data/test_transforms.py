"""The seed's augmentation: each range stays in its bounds and is covered, on real images."""

from __future__ import annotations

import colorsys
import math
from pathlib import Path

import pytest
import torch

from trainer.data import AUGMENTATIONS, Augmentation, DataConfig, augment_batch, build_loaders
from trainer.data.transforms import (
    _warp_crops,
    hls_to_rgb,
    rgb_to_hls,
    sample_affine,
    sample_hls_offsets,
)
from trainer.hyperparameters import parse_hyperparameters

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def real(assets: Path) -> torch.Tensor:
    """The 300 real 32x32 training images of the committed sample, uint8 NCHW."""
    hp = parse_hyperparameters(
        {"num_classes": 10, "num_training_samples": 300, "image_shape": "3,32,32", "num_layers": 20}
    )
    cache = build_loaders(hp, DataConfig(assets / "cifar10"), seed=0).train.cache.dense
    assert isinstance(cache, torch.Tensor)
    return cache


def test_rgb_to_hls_matches_colorsys_on_opencv_8bit_scale(real: torch.Tensor) -> None:
    pixels = real[:20].permute(0, 2, 3, 1).reshape(-1, 3)[::7]
    ours = rgb_to_hls(pixels.T.reshape(1, 3, -1, 1)).reshape(3, -1).T
    for (r, g, b), (h, li, s) in zip(pixels.tolist(), ours.tolist(), strict=True):
        eh, el, es = colorsys.rgb_to_hls(r / 255, g / 255, b / 255)
        assert abs(li - round(el * 255)) <= 1 and abs(s - round(es * 255)) <= 1
        if es > 0.05:
            assert min(abs(h - eh * 180), 180 - abs(h - eh * 180)) <= 1


def test_hls_round_trip_keeps_real_images(real: torch.Tensor) -> None:
    back = hls_to_rgb(rgb_to_hls(real[:50]))
    assert (back.int() - real[:50].int()).abs().float().mean() < 1.0


def test_sampled_offsets_stay_in_bounds_and_cover_them() -> None:
    g = torch.Generator().manual_seed(0)
    offsets = sample_hls_offsets(20000, AUGMENTATIONS["crop_color"], g)
    for column, bound in ((0, 36), (1, 50), (2, 50)):  # h, l, s
        values = set(offsets[:, column].int().tolist())
        assert values <= set(range(-bound, bound + 1))
        assert set(range(-bound + 1, bound)) <= values  # every integer inside is drawn


def _measured_shifts(before: torch.Tensor, after: torch.Tensor) -> list[tuple[float, ...]]:
    """Per image, the median (h, l, s) change over pixels far enough from every clamp."""
    h0, l0, s0 = rgb_to_hls(before).unbind(1)
    h1, l1, s1 = rgb_to_hls(after).unbind(1)
    keep = (h0 > 40) & (h0 < 140) & (l0 > 70) & (l0 < 185) & (s0 > 60) & (s0 < 195)
    out = []
    for i in range(len(before)):
        if keep[i].sum() >= 20:
            k = keep[i]
            out.append(
                tuple(
                    float((a[i][k] - b[i][k]).median()) for a, b in ((h1, h0), (l1, l0), (s1, s0))
                )
            )
    return out


def test_measured_colour_shifts_on_real_images_stay_in_bounds_and_cover_them(real) -> None:
    aug = Augmentation(random_crop=True, mirror=False, random_h=36, random_s=50, random_l=50)
    shifts = []
    for seed in range(8):
        after = augment_batch(real, 32, 32, aug, torch.Generator().manual_seed(seed))
        shifts += _measured_shifts(real, after)
    assert len(shifts) > 300
    h, li, s = (torch.tensor(c) for c in zip(*shifts, strict=True))
    for values, bound in ((h, 36), (li, 50), (s, 50)):
        assert values.abs().max() <= bound + 1  # +1: rounding of the uint8 round trip
        assert values.max() >= bound - 6 and values.min() <= -(bound - 6)
        assert abs(float(values.float().mean())) < bound / 5  # centred on zero


def test_random_crops_cover_every_offset_and_flip_half(real: torch.Tensor) -> None:
    big = torch.nn.functional.pad(real[:1].float(), (4, 4, 4, 4)).to(torch.uint8)
    marked = big.clone()
    marked[0, :, 0, 0] = 255  # find where each crop came from by a unique corner pattern
    seen, flips = set(), 0
    src = marked.expand(400, -1, -1, -1).contiguous()
    out = augment_batch(src, 32, 32, AUGMENTATIONS["crop"], torch.Generator().manual_seed(1))
    for crop in out:
        for top in range(9):
            for left in range(9):
                window = marked[0, :, top : top + 32, left : left + 32]
                if torch.equal(crop, window):
                    seen.add((top, left))
                elif torch.equal(crop, window.flip(-1)):
                    seen.add((top, left))
                    flips += 1
    assert len(seen) == 81  # all (40-32+1)^2 offsets
    assert 140 < flips < 260


def test_affine_parameters_follow_mxnet_bounds_and_cover_them() -> None:
    sizes = torch.tensor([[32, 32]]).expand(5000, 2)
    _, params = sample_affine(
        5000, AUGMENTATIONS["crop_color_transform"], sizes, torch.Generator().manual_seed(0)
    )
    assert set(params["angle"].tolist()) == set(range(-10, 11))
    assert params["shear"].abs().max() <= 0.1 and params["shear"].abs().max() > 0.099
    assert params["ratio"].min() >= 0.75 and params["ratio"].max() <= 1.25
    assert params["ratio"].min() < 0.751 and params["ratio"].max() > 1.249


def test_warp_matrix_is_mxnet_formula() -> None:
    aug = Augmentation(max_rotate_angle=10, max_shear_ratio=0.1, max_aspect_ratio=0.25)
    sizes = torch.tensor([[30, 40]])
    matrix, p = sample_affine(1, aug, sizes, torch.Generator().manual_seed(5))
    s, angle, ratio = float(p["shear"][0]), int(p["angle"][0]), float(p["ratio"][0])
    a, b = math.cos(angle / 180 * math.pi), math.sin(angle / 180 * math.pi)
    hs = 2 / (1 + ratio)
    ws = ratio * hs
    m = [[hs * a - s * b * ws, hs * b + s * a * ws], [-b * ws, a * ws]]
    tx = (40 - (m[0][0] * 40 + m[0][1] * 30)) / 2
    ty = (30 - (m[1][0] * 40 + m[1][1] * 30)) / 2
    expected = torch.tensor([[m[0][0], m[0][1], tx], [m[1][0], m[1][1], ty]], dtype=torch.float64)
    assert torch.allclose(matrix[0], expected)


def test_warp_identity_is_exact_and_half_turn_flips_both_ways(real: torch.Tensor) -> None:
    image = real[:2]
    identity = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=torch.float64).expand(2, 2, 3)
    zero = torch.zeros(2, dtype=torch.float64)
    assert torch.equal(_warp_crops(image, identity, zero, zero, 32, 32), image)
    half = torch.tensor([[-1.0, 0, 31], [0, -1.0, 31]], dtype=torch.float64).expand(2, 2, 3)
    assert torch.equal(_warp_crops(image, half, zero, zero, 32, 32), image.flip(-1).flip(-2))


def test_rotation_fills_uncovered_corners_with_255(real: torch.Tensor) -> None:
    black = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    a, b = math.cos(math.radians(10)), math.sin(math.radians(10))
    m = torch.tensor([[[a, b, 0.0], [-b, a, 0.0]]], dtype=torch.float64)
    m[0, 0, 2] = (32 - (a * 32 + b * 32)) / 2
    m[0, 1, 2] = (32 - (-b * 32 + a * 32)) / 2
    zero = torch.zeros(1, dtype=torch.float64)
    out = _warp_crops(black, m, zero, zero, 32, 32)
    assert out[0, :, 0, 0].tolist() == [255, 255, 255]  # a corner rotated out of the image
    assert out[0, :, 16, 16].tolist() == [0, 0, 0]


def test_crop_color_transform_batches_are_uint8_of_the_crop_and_change_images(real) -> None:
    g = torch.Generator().manual_seed(0)
    out = augment_batch(real[:64], 28, 28, AUGMENTATIONS["crop_color_transform"], g)
    assert out.dtype == torch.uint8 and out.shape == (64, 3, 28, 28)
    centre = real[:64, :, 2:30, 2:30]
    assert (out.float() - centre.float()).abs().mean() > 10


def test_validation_is_only_resized_and_centre_cropped(assets: Path) -> None:
    hp = parse_hyperparameters(
        {
            "num_classes": 10,
            "num_training_samples": 300,
            "image_shape": "3,30,30",
            "resize": 34,
            "num_layers": 20,
            "augmentation_type": "crop_color_transform",
            "mini_batch_size": 100,
        }
    )
    loaders = build_loaders(hp, DataConfig(assets / "cifar10"), seed=0)
    cache = loaders.validation.cache.dense
    assert isinstance(cache, torch.Tensor) and cache.shape[2:] == (34, 34)
    for epoch in (0, 1):
        loaders.set_epoch(epoch)
        images, _ = next(iter(loaders.validation))
        assert torch.equal(images, cache[:, :, 2:32, 2:32])
