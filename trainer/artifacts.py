"""`model.tar.gz`: what a training run leaves behind, and how it is read back.

Layout of the archive:

    model.pt                      final weights (a state_dict)
    checkpoints/epoch-0007.pt     every kept checkpoint (best validation epoch, or every N-th)
    hyperparameters.json          the run's hyperparameters, SageMaker's all-string form
    model-info.json               num_classes, image_shape, num_layers, multi_label, best_epoch, ...

Archives are written to a temporary file and renamed into place; they are read with tarfile's
`filter="data"` and `torch.load(weights_only=True)`. A `model/` channel holding such an archive
starts incremental training (`num_layers`, `image_shape` and `num_classes` must match).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import re
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainer.errors import DataError, HyperparameterError, storage_error
from trainer.hyperparameters import Hyperparameters, parse_hyperparameters
from trainer.models import build_model
from trainer.precision import place_model

__all__ = [
    "ARCHIVE_NAME",
    "LoadedModel",
    "apply_weights",
    "atomic_torch_save",
    "checkpoint_name",
    "load_incremental_weights",
    "load_model_archive",
    "write_model_archive",
]

ARCHIVE_NAME = "model.tar.gz"
_WEIGHTS = "model.pt"
_HYPERPARAMETERS = "hyperparameters.json"
_INFO = "model-info.json"
_MATCHING = ("num_layers", "image_shape", "num_classes")


def checkpoint_name(epoch: int) -> str:
    """The archive member (and file name) of epoch `epoch`'s checkpoint."""
    return f"checkpoints/epoch-{epoch:04d}.pt"


def atomic_torch_save(obj: object, path: Path) -> None:
    """`torch.save` to a temporary file next to `path`, then rename it into place."""
    tmp = ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        _raise_if_full(exc, path)
        raise


def _raise_if_full(exc: BaseException, path: Path) -> None:
    """A full disk or a file size limit (torch wraps the OSError in a RuntimeError) as one
    `StorageError` naming `path`."""
    cause = exc if isinstance(exc, OSError) else exc.__cause__ or exc.__context__
    error = storage_error(cause, path) if isinstance(cause, OSError) else None
    if error is not None:
        raise error from None


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def write_model_archive(
    path: Path,
    *,
    hp: Hyperparameters,
    state_dict: Mapping[str, torch.Tensor],
    checkpoints: Mapping[int, Path],
    info: Mapping[str, Any],
) -> Path:
    """Write `model.tar.gz` at `path` atomically: final `state_dict`, the checkpoint files
    (epoch -> saved state_dict), the hyperparameters and `info` (plus the shape/class fields)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _raise_if_full(exc, path)
        raise
    meta = {
        **info,
        "num_classes": hp.num_classes,
        "image_shape": list(hp.image_shape),
        "num_layers": hp.num_layers,
        "multi_label": hp.multi_label,
        "checkpoints": [checkpoint_name(e) for e in sorted(checkpoints)],
    }
    weights = io.BytesIO()
    torch.save(dict(state_dict), weights)
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w:gz") as tar:
            _add_bytes(tar, _WEIGHTS, weights.getvalue())
            for epoch in sorted(checkpoints):
                tar.add(str(checkpoints[epoch]), arcname=checkpoint_name(epoch))
            _add_bytes(tar, _HYPERPARAMETERS, json.dumps(hp.to_strings(), indent=2).encode())
            _add_bytes(tar, _INFO, json.dumps(meta, indent=2).encode())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        _raise_if_full(exc, path)
        raise
    return path


@dataclass
class LoadedModel:
    """A model read from `model.tar.gz`, in eval mode, with what is needed to feed it."""

    model: nn.Module
    hyperparameters: Hyperparameters
    num_classes: int
    image_shape: tuple[int, int, int]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def multi_label(self) -> bool:
        return bool(self.hyperparameters.multi_label)


def _read_archive(path: Path, folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    if not path.is_file():
        raise DataError(f"model archive {path} does not exist")
    try:
        with gzip.open(path, "rb") as gz, tarfile.open(fileobj=gz, mode="r:") as tar:
            tar.extractall(folder, filter="data")
            # tarfile stops at the end-of-archive blocks; reading on to the end of the stream
            # makes gzip check its CRC-32, which covers every member (a bit flipped in transit)
            while gz.read(1 << 20):
                pass
        hp = json.loads((folder / _HYPERPARAMETERS).read_bytes())
        info = json.loads((folder / _INFO).read_bytes())
    # a corrupt gzip stream raises zlib.error, a hard link to a missing member KeyError, and
    # undecodable or invalid JSON a ValueError
    except (tarfile.TarError, OSError, EOFError, zlib.error, KeyError, ValueError) as exc:
        if "CRC check failed" in str(exc):
            raise DataError(
                f"{path} is damaged: the gzip CRC-32 of its contents does not match ({exc}); it "
                "changed after it was written (a bad copy or disk): copy it again"
            ) from None
        raise DataError(
            f"{path} is not a model.tar.gz written by this trainer "
            f"({_WEIGHTS}, {_HYPERPARAMETERS} and {_INFO} expected): {exc}"
        ) from None
    for member, value in ((_HYPERPARAMETERS, hp), (_INFO, info)):
        if not isinstance(value, dict):
            raise DataError(
                f"{path} member {member} must hold a JSON object, but holds a "
                f"{type(value).__name__}; the archive is corrupt or was not written by tune train"
            )
    return hp, info


def _load_weights(folder: Path, member: str, archive: Path) -> dict[str, torch.Tensor]:
    """The tensors in `member` of the archive extracted into `folder`; a member that holds pickled
    code or other objects is refused by `weights_only=True` before anything in it runs."""
    file = folder / member
    if not file.is_file():
        raise DataError(f"{archive} has no member {member}")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if found is None:
            raise _unreadable(archive, member, exc) from None
        raise DataError(
            f"{archive} member {member} is refused: it holds code or objects other than "
            f"tensors ({found.group(1)}), which were not run; a model archive may hold only "
            "tensors, as tune train writes them"
        ) from None
    # a damaged file fails inside torch's zip reader or its unpickler in many ways (RuntimeError,
    # EOFError, IndexError, OSError, ...): each means the same to the user
    except Exception as exc:  # noqa: BLE001
        raise _unreadable(archive, member, exc) from None
    damaged = _bad_zip_record(file)
    if damaged:
        raise DataError(
            f"{archive} member {member} is damaged: its record {damaged} does not match the "
            "CRC-32 torch.save wrote for it (the file changed after it was written)"
        )
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise DataError(
            f"{archive} member {member} holds a {type(state).__name__}, not the tensors of a "
            "model (name -> tensor) that tune train writes"
        )
    return state


def _bad_zip_record(file: Path) -> str | None:
    """The first record of a torch zip file whose CRC-32 does not match (torch.load does not
    check them); None when all match or the file is torch's older, unchecked pickle format."""
    if not zipfile.is_zipfile(file):
        return None
    try:
        with zipfile.ZipFile(file) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        return f"({exc})"


def _unreadable(archive: Path, member: str, exc: BaseException) -> DataError:
    cause = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return DataError(
        f"{archive} member {member} cannot be read as torch tensors "
        f"({type(exc).__name__}{': ' + cause if cause else ''}); the archive is corrupt"
    )


def load_model_archive(
    path: str | Path, *, checkpoint: int | None = None, device: str | torch.device = "cpu"
) -> LoadedModel:
    """Read `model.tar.gz` into a model in eval mode: the final weights, or epoch `checkpoint`'s."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="model-archive-") as tmp:
        folder = Path(tmp)
        raw_hp, info = _read_archive(path, folder)
        member = _WEIGHTS if checkpoint is None else checkpoint_name(checkpoint)
        listed = info.get("checkpoints")
        listed = listed if isinstance(listed, list) else []
        if checkpoint is not None and member not in listed:
            raise DataError(f"{path} has no checkpoint of epoch {checkpoint}; it holds {listed}")
        state = _load_weights(folder, member, path)
    try:
        hp = parse_hyperparameters({**raw_hp, "use_pretrained_model": "0"})
    except HyperparameterError as exc:
        raise DataError(f"{path} member {_HYPERPARAMETERS} is not valid: {exc}") from None
    model = build_model(hp)
    apply_weights(model, state, path)
    place_model(model, torch.device(device)).eval()
    return LoadedModel(model, hp, hp.num_classes, hp.image_shape, info)


def apply_weights(model: torch.nn.Module, state: Mapping[str, torch.Tensor], archive: Path) -> None:
    """Load `state` (read from `archive`) into `model`; weights of another network layout, such
    as an archive written before the CIFAR ResNets became MXNet's pre-activation network, are a
    `DataError` saying so rather than torch's list of missing keys."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise DataError(
            f"the weights in {archive} do not fit this version's network for its hyperparameters "
            f"({detail[:200]}); it was written by an earlier version of the trainer: train it "
            "again, or use the version that wrote it"
        ) from None


def load_incremental_weights(model_dir: Path, hp: Hyperparameters) -> dict[str, torch.Tensor]:
    """The final weights of the `model.tar.gz` in a `model/` channel, after checking that its
    `num_layers`, `image_shape` and `num_classes` are those of `hp`."""
    archives = sorted(model_dir.glob("*.tar.gz"))
    if len(archives) != 1:
        raise DataError(
            f"the model channel {model_dir} must hold exactly one model.tar.gz for incremental "
            f"training, but holds {[a.name for a in archives] or 'none'}"
        )
    with tempfile.TemporaryDirectory(prefix="model-archive-") as tmp:
        folder = Path(tmp)
        _, info = _read_archive(archives[0], folder)
        shape = info.get("image_shape")
        theirs = {**info, "image_shape": tuple(shape) if isinstance(shape, list) else shape}
        problems = [
            f"{name} must match the model in {archives[0]} ({theirs.get(name)!r}) for incremental "
            f"training, but got {getattr(hp, name)!r}"
            for name in _MATCHING
            if theirs.get(name) != getattr(hp, name)
        ]
        if problems:
            raise HyperparameterError(problems)
        return _load_weights(folder, _WEIGHTS, archives[0])
