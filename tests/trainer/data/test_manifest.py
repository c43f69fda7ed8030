"""Augmented manifests and multi-label data in all three forms."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from trainer.data import DataConfig, build_loaders, read_lst, read_manifest
from trainer.errors import DataError
from trainer.hyperparameters import parse_hyperparameters


def _hp(**values: object):
    base = {
        "num_classes": 10,
        "num_training_samples": 100,
        "image_shape": "3,64,64",
        "mini_batch_size": 25,
        "num_layers": 20,
    }
    return parse_hyperparameters({**base, **values})


def _multi_hot(ids: list[int]) -> list[int]:
    return [1 if c in ids else 0 for c in range(10)]


def test_class_id_manifest_gives_the_same_multi_hot_labels_as_the_lst(assets: Path) -> None:
    root = assets / "cifar10-multilabel"
    from_manifest = build_loaders(
        _hp(multi_label=1),
        DataConfig(root, content_type="augmented-manifest", label_format="class-id"),
        seed=0,
    )
    from_lst = build_loaders(_hp(multi_label=1), DataConfig(root, content_type="image"), seed=0)
    assert from_manifest.content_type == "augmented-manifest"
    assert torch.equal(from_manifest.train.labels, from_lst.train.labels)
    assert torch.equal(from_manifest.class_counts, from_lst.class_counts)
    x, y = next(iter(from_manifest.train))
    assert x.shape == (25, 3, 64, 64) and y.dtype == torch.float32 and y.shape == (25, 10)


def _manifest_copy(assets: Path, tmp_path: Path, rows: dict[str, list[dict]]) -> Path:
    root = tmp_path / "m"
    shutil.copytree(assets / "cifar10-multilabel", root)
    for channel, lines in rows.items():
        (root / f"{channel}.manifest").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return root


def _lines(assets: Path, channel: str) -> list[dict]:
    text = (assets / "cifar10-multilabel" / f"{channel}.manifest").read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_multi_hot_manifest_with_custom_attribute_names_and_absolute_paths(assets, tmp_path):
    rows = {}
    for channel in ("train", "validation"):
        rows[channel] = [
            {
                "image": str((assets / "cifar10-multilabel" / r["source-ref"]).resolve()),
                "labels": [str(v) for v in _multi_hot(r["class"])],
                "labels-metadata": {"x": 1},
            }
            for r in _lines(assets, channel)
        ]
    root = _manifest_copy(assets, tmp_path, rows)
    data = DataConfig(root, "augmented-manifest", ("image", "labels"))
    loaders = build_loaders(_hp(multi_label=1), data, seed=0)
    expected = read_lst(assets / "cifar10-multilabel" / "train_lst" / "train.lst")
    assert loaders.train.labels.tolist() == [list(e.labels) for e in expected]


def test_single_label_manifest_with_string_labels(assets: Path, tmp_path: Path) -> None:
    rows = {}
    for channel in ("train", "validation"):
        rows[channel] = [
            {"source-ref": r["source-ref"], "class": str(r["class"][0])}
            for r in _lines(assets, channel)
        ]
    root = _manifest_copy(assets, tmp_path, rows)
    with pytest.raises(DataError, match="holds both image channels .* and an augmented manifest"):
        build_loaders(_hp(), DataConfig(root), seed=0)
    loaders = build_loaders(_hp(), DataConfig(root, content_type="augmented-manifest"), seed=0)
    assert loaders.train.labels.dtype == torch.int64
    assert loaders.train.labels.tolist() == [r["class"][0] for r in _lines(assets, "train")]


def test_manifest_line_that_is_not_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "train.manifest"
    path.write_text('{"source-ref": "a.jpg", "class": 1}\n{"source-ref": "b.jpg", class: 2}\n')
    with pytest.raises(DataError, match=r"train\.manifest, line 2: not valid JSON"):
        read_manifest(
            path,
            attribute_names=("source-ref", "class"),
            multi_label=False,
            label_format="multi-hot",
            num_classes=10,
        )


def test_manifest_line_without_the_label_attribute_names_it(tmp_path: Path) -> None:
    path = tmp_path / "train.manifest"
    path.write_text('{"source-ref": "a.jpg", "class": 1}\n{"source-ref": "b.jpg", "cls": 2}\n')
    with pytest.raises(DataError, match=r"line 2: missing attribute 'class' .* \['cls', "):
        read_manifest(
            path,
            attribute_names=("source-ref", "class"),
            multi_label=False,
            label_format="multi-hot",
            num_classes=10,
        )


def test_class_id_at_or_above_num_classes_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "train.manifest"
    path.write_text('{"source-ref": "a.jpg", "class": [1, 10]}\n')
    with pytest.raises(DataError, match=r"line 1: class id 10 is outside \[0, num_classes=10\)"):
        read_manifest(
            path,
            attribute_names=("source-ref", "class"),
            multi_label=True,
            label_format="class-id",
            num_classes=10,
        )


def test_remote_source_ref_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "train.manifest"
    path.write_text('{"source-ref": "s3://bucket/a.jpg", "class": 1}\n')
    with pytest.raises(DataError, match="remote URI; copy the images locally"):
        read_manifest(
            path,
            attribute_names=("source-ref", "class"),
            multi_label=False,
            label_format="multi-hot",
            num_classes=10,
        )


def test_multi_label_lst_row_with_wrong_column_count_names_the_line(assets, tmp_path) -> None:
    root = tmp_path / "ml"
    shutil.copytree(assets / "cifar10-multilabel", root)
    with pytest.raises(DataError, match=r"train\.lst, line 1: 10 label value\(s\), .*=9"):
        build_loaders(
            _hp(multi_label=1, num_classes=9), DataConfig(root, content_type="image"), seed=0
        )


def test_multi_label_lst_without_multi_label_says_to_set_it(assets: Path) -> None:
    with pytest.raises(DataError, match="multi_label=0 needs exactly one"):
        build_loaders(
            _hp(), DataConfig(assets / "cifar10-multilabel", content_type="image"), seed=0
        )
