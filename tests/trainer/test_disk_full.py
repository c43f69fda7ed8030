"""A write that hits a full disk or a file size limit (issue 17, part 4): one `StorageError` naming
the file, the previous file intact, no temporary left, and a run with a state directory that
continues after the last finished epoch once there is room."""

from __future__ import annotations

import contextlib
import resource
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.trainer.conftest import make_hp, make_loaders
from trainer.artifacts import atomic_torch_save, checkpoint_name, write_model_archive
from trainer.errors import StorageError
from trainer.loop import STATE_FILE, fit


@contextlib.contextmanager
def file_size_limit(size: int) -> Iterator[None]:
    """Writes past `size` bytes fail with EFBIG (SIGXFSZ ignored), as on a full disk."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_checkpoint_that_does_not_fit_leaves_the_previous_one(tmp_path: Path) -> None:
    path = tmp_path / "epoch-0001.pt"
    atomic_torch_save({"w": torch.zeros(10)}, path)
    before = path.read_bytes()
    with file_size_limit(50_000), pytest.raises(StorageError) as caught:
        atomic_torch_save({"w": torch.zeros(100_000)}, path)
    assert str(caught.value).startswith(
        f"cannot write {path}: the file would be larger than allowed"
    )
    assert "the previous file, if any, is unchanged" in str(caught.value)
    assert path.read_bytes() == before and _leftovers(tmp_path) == []


def test_an_archive_that_does_not_fit_leaves_the_previous_one(tmp_path: Path) -> None:
    hp = make_hp()
    path = tmp_path / "model.tar.gz"
    write_model_archive(path, hp=hp, state_dict={"w": torch.zeros(10)}, checkpoints={}, info={})
    before = path.read_bytes()
    noise = {"w": torch.rand(200_000)}  # does not compress
    with file_size_limit(100_000), pytest.raises(StorageError, match=f"cannot write {path}: "):
        write_model_archive(path, hp=hp, state_dict=noise, checkpoints={}, info={})
    assert path.read_bytes() == before and _leftovers(tmp_path) == []


@pytest.mark.slow  # two short training runs
def test_a_run_stopped_by_a_full_disk_continues_from_its_last_saved_epoch(tmp_path: Path) -> None:
    hp = make_hp(epochs=3, learning_rate=0.02)  # epoch 2 beats epoch 1: its best replaces 1's
    state = tmp_path / "state"
    seen: list[float] = []

    def fill_the_disk_after_epoch_1(metrics: dict[str, float]) -> None:
        seen.append(metrics["validation:accuracy"])
        if metrics["epoch"] == 1:  # epoch 2's checkpoint (~1.1 MB) fits, its state (~2.3) not
            resource.setrlimit(resource.RLIMIT_FSIZE, (1_600_000, hard))

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        with pytest.raises(StorageError, match=f"cannot write {state / STATE_FILE}"):
            fit(
                hp,
                make_loaders(hp),
                tmp_path / "out",
                state_dir=state,
                report=fill_the_disk_after_epoch_1,
                log=lambda line: None,
            )
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    saved = torch.load(state / STATE_FILE, weights_only=True)["progress"]
    assert saved["epoch"] == 1
    # every checkpoint the saved state lists is still there, including one that epoch 2 (not
    # saved) would have replaced as the best
    assert saved["checkpoints"] and all(
        (state / checkpoint_name(e)).is_file() for e in saved["checkpoints"]
    )

    lines: list[str] = []
    result = fit(hp, make_loaders(hp), tmp_path / "out", state_dir=state, log=lines.append)
    assert f"resuming from {state / STATE_FILE} after epoch 1" in lines
    assert [line.split()[1] for line in lines if line.startswith("epoch ")] == ["2/3", "3/3"]
    assert result.model_path.is_file()
    # the precondition: epoch 2 (the same again after resuming) beat epoch 1, so when it failed
    # to save its state it had already been about to drop epoch 1's checkpoint
    assert result.history[1]["validation:accuracy"] > seen[0]
