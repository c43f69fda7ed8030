"""Hyperparameters and RecordIO files that issue 17's fuzzing found to end in a traceback or in an
error that did not name the record: each is now one error naming the field, file and record."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from trainer.data import RecordReader
from trainer.errors import DataError, HyperparameterError
from trainer.hyperparameters import parse_hyperparameters


@pytest.mark.parametrize("name", [1, None, True, 0.5])
def test_a_name_that_is_not_text_is_an_unknown_hyperparameter(name: object) -> None:
    with pytest.raises(HyperparameterError) as caught:
        parse_hyperparameters({"num_classes": "2", "num_training_samples": "4", name: "3"})  # type: ignore[dict-item]
    assert caught.value.problems == [
        f"unknown hyperparameter '{name}' (a name is text, got {name!r})"
    ]


def _copy(assets: Path, tmp_path: Path) -> tuple[Path, Path]:
    folder = assets / "recordio" / "cifar10" / "validation"
    rec = Path(shutil.copy(folder / "cifar10-validation.rec", tmp_path))
    idx = Path(shutil.copy(folder / "cifar10-validation.idx", tmp_path))
    return rec, idx


def test_an_index_whose_last_record_ends_early_names_that_record(assets, tmp_path) -> None:
    rec, idx = _copy(assets, tmp_path)
    lines = idx.read_text().splitlines(keepends=True)
    idx.write_text("".join(lines[:-1]))  # the .rec holds one record more than the .idx lists
    with pytest.raises(DataError, match=f"the last of them \\(record {len(lines) - 2}\\) ends"):
        RecordReader(rec, idx)


def test_a_file_cut_inside_a_split_record_names_that_record(tmp_path) -> None:
    from trainer.data import RecordWriter
    from trainer.data.recordio import MAGIC

    rec = tmp_path / "split.rec"
    payload = b"abcd" + MAGIC.to_bytes(4, "little") + b"efgh"  # split at the aligned magic
    with RecordWriter(rec) as writer:
        writer.write(b"0123")
        writer.write(payload)
    first_part_end = 8 + 4 + 8 + 4  # record 0, then record 1's first part
    rec.write_bytes(rec.read_bytes()[:first_part_end])
    with pytest.raises(DataError, match=r"split\.rec, record 1 at byte 12: the file ends inside"):
        RecordReader(rec)
