"""MXNet RecordIO: reading MXNet-written files, writing the same bytes, and corrupt input."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest
import torch

from trainer.data import (
    DataConfig,
    RecordReader,
    RecordWriter,
    build_loaders,
    pack_image_record,
    read_index,
    read_lst,
    split_records,
    unpack_image_record,
)
from trainer.data.images import decode
from trainer.data.pack import pack_images
from trainer.data.recordio import MAGIC
from trainer.errors import DataError
from trainer.hyperparameters import parse_hyperparameters

SHARED = Path("/work/shared/data/mxnet-recordio")
SINGLE = ("cifar10", "train", "cifar10-train")
MULTI = ("cifar10-multilabel", "train", "cifar10-multilabel-train")


def _rec(assets: Path, which: tuple[str, str, str]) -> Path:
    folder, channel, name = which
    return assets / "recordio" / folder / channel / f"{name}.rec"


@pytest.mark.parametrize("which", [SINGLE, MULTI], ids=["single", "multi"])
def test_mxnet_written_records_carry_the_lst_labels_ids_and_images(assets, which) -> None:
    rec = _rec(assets, which)
    reader = RecordReader(rec, rec.with_suffix(".idx"))
    rows = read_lst(rec.parents[1] / f"{which[2]}.lst")
    assert len(reader) == len(rows)
    for n, row in enumerate(rows):
        record = reader.read_image(n)
        assert record.id == row.index and record.id2 == 0
        assert record.labels == row.labels
        image = decode(record.image, 3, name="r")
        assert image.shape[0] == 3 and image.dtype == torch.uint8
    flags = {struct.unpack_from("<I", reader.read(n))[0] for n in range(len(reader))}
    assert flags == ({0} if which is SINGLE else {10})  # im2rec: label in header / --pack-label


@pytest.mark.parametrize("which", [SINGLE, MULTI], ids=["single", "multi"])
def test_rewriting_mxnet_payloads_reproduces_the_files_byte_for_byte(assets, which, tmp_path):
    rec = _rec(assets, which)
    reader = RecordReader(rec, rec.with_suffix(".idx"))
    keys = [key for key, _ in read_index(rec.with_suffix(".idx"))]
    out = tmp_path / "copy.rec"
    with RecordWriter(out, out.with_suffix(".idx")) as writer:
        for n, key in enumerate(keys):
            record = reader.read_image(n)
            labels = record.labels[0] if which is SINGLE else record.labels
            payload = pack_image_record(labels, record.image, id=record.id)
            assert payload == reader.read(n)  # same header layout as MXNet's pack()
            writer.write(payload, key=key)
    assert out.read_bytes() == rec.read_bytes()
    assert out.with_suffix(".idx").read_text() == rec.with_suffix(".idx").read_text()


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data (the full MXNet files)")
@pytest.mark.parametrize("which", [SINGLE, MULTI], ids=["single", "multi"])
def test_committed_records_are_the_mxnet_bytes_verbatim(assets, which) -> None:
    rec = _rec(assets, which)
    mine = RecordReader(rec, rec.with_suffix(".idx"))
    theirs_path = SHARED / rec.name
    theirs = dict(read_index(theirs_path.with_suffix(".idx")))
    ends = sorted(theirs.values()) + [theirs_path.stat().st_size]
    with theirs_path.open("rb") as f:
        for n, (key, offset) in enumerate(read_index(rec.with_suffix(".idx"))):
            start = theirs[key]
            f.seek(start)
            raw = f.read(ends[ends.index(start) + 1] - start)
            assert raw == rec.read_bytes()[offset : offset + len(raw)]
            assert len(mine.read(n)) <= len(raw) - 8


def test_payload_containing_the_magic_is_split_like_dmlc(tmp_path: Path) -> None:
    magic = struct.pack("<I", MAGIC)
    payload = b"abcd" + magic + b"efgh" + magic + b"xy"
    out = tmp_path / "m.rec"
    with RecordWriter(out) as writer:
        writer.write(payload)
    expected = (
        magic
        + struct.pack("<I", (1 << 29) | 4)
        + b"abcd"
        + magic
        + struct.pack("<I", (2 << 29) | 4)
        + b"efgh"
        + magic
        + struct.pack("<I", (3 << 29) | 2)
        + b"xy\0\0"
    )
    assert out.read_bytes() == expected
    assert RecordReader(out).read(0) == payload


def test_unaligned_magic_is_not_split(tmp_path: Path) -> None:
    payload = b"ab" + struct.pack("<I", MAGIC) + b"c"
    out = tmp_path / "u.rec"
    with RecordWriter(out) as writer:
        writer.write(payload)
    assert len(out.read_bytes()) == 8 + 8
    assert RecordReader(out).read(0) == payload


@pytest.mark.parametrize("which", [SINGLE, MULTI], ids=["single", "multi"])
def test_split_records_of_a_whole_rec_gives_what_the_reader_reads(assets, which) -> None:
    rec = _rec(assets, which)
    reader = RecordReader(rec)
    assert split_records(rec.read_bytes()) == [reader.read(i) for i in range(len(reader))]


def test_split_records_joins_parts_and_names_what_is_wrong(tmp_path: Path) -> None:
    magic = struct.pack("<I", MAGIC)
    payloads = [b"abcd" + magic + b"efgh" + magic + b"xy", b"one", b""]
    out = tmp_path / "m.rec"
    with RecordWriter(out) as writer:
        for payload in payloads:
            writer.write(payload)
    data = out.read_bytes()
    assert split_records(data) == payloads
    with pytest.raises(DataError, match="body, record 0 at byte 0: bad magic"):
        split_records(b"\xff\xd8\xff\xe0 a JPEG, not RecordIO")
    with pytest.raises(DataError, match="record 0 at byte 0: the record says 4 bytes"):
        split_records(data[:10])
    with pytest.raises(DataError, match="inside a record split into parts"):
        split_records(data[:24])
    with pytest.raises(DataError, match=r"flag 2\) out of order"):
        split_records(data[12:])


def _corrupt(assets: Path, tmp_path: Path) -> Path:
    root = tmp_path / "rec"
    shutil.copytree(assets / "recordio" / "cifar10", root)
    return root


def _hp(**values: object):
    base = {
        "num_classes": 10,
        "num_training_samples": 200,
        "image_shape": "3,32,32",
        "mini_batch_size": 32,
        "num_layers": 20,
    }
    return parse_hyperparameters({**base, **values})


def test_truncated_rec_names_file_and_record(assets: Path, tmp_path: Path) -> None:
    root = _corrupt(assets, tmp_path)
    rec = root / "train" / "cifar10-train.rec"
    data = rec.read_bytes()
    rec.write_bytes(data[:-100])
    rec.with_suffix(".idx").unlink()
    with pytest.raises(DataError, match=r"cifar10-train\.rec, record 199 at byte \d+: .*truncated"):
        build_loaders(_hp(), DataConfig(root), seed=0)


def test_bad_magic_names_the_record(assets: Path, tmp_path: Path) -> None:
    root = _corrupt(assets, tmp_path)
    rec = root / "train" / "cifar10-train.rec"
    offsets = dict(read_index(rec.with_suffix(".idx")))
    data = bytearray(rec.read_bytes())
    third = sorted(offsets.values())[2]
    data[third : third + 4] = b"JUNK"
    rec.write_bytes(bytes(data))
    with pytest.raises(DataError, match=rf"record 2 at byte {third}: bad magic"):
        build_loaders(_hp(), DataConfig(root), seed=0)


def test_garbage_image_header_names_the_record(tmp_path: Path) -> None:
    root = tmp_path / "g"
    for channel in ("train", "validation"):
        with RecordWriter(root / channel / "x.rec") as writer:
            writer.write(struct.pack("<IfQQ", 0, 1.0, 0, 0) + b"\xff\xd8")
            writer.write(struct.pack("<IfQQ", 900, 0.0, 1, 0) + b"garbage")
    with pytest.raises(DataError, match=r"x\.rec, record 1 at byte 36: the image header says 900"):
        build_loaders(_hp(), DataConfig(root), seed=0)


def test_idx_not_matching_rec_is_an_error(assets: Path, tmp_path: Path) -> None:
    root = _corrupt(assets, tmp_path)
    idx = root / "train" / "cifar10-train.idx"
    lines = idx.read_text().splitlines()
    idx.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match=r"\.idx lists 199 records, but .* ends at byte \d+ of"):
        build_loaders(_hp(), DataConfig(root), seed=0)
    key, offset = lines[5].split("\t")
    lines[5] = f"{key}\t{int(offset) + 4}"
    idx.write_text("\n".join(lines) + "\n")
    stale = rf"record 5 at byte {int(offset) + 4}: bad magic .*cifar10-train\.idx, line 6 gives"
    with pytest.raises(DataError, match=stale):
        build_loaders(_hp(), DataConfig(root), seed=0)


def test_corrupt_jpeg_in_a_record_names_the_record(assets: Path, tmp_path: Path) -> None:
    root = _corrupt(assets, tmp_path)
    rec = root / "train" / "cifar10-train.rec"
    reader = RecordReader(rec)
    out = tmp_path / "new.rec"
    with RecordWriter(out, out.with_suffix(".idx")) as writer:
        for n in range(len(reader)):
            record = reader.read_image(n)
            image = record.image[: len(record.image) // 3] if n == 7 else record.image
            writer.write(pack_image_record(record.labels[0], image, id=record.id))
    shutil.move(out, rec)
    shutil.move(out.with_suffix(".idx"), rec.with_suffix(".idx"))
    with pytest.raises(DataError, match=r"cifar10-train\.rec, record 7"):
        build_loaders(_hp(), DataConfig(root), seed=0)


def test_trains_batches_from_recordio_single_and_multi_label(assets: Path) -> None:
    single = build_loaders(
        _hp(augmentation_type="crop"), DataConfig(assets / "recordio/cifar10"), seed=0
    )
    assert single.content_type == "recordio" and single.num_train == 200
    assert single.class_counts.tolist() == [20] * 10
    multi = build_loaders(
        _hp(multi_label=1, image_shape="3,64,64", num_training_samples=60),
        DataConfig(assets / "recordio/cifar10-multilabel"),
        seed=0,
    )
    images, labels = next(iter(multi.train))
    assert labels.dtype == torch.float32 and labels.shape == (32, 10)
    assert images.shape == (32, 3, 64, 64)
    assert multi.class_counts.sum() == int(multi.train.labels.sum())


def test_multi_label_record_with_wrong_label_count_names_it(assets: Path) -> None:
    with pytest.raises(DataError, match=r"record 0: 10 label value\(s\), but multi_label=1 .*=12"):
        build_loaders(
            _hp(multi_label=1, num_classes=12, image_shape="3,64,64"),
            DataConfig(assets / "recordio/cifar10-multilabel"),
            seed=0,
        )


def test_pack_writes_what_the_reader_and_loader_read(assets: Path, tmp_path: Path) -> None:
    lst = assets / "cifar10" / "train_lst" / "train.lst"
    result = pack_images(
        lst, assets / "cifar10" / "train", tmp_path / "train" / "t.rec", resize=40, quality=90
    )
    rows = read_lst(lst)
    reader = RecordReader(result.rec_path, result.idx_path)
    assert len(reader) == len(rows) == result.records
    record = reader.read_image(3)
    assert record.id == rows[3].index and record.labels == rows[3].labels
    assert decode(record.image, 3, name="x").shape == (3, 40, 40)
    assert [k for k, _ in read_index(result.idx_path)] == [r.index for r in rows]


def test_pack_packs_multi_label_rows_like_im2rec_pack_label(assets: Path, tmp_path: Path) -> None:
    ml = assets / "cifar10-multilabel"
    result = pack_images(
        ml / "validation_lst" / "validation.lst",
        ml / "validation",
        tmp_path / "v.rec",
        encoding="png",
    )
    payload = RecordReader(result.rec_path).read(0)
    flag, label = struct.unpack_from("<If", payload)
    assert (flag, label) == (10, 0.0)
    assert unpack_image_record(payload).image[:4] == b"\x89PNG"


def test_pack_names_the_line_of_a_missing_image(assets: Path, tmp_path: Path) -> None:
    lst = tmp_path / "x.lst"
    lst.write_text("0\t1\tairplane/nothere.jpg\n")
    with pytest.raises(DataError, match=r"x\.lst, line 1: image .*nothere\.jpg not found"):
        pack_images(lst, assets / "cifar10" / "train", tmp_path / "x.rec")
    assert not (tmp_path / "x.rec").exists()


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data (the full MXNet files)")
@pytest.mark.parametrize("name", ["cifar10-validation", "cifar10-multilabel-validation"])
def test_whole_mxnet_files_round_trip_to_identical_bytes(name: str, tmp_path: Path) -> None:
    rec = SHARED / f"{name}.rec"
    reader = RecordReader(rec, rec.with_suffix(".idx"))
    rows = read_lst(SHARED / f"{name}.lst")
    assert len(reader) == len(rows)
    out = tmp_path / "copy.rec"
    with RecordWriter(out, out.with_suffix(".idx")) as writer:
        for n, row in enumerate(rows):
            record = reader.read_image(n)
            assert (record.id, record.labels) == (row.index, row.labels)
            labels = record.labels if len(row.labels) > 1 else record.labels[0]
            writer.write(pack_image_record(labels, record.image, id=record.id), key=row.index)
    assert out.read_bytes() == rec.read_bytes()
    assert out.with_suffix(".idx").read_text() == rec.with_suffix(".idx").read_text()
