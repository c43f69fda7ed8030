"""A model.tar.gz that is damaged or hostile is one DataError naming it (found by issue 17's
fuzzing), never a traceback from tarfile, json or torch's unpickler, nor changed weights."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch

from trainer.artifacts import load_incremental_weights, load_model_archive
from trainer.errors import DataError, UserError


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def _write(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.LNKTYPE
            info.linkname = target
            tar.addfile(info)
    return path


def _tensor_file(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"hyperparameters.json": b'{"num_classes": "4\xff"}'}, "not a model.tar.gz"),
        ({"model-info.json": b"[1, 2]"}, "model-info.json must hold a JSON object"),
        ({"hyperparameters.json": b"null"}, "hyperparameters.json must hold a JSON object"),
        ({"hyperparameters.json": b'{"num_classes": "0"}'}, "hyperparameters.json is not valid"),
        ({"model.pt": b"PK\x03\x04 cut short"}, "model.pt cannot be read as torch tensors"),
        ({"model.pt": b"\x80\x02]q\x00."}, "model.pt cannot be read as torch tensors"),
        ({"model.pt": _tensor_file([torch.zeros(2)])}, "model.pt holds a list, not the tensors"),
        ({"model.pt": _tensor_file({"w": 3})}, "model.pt holds a dict, not the tensors"),
    ],
)
def test_a_damaged_member_is_one_error_naming_the_archive(
    tmp_path, trained_archive, change, expected
) -> None:
    archive = _write(tmp_path / "model.tar.gz", {**_members(trained_archive), **change})
    with pytest.raises(DataError, match=expected) as caught:
        load_model_archive(archive)
    assert str(archive) in str(caught.value)


def test_a_hard_link_to_a_missing_member_is_a_data_error(tmp_path, trained_archive) -> None:
    members = _members(trained_archive)
    del members["model-info.json"]
    archive = _write(tmp_path / "model.tar.gz", members, links={"model-info.json": "nowhere"})
    with pytest.raises(DataError, match="not a model.tar.gz written by this trainer"):
        load_model_archive(archive)


def test_a_deflate_stream_corrupt_inside_a_member_is_a_data_error(tmp_path) -> None:
    whole = io.BytesIO()
    with tarfile.open(fileobj=whole, mode="w") as tar:
        info = tarfile.TarInfo("model.pt")
        info.size = 1 << 18
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    head = whole.getvalue()[: 1 << 17]  # the member's header and half its data
    # gzip header; stored deflate blocks with those bytes; then a block of the reserved type 3,
    # which zlib reports (zlib.error, not an OSError) while tarfile copies the member out
    stored = b"".join(
        b"\x00"
        + len(part).to_bytes(2, "little")
        + (0xFFFF - len(part)).to_bytes(2, "little")
        + part
        for part in (head[i : i + 0xFFFF] for i in range(0, len(head), 0xFFFF))
    )
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(bytes.fromhex("1f8b08000000000000ff") + stored + b"\x07" + bytes(8))
    with pytest.raises(DataError, match="not a model.tar.gz"):
        load_model_archive(archive)


def test_odd_model_info_is_a_clear_error_for_checkpoints_and_incremental_training(
    tmp_path, trained_archive, make_hp
) -> None:
    info = json.loads(_members(trained_archive)["model-info.json"])
    info.update(checkpoints=5, image_shape=7)
    members = {**_members(trained_archive), "model-info.json": json.dumps(info).encode()}
    archive = _write(tmp_path / "model" / "model.tar.gz", members)
    with pytest.raises(DataError, match="has no checkpoint of epoch 1; it holds \\[\\]"):
        load_model_archive(archive, checkpoint=1)
    with pytest.raises(UserError, match="image_shape must match the model"):
        load_incremental_weights(archive.parent, make_hp())


def test_a_bit_flipped_in_the_archive_is_caught_by_the_gzip_crc(tmp_path, trained_archive) -> None:
    # random weights do not compress: deflate stores them, so the flip lands in a weight and
    # tarfile alone (which stops at the end-of-archive blocks) would hand back a changed model
    data = bytearray(trained_archive.read_bytes())
    data[len(data) // 3] ^= 0x10
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(bytes(data))
    with pytest.raises(DataError, match="is damaged: the gzip CRC-32"):
        load_model_archive(archive)


def test_a_weight_changed_after_torch_save_is_caught_by_the_zip_crc(
    tmp_path, trained_archive
) -> None:
    members = _members(trained_archive)
    weights = bytearray(members["model.pt"])
    weights[len(weights) // 2] ^= 0x01  # inside the largest tensor's record
    archive = _write(tmp_path / "model.tar.gz", {**members, "model.pt": bytes(weights)})
    with pytest.raises(DataError, match="model.pt is damaged: its record .* does not match"):
        load_model_archive(archive)
