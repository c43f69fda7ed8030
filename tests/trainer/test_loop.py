"""`fit`: per-epoch metrics and report, progress lines, checkpoints, early stopping, resume."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import pytest
import torch

from trainer.artifacts import load_model_archive
from trainer.data import InMemoryLoaders
from trainer.early_stopping import EarlyStopping
from trainer.errors import HyperparameterError
from trainer.loop import STATE_FILE, fit

PROGRESS = re.compile(
    r"^epoch (\d+)/(\d+) train:accuracy=([0-9.]+) .*validation:accuracy=([0-9.]+) .*"
    r"lr=([0-9.e+-]+) img/s=(\d+) time=([0-9.]+)s$"
)


def archive_members(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return tar.getnames()


def weights(path: Path, **kwargs: object) -> dict[str, torch.Tensor]:
    return load_model_archive(path, **kwargs).model.state_dict()  # type: ignore[arg-type]


def test_fit_reports_sagemaker_named_metrics_once_per_epoch_after_saving_state(
    make_hp, make_loaders, tmp_path, quiet
) -> None:
    hp = make_hp(epochs=3, top_k=2)
    reported: list[dict[str, float]] = []

    def report(metrics: dict[str, float]) -> None:
        state = torch.load(tmp_path / "state" / STATE_FILE, weights_only=True)
        assert state["progress"]["epoch"] == metrics["epoch"]
        reported.append(metrics)

    result = fit(
        hp,
        make_loaders(hp),
        tmp_path / "out",
        report=report,
        state_dir=tmp_path / "state",
        log=quiet,
    )
    assert [m["epoch"] for m in reported] == [1, 2, 3]
    assert set(reported[0]) == {
        "epoch",
        "train:accuracy",
        "validation:accuracy",
        "train:loss",
        "validation:loss",
        "train:top_k_accuracy_2",
        "validation:top_k_accuracy_2",
        "learning_rate",
        "train:images_per_second",
        "epoch_seconds",
    }
    assert result.history == reported and result.metrics == reported[-1]
    assert all(
        0 <= m["validation:accuracy"] <= m["validation:top_k_accuracy_2"] <= 1 for m in reported
    )
    assert result.model_path == tmp_path / "out" / "model.tar.gz"


def test_one_parseable_progress_line_per_epoch(make_hp, make_loaders, tmp_path) -> None:
    hp = make_hp(epochs=2, lr_scheduler_step="1", learning_rate=0.1)
    lines: list[str] = []
    result = fit(hp, make_loaders(hp), tmp_path, log=lines.append)
    parsed = [PROGRESS.match(line) for line in lines]
    epochs = [m for m in parsed if m]
    assert len(epochs) == 2, lines
    assert [int(m.group(1)) for m in epochs] == [1, 2] and epochs[0].group(2) == "2"
    assert float(epochs[1].group(4)) == pytest.approx(
        result.history[1]["validation:accuracy"], abs=1e-4
    )
    assert [float(m.group(5)) for m in epochs] == pytest.approx([0.1, 0.01])


def test_training_learns_the_synthetic_task(make_hp, make_loaders, tmp_path, quiet) -> None:
    hp = make_hp(epochs=4, learning_rate=0.1)
    result = fit(hp, make_loaders(hp, n_train=128), tmp_path, log=quiet)
    assert result.history[-1]["train:accuracy"] > 0.5
    assert result.history[-1]["train:loss"] < result.history[0]["train:loss"]


def test_same_seed_same_model_other_seed_other_model(
    make_hp, make_loaders, tmp_path, quiet
) -> None:
    hp = make_hp(epochs=1)
    runs = [
        fit(hp, make_loaders(hp, seed=s), tmp_path / f"{i}", seed=s, log=quiet).model_path
        for i, s in enumerate([5, 5, 6])
    ]
    a, b, c = (weights(p) for p in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_resume_from_training_state_gives_the_uninterrupted_result(
    make_hp, make_loaders, tmp_path, quiet
) -> None:
    hp = make_hp(epochs=2, lr_scheduler_step="1")
    straight = fit(hp, make_loaders(hp, seed=1), tmp_path / "straight", seed=1, log=quiet)

    class Killed(Exception):
        pass

    def die_after_epoch_1(metrics: dict[str, float]) -> None:
        if metrics["epoch"] == 1:
            raise Killed

    state = tmp_path / "state"
    with pytest.raises(Killed):
        fit(
            hp,
            make_loaders(hp, seed=1),
            tmp_path / "resumed",
            state_dir=state,
            seed=1,
            report=die_after_epoch_1,
            log=quiet,
        )
    assert not (tmp_path / "resumed").exists()  # nothing that looks like a result
    lines: list[str] = []
    resumed = fit(
        hp,
        make_loaders(hp, seed=1),
        tmp_path / "resumed",
        state_dir=state,
        seed=1,
        log=lines.append,
    )
    assert any("resuming" in line and "after epoch 1" in line for line in lines)
    assert [m["epoch"] for m in resumed.history] == [1, 2]
    assert resumed.history[1]["validation:accuracy"] == straight.history[1]["validation:accuracy"]
    a, b = weights(straight.model_path), weights(resumed.model_path)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_other_hyperparameters_is_refused(
    make_hp, make_loaders, tmp_path, quiet
) -> None:
    hp = make_hp(epochs=1)
    fit(hp, make_loaders(hp), tmp_path / "a", state_dir=tmp_path / "s", log=quiet)
    other = hp.replace(learning_rate=0.01)
    with pytest.raises(HyperparameterError, match="other hyperparameters"):
        fit(other, make_loaders(other), tmp_path / "b", state_dir=tmp_path / "s", log=quiet)


def test_default_policy_keeps_only_the_best_validation_epoch(
    make_hp, make_loaders, tmp_path, quiet
) -> None:
    hp = make_hp(epochs=4)
    result = fit(hp, make_loaders(hp), tmp_path, log=quiet)
    accuracies = [m["validation:accuracy"] for m in result.history]
    assert result.best_epoch == accuracies.index(max(accuracies)) + 1
    checkpoints = [m for m in archive_members(result.model_path) if m.startswith("checkpoints/")]
    assert checkpoints == [f"checkpoints/epoch-{result.best_epoch:04d}.pt"]
    assert load_model_archive(result.model_path).info["best_epoch"] == result.best_epoch


def test_checkpoint_frequency_keeps_every_nth_epoch(make_hp, make_loaders, tmp_path, quiet) -> None:
    hp = make_hp(epochs=4, checkpoint_frequency=2)
    result = fit(hp, make_loaders(hp), tmp_path, log=quiet)
    members = archive_members(result.model_path)
    assert [m for m in members if m.startswith("checkpoints/")] == [
        "checkpoints/epoch-0002.pt",
        "checkpoints/epoch-0004.pt",
    ]
    final, last = weights(result.model_path), weights(result.model_path, checkpoint=4)
    assert all(torch.equal(final[k], last[k]) for k in final)
    second = weights(result.model_path, checkpoint=2)
    assert not all(torch.equal(final[k], second[k]) for k in final)


def test_early_stopping_ends_training_as_the_rule_says(make_hp, make_loaders, tmp_path) -> None:
    hp = make_hp(
        epochs=8,
        learning_rate=0.0,
        early_stopping=True,
        early_stopping_min_epochs=2,
        early_stopping_patience=1,
        early_stopping_tolerance=1.0,
    )
    lines: list[str] = []
    result = fit(hp, make_loaders(hp), tmp_path, log=lines.append)
    replay = EarlyStopping(2, 1, 1.0)
    stop = next(
        m["epoch"]
        for m in result.history
        if replay.update(int(m["epoch"]), m["validation:accuracy"])
    )
    assert result.stopped_early and len(result.history) == stop < 8
    assert any(line.startswith(f"early stopping after epoch {int(stop)}") for line in lines)


def test_multi_label_with_weighted_loss_trains_and_averages_over_classes(
    make_hp, make_loaders, tmp_path, quiet
) -> None:
    hp = make_hp(multi_label=1, use_weighted_loss=1, top_k=2)
    loaders = make_loaders(hp)
    assert isinstance(loaders, InMemoryLoaders) and loaders.class_counts is not None
    result = fit(hp, loaders, tmp_path, log=quiet)
    assert "train:top_k_accuracy_2" not in result.metrics
    assert 0.0 <= result.metrics["validation:accuracy"] <= 1.0
    assert load_model_archive(result.model_path).multi_label


def test_kv_store_on_one_machine_says_it_has_no_effect(make_hp, make_loaders, tmp_path) -> None:
    hp = make_hp(epochs=1, kv_store="dist_sync")
    lines: list[str] = []
    fit(hp, make_loaders(hp), tmp_path, log=lines.append)
    assert sum("kv_store=dist_sync has no effect" in line for line in lines) == 1


def test_float16_on_cpu_trains_in_the_detected_precision(make_hp, make_loaders, tmp_path) -> None:
    from trainer.precision import cpu_has_native_bf16

    hp = make_hp(epochs=1, precision_dtype="float16")
    lines: list[str] = []
    result = fit(hp, make_loaders(hp), tmp_path, device="cpu", log=lines.append)
    notices = [line for line in lines if "training in float32" in line]
    assert len(notices) == (0 if cpu_has_native_bf16() else 1)
    assert 0.0 <= result.metrics["train:accuracy"] <= 1.0
