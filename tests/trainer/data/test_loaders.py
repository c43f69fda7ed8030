"""build_loaders on the committed real samples: shapes, dtypes, order, crops, checks."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch

from trainer.data import DataConfig, build_loaders
from trainer.data.images import decode
from trainer.errors import DataError
from trainer.hyperparameters import parse_hyperparameters

torch.set_num_threads(2)


def _hp(**values: object):
    base = {
        "num_classes": 10,
        "num_training_samples": 300,
        "image_shape": "3,28,28",
        "mini_batch_size": 64,
        "num_layers": 20,
    }
    return parse_hyperparameters({**base, **values})


def test_image_channels_give_uint8_batches_of_image_shape_and_int64_labels(assets: Path) -> None:
    loaders = build_loaders(_hp(), DataConfig(assets / "cifar10"), seed=0, device="cpu")
    assert loaders.content_type == "image"
    assert (loaders.num_train, loaders.num_validation) == (300, 100)
    sizes, seen = [], []
    for images, labels in loaders.train:
        assert images.dtype == torch.uint8 and images.shape[1:] == (3, 28, 28)
        assert labels.dtype == torch.int64
        sizes.append(len(images))
        seen += labels.tolist()
    assert sizes == [64, 64, 64, 64, 44]  # nothing dropped
    assert sorted(seen) == sorted(loaders.train.labels.tolist())
    assert seen != sorted(seen)  # the .lst is sorted by class; training must shuffle
    assert loaders.class_counts.tolist() == [30] * 10
    assert len(loaders.train) == 5


def test_validation_is_in_list_order_and_centre_cropped(assets: Path) -> None:
    loaders = build_loaders(_hp(), DataConfig(assets / "cifar10"), seed=0, device="cpu")
    images, labels = next(iter(loaders.validation))
    first = (assets / "cifar10" / "validation_lst" / "validation.lst").read_text().split("\n")[0]
    _, label, rel = first.split("\t")
    raw = decode((assets / "cifar10" / "validation" / rel).read_bytes(), 3, name=rel)
    assert labels[0].item() == int(label)
    assert torch.equal(images[0], raw[:, 2:30, 2:30])  # (32 - 28) // 2 = 2


def test_order_and_augmentation_are_a_function_of_seed_and_epoch(assets: Path) -> None:
    hp = _hp(augmentation_type="crop_color_transform")
    a = build_loaders(hp, DataConfig(assets / "cifar10"), seed=3, device="cpu")
    b = build_loaders(hp, DataConfig(assets / "cifar10"), seed=3, device="cpu")
    first = [(x.clone(), y.clone()) for x, y in a.train]
    again = list(b.train)
    assert all(
        torch.equal(x1, x2) and torch.equal(y1, y2)
        for (x1, y1), (x2, y2) in zip(first, again, strict=True)
    )
    a.set_epoch(1)
    other = next(iter(a.train))
    assert not torch.equal(other[1], first[0][1])


def test_resize_scales_the_shorter_side_before_cropping(assets: Path) -> None:
    hp = _hp(resize=40, image_shape="3,36,36")
    loaders = build_loaders(hp, DataConfig(assets / "cifar10"), seed=0, device="cpu")
    images, _ = next(iter(loaders.validation))
    assert images.shape[1:] == (3, 36, 36)


def test_streaming_path_matches_the_cached_path(assets: Path) -> None:
    hp = _hp(augmentation_type="crop_color")
    cached = build_loaders(hp, DataConfig(assets / "cifar10"), seed=1, device="cpu")
    streamed = build_loaders(
        hp, DataConfig(assets / "cifar10"), seed=1, device="cpu", cache_bytes=0
    )
    assert streamed.train.cache is None
    for (x1, y1), (x2, y2) in zip(cached.train, streamed.train, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def _copy(assets: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(assets / "cifar10", root)
    return root


def test_an_image_smaller_than_image_shape_is_an_error_naming_it(assets: Path) -> None:
    with pytest.raises(DataError, match=r"airplane/\d+\.jpg: image is 32x32 .* smaller than"):
        build_loaders(_hp(image_shape="3,40,40"), DataConfig(assets / "cifar10"), seed=0)


def test_missing_channel_directory_is_named(assets: Path, tmp_path: Path) -> None:
    root = _copy(assets, tmp_path)
    shutil.rmtree(root / "validation")
    with pytest.raises(DataError, match=r"channel directory .*validation is missing"):
        build_loaders(_hp(), DataConfig(root, content_type="image"), seed=0)


def test_lst_row_pointing_at_a_missing_file_names_the_line(assets: Path, tmp_path: Path) -> None:
    root = _copy(assets, tmp_path)
    lst = root / "train_lst" / "train.lst"
    line5 = lst.read_text().splitlines()[4].split("\t")[2]
    (root / "train" / line5).unlink()
    problem = rf"train\.lst, line 5: image \S*{line5} not found"
    with pytest.raises(DataError, match=problem):
        build_loaders(_hp(), DataConfig(root), seed=0)
    with pytest.raises(DataError, match=problem):  # streamed: found when read, no file pass
        loaders = build_loaders(_hp(), DataConfig(root), seed=0, cache_bytes=0)
        for _ in loaders.train:
            pass


def test_label_outside_num_classes_names_the_line(assets: Path, tmp_path: Path) -> None:
    root = _copy(assets, tmp_path)
    lst = root / "train_lst" / "train.lst"
    rows = lst.read_text().splitlines()
    cols = rows[6].split("\t")
    rows[6] = "\t".join([cols[0], "10", cols[2]])
    lst.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"line 7: label 10 is outside \[0, num_classes=10\)"):
        build_loaders(_hp(), DataConfig(root), seed=0)


def test_num_training_samples_far_from_the_count_warns_with_both_numbers(assets: Path) -> None:
    with pytest.warns(
        UserWarning, match="num_training_samples=5000 but the train channel holds 300"
    ):
        build_loaders(_hp(num_training_samples=5000), DataConfig(assets / "cifar10"), seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_loaders(_hp(num_training_samples=290), DataConfig(assets / "cifar10"), seed=0)


def test_unknown_layout_lists_the_expected_ones(tmp_path: Path) -> None:
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DataError, match="cannot tell the content type .* train_lst"):
        build_loaders(_hp(), DataConfig(tmp_path), seed=0)


def test_data_config_rejects_unknown_names() -> None:
    with pytest.raises(DataError, match="content_type must be one of") as info:
        DataConfig(Path("."), content_type="tfrecord", label_format="onehot")
    assert len(info.value.problems) == 2


def test_corrupt_jpeg_in_the_middle_names_the_file(assets: Path, tmp_path: Path) -> None:
    root = _copy(assets, tmp_path)
    rel = (root / "train_lst" / "train.lst").read_text().splitlines()[150].split("\t")[2]
    image = root / "train" / rel
    image.write_bytes(image.read_bytes()[:600])
    problem = rf"{rel}: (cannot decode the image|not a readable image)"
    with pytest.raises(DataError, match=problem):
        build_loaders(_hp(), DataConfig(root), seed=0)
    with pytest.raises(DataError, match=problem):  # the streaming path too
        loaders = build_loaders(_hp(), DataConfig(root), seed=0, cache_bytes=0)
        for _ in loaders.train:
            pass


def test_greyscale_images_become_three_channels_with_one_notice(assets, tmp_path) -> None:
    from PIL import Image

    root = _copy(assets, tmp_path)
    rows = (root / "train_lst" / "train.lst").read_text().splitlines()
    greys = [rows[i].split("\t")[2] for i in (10, 20, 30)]
    for rel in greys:
        with Image.open(root / "train" / rel) as img:
            img.convert("L").save(root / "train" / rel, quality=95)
    import trainer.data.images as images_module

    images_module._reported_grey = False
    with pytest.warns(UserWarning, match="greyscale image converted to 3 channels") as record:
        loaders = build_loaders(_hp(image_shape="3,32,32"), DataConfig(root), seed=0)
    assert sum("greyscale" in str(w.message) for w in record) == 1
    cache = loaders.train.cache.dense
    assert isinstance(cache, torch.Tensor)
    index = [r.split("\t")[2] for r in rows].index(greys[0])
    grey = cache[index]
    assert grey.shape == (3, 32, 32)
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])


def test_shards_split_each_epoch_between_ranks_with_equal_batches(assets: Path) -> None:
    hp = _hp(mini_batch_size=32)
    parts = [
        build_loaders(hp, DataConfig(assets / "cifar10"), seed=2, shard=(r, 4)) for r in range(4)
    ]
    full = build_loaders(hp, DataConfig(assets / "cifar10"), seed=2)
    seen: list[int] = []
    for part in parts:
        assert len(part.train) == 3  # ceil(ceil(300 / 4) / 32)
        labels = [y for _, batch in part.train for y in batch.tolist()]
        assert len(labels) == 75
        seen += labels
        assert part.num_validation == 100
    assert sorted(seen) == sorted(full.train.labels.tolist())
