"""The study folder's files, read and written on their own (`tuner.layout`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuner.errors import SearchSpaceError
from tuner.layout import (
    Outcome,
    PrunedLog,
    StudyInfo,
    TrackingRuns,
    TrialFiles,
    ray_known_trial_ids,
    read_history,
    read_study_file,
    read_tracking_runs,
    spool_file,
    trial_files,
    write_best,
    write_study_file,
    write_text_atomic,
    write_tracking_runs,
)


def _epoch(epoch: float, accuracy: float) -> str:
    return json.dumps(
        {"epoch": epoch, "validation:accuracy": accuracy, "train:loss": 1.0, "trial_id": "a"}
    )


def test_history_skips_a_line_cut_by_a_kill_and_counts_a_repeated_epoch_once(
    tmp_path: Path,
) -> None:
    results = tmp_path / "result.json"
    lines = [_epoch(1.0, 0.2), _epoch(2.0, 0.3), _epoch(2.0, 0.35), _epoch(3.0, 0.4)]
    results.write_text("\n".join(lines) + '\n{"epoch": 4.0, "validation:acc')
    history = read_history(results)
    assert [h["epoch"] for h in history] == [1.0, 2.0, 3.0]
    assert history[1]["validation:accuracy"] == 0.35  # the resumed run's values win
    assert "trial_id" not in history[0] and history[0]["train:loss"] == 1.0
    assert read_history(tmp_path / "missing.json") == []


def test_history_keeps_only_the_trainers_metrics(tmp_path: Path) -> None:
    results = tmp_path / "result.json"
    row = {"epoch": 1, "learning_rate": 0.1, "epoch_seconds": 2.0, "done": False, "pid": 7}
    results.write_text(json.dumps({**row, "validation:accuracy": 0.5}) + "\n[1, 2]\n")
    (entry,) = read_history(results)
    assert entry == {
        "epoch": 1.0,
        "learning_rate": 0.1,
        "epoch_seconds": 2.0,
        "validation:accuracy": 0.5,
    }


def test_trial_files_outcome_params_and_error(tmp_path: Path) -> None:
    files = TrialFiles(tmp_path, "abc")
    assert files.dir == tmp_path / "trial_abc"
    assert files.read_outcome() is None and files.read_params() is None
    assert files.read_error() is None and not files.has_outcome()
    files.write_outcome(Outcome(model_path="/m.tar.gz", best_epoch=3, fit_seconds=1.5))
    assert files.has_outcome()
    assert files.read_outcome() == Outcome(model_path="/m.tar.gz", best_epoch=3, fit_seconds=1.5)
    files.params.write_text("")  # Ray is writing it (not atomically) while `tune results` reads
    assert files.read_params() is None
    files.params.write_text(json.dumps({"learning_rate": 0.1}))
    assert files.read_params() == {"learning_rate": 0.1}
    files.error.write_text("Traceback (most recent call last):\n  ...\nValueError: bad\n\n")
    assert files.read_error() == "ValueError: bad"
    # an outcome written by hand with only the model path (as older studies may hold)
    other = TrialFiles(tmp_path, "old")
    other.dir.mkdir()
    other.outcome_file.write_text(json.dumps({"model_path": "/x", "unknown": 1}))
    assert other.read_outcome() == Outcome(model_path="/x")


def test_trial_files_lists_trial_directories_only(tmp_path: Path) -> None:
    for trial_id in ("b", "a"):
        (tmp_path / f"trial_{trial_id}").mkdir()
    (tmp_path / "trial_notes.txt").write_text("not a trial")
    assert [f.trial_id for f in trial_files(tmp_path)] == ["a", "b"]


def test_a_pruned_trial_that_later_finished_is_not_pruned(tmp_path: Path) -> None:
    pruned = PrunedLog(tmp_path)
    pruned.record("a", 2)
    pruned.record("b", 1)
    assert pruned.epoch("a") == 2 and pruned.epoch("never") is None
    TrialFiles(tmp_path, "b").write_outcome(Outcome(model_path="/m"))
    assert pruned.epoch("b") is None


def test_study_file_round_trip_and_a_folder_that_is_not_a_study(tmp_path: Path) -> None:
    info = StudyInfo(name="s", objective="validation:loss", mode="min", searched=["optimizer"])
    write_study_file(tmp_path / "s", info)
    assert read_study_file(tmp_path / "s") == info
    write_study_file(tmp_path / "m", {"name": "m", "objective": "o", "mode": "max"})
    assert read_study_file(tmp_path / "m").fixed == {}
    with pytest.raises(SearchSpaceError, match="not a study directory"):
        read_study_file(tmp_path)


def test_ray_known_trial_ids_reads_every_snapshot(tmp_path: Path) -> None:
    assert ray_known_trial_ids(tmp_path) is None
    (tmp_path / "experiment_state-1.json").write_text(
        json.dumps({"trial_data": [[json.dumps({"trial_id": "a"}), "{}"], {"trial_id": "b"}]})
    )
    (tmp_path / "experiment_state-2.json").write_text(json.dumps({"trial_data": []}))
    assert ray_known_trial_ids(tmp_path) == {"a", "b"}


def test_tracking_runs_round_trip(tmp_path: Path) -> None:
    assert read_tracking_runs(tmp_path) is None
    runs = TrackingRuns("sqlite:////x.db", runs={"study": "r1"}, steps={"trial:a": [1, 2]})
    write_tracking_runs(tmp_path, runs)
    assert read_tracking_runs(tmp_path) == runs
    assert spool_file(tmp_path) == tmp_path / "mlflow-spool" / "operations.jsonl"


def test_best_files_and_atomic_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    model = tmp_path / "model.tar.gz"
    model.write_bytes(b"weights")
    copied = write_best(tmp_path, {"trial_id": "a", "value": 0.5}, {"epochs": "3"}, model)
    assert copied == tmp_path / "best" / "model.tar.gz" and copied.read_bytes() == b"weights"
    assert json.loads((tmp_path / "best" / "trial.json").read_text())["trial_id"] == "a"
    assert write_best(tmp_path / "other", {"trial_id": "b"}, {}, None) is None
    write_text_atomic(tmp_path / "deep" / "f.txt", "one")
    write_text_atomic(tmp_path / "deep" / "f.txt", "two")
    assert [p.name for p in (tmp_path / "deep").iterdir()] == ["f.txt"]
    assert not list((tmp_path / "best").glob(".*"))
