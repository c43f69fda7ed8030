"""StudyTracker against a real sqlite store, fed by a real (small) Ray Tune study.

The trainable is a plain function reporting per-epoch metrics under the trainer's names, so these
tests pin the tracking records without training a network; the end-to-end test with the real
trainer and `tune run` lives in test_tracking_e2e.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow import MlflowClient

from tuner.summary import StudySummary
from tuner.tracking import StudyTracker, absolute_tracking_uri, resolve_tracking_uri

MAX_T = 4
OBJECTIVE = "validation:accuracy"
# learning_rate -> how the fake trial behaves; 0.3 fails after its first epoch
QUALITY = {0.1: 0.9, 0.02: 0.2, 0.3: 0.95, 0.05: 0.6}


def fake_trial(config: dict[str, Any]) -> None:
    """Reports epochs like the trainer (same metric names); lr 0.3 raises at epoch 2."""
    from ray import tune

    quality = QUALITY[config["learning_rate"]]
    for epoch in range(1, MAX_T + 1):
        if config["learning_rate"] == 0.3 and epoch == 2:
            raise RuntimeError("simulated divergence: loss is nan")
        tune.report(
            {
                "epoch": epoch,
                "train:accuracy": quality * epoch / MAX_T,
                OBJECTIVE: quality * epoch / MAX_T,
                "train:loss": 1.0 / epoch,
                "validation:loss": 1.0 / epoch,
                "learning_rate": config["learning_rate"],
                "train:images_per_second": 100.0 + epoch,
                "epoch_seconds": 0.01,
            }
        )


class _Epochs:
    """Counts each trial's reported epochs (the test's own view, from a second Ray callback)."""

    def __init__(self) -> None:
        from ray.tune import Callback

        self.epochs: dict[str, int] = {}
        counts = self.epochs

        class Counter(Callback):  # type: ignore[misc]
            def on_trial_result(
                self, iteration: int, trials: Any, trial: Any, result: Any, **info: Any
            ) -> None:
                counts[trial.trial_id] = int(result["epoch"])

        self.callback = Counter()

    def pruned_epoch(self, trial_id: str) -> int | None:
        ran = self.epochs.get(trial_id, 0)
        return ran if ran < MAX_T else None


def _hyperparameters_of(config: dict[str, Any]) -> dict[str, str]:
    return {
        "num_classes": "10",
        "num_training_samples": "300",
        "epochs": str(MAX_T),
        "learning_rate": str(config["learning_rate"]),
        "optimizer": "sgd",
    }


def _run_study(tmp_path: Path, tracker: StudyTracker, epochs: _Epochs) -> Any:
    from ray import cloudpickle, tune
    from ray.tune.logger import JsonLoggerCallback
    from ray.tune.schedulers import ASHAScheduler

    # Ray's workers cannot import this test module by name: ship the trainable by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    tracker.start_study(
        space_text="name: fake\nlearning_rate: [0.1, 0.02, 0.3, 0.05]\n",
        settings={
            "sampler": "grid",
            "pruner": {"name": "asha", "max_t": MAX_T},
            "limits": {"max_trials": 4},
        },
        resume=False,
    )
    tuner = tune.Tuner(
        fake_trial,
        param_space={"learning_rate": tune.grid_search(list(QUALITY))},
        tune_config=tune.TuneConfig(
            metric=OBJECTIVE,
            mode="max",
            max_concurrent_trials=1,
            scheduler=ASHAScheduler(
                time_attr="epoch", max_t=MAX_T, grace_period=1, reduction_factor=2
            ),
        ),
        run_config=tune.RunConfig(
            storage_path=str(tmp_path / "ray"),
            name="fake",
            verbose=0,
            # result.json explicitly: a study run earlier in this process (`run_study`) turns
            # Ray's automatic loggers off (TUNE_DISABLE_AUTO_CALLBACK_LOGGERS)
            callbacks=[JsonLoggerCallback(), epochs.callback, tracker.ray_callback()],
        ),
    )
    return tuner.fit()


def _summary(grid: Any, epochs: _Epochs, study_dir: Path) -> StudySummary:
    rows, histories = [], {}
    for result in grid:
        frame = result.metrics_dataframe
        trial_id = str(frame["trial_id"].iloc[0]) if frame is not None and len(frame) else None
        if trial_id is None:
            continue
        status = (
            "failed"
            if result.error
            else "pruned"
            if epochs.pruned_epoch(trial_id) is not None
            else "finished"
        )
        histories[trial_id] = frame[["epoch", OBJECTIVE]].to_dict("records")
        rows.append(
            {
                "trial_id": trial_id,
                "status": status,
                "epochs_run": len(frame),
                OBJECTIVE: float(frame[OBJECTIVE].max()),
                "learning_rate": result.config["learning_rate"],
            }
        )
    board = pd.DataFrame(rows)
    best = board[board.status == "finished"].sort_values(OBJECTIVE).iloc[-1]
    return StudySummary(
        study_name="fake",
        objective=OBJECTIVE,
        mode="max",
        leaderboard=board,
        best_trial_id=str(best.trial_id),
        best_value=float(best[OBJECTIVE]),
        best_hyperparameters={"learning_rate": str(best.learning_rate)},
        best_model_path=None,
        histories=histories,
    )


def _tracker(tmp_path: Path, epochs: _Epochs, uri: str) -> StudyTracker:
    return StudyTracker(
        tracking_uri=uri,
        experiment_name="fake-study",
        study_name="fake",
        study_dir=tmp_path / "study",
        objective=OBJECTIVE,
        mode="max",
        registered_model_name=None,
        hyperparameters_of=_hyperparameters_of,
        pruned_epoch=epochs.pruned_epoch,
        log=lambda _message: None,
    )


@pytest.mark.slow
def test_a_ray_study_gives_one_parent_and_one_child_per_trial_with_epoch_metrics(
    tmp_path: Path, ray_cluster: None
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    epochs = _Epochs()
    tracker = _tracker(tmp_path, epochs, uri)
    grid = _run_study(tmp_path, tracker, epochs)
    tracker.finish_study(_summary(grid, epochs, tracker.study_dir))

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("fake-study")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == len(QUALITY)
    parent = parents[0]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert parent.info.status == "FINISHED"
    assert parent.data.params["sampler"] == "grid"
    assert parent.data.params["pruner.max_t"] == str(MAX_T)
    assert parent.data.params["best.learning_rate"] == "0.1"
    assert parent.data.metrics[OBJECTIVE] == pytest.approx(0.9)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"search_space.yaml", "leaderboard.csv", "plots"} <= artifacts
    plots = {Path(a.path).name for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"optimization_history.png", "learning_curves.png"} <= plots

    # how the MLflow UI shows it: a training experiment, with the study's shared view
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    view = json.loads(experiment.tags["mlflow.sharedViewState.tuner-trials"])
    assert view["selectedColumns"][:2] == ["metrics.`best_value`", f"metrics.`{OBJECTIVE}`"]

    statuses = {}
    for child in children:
        trial_id = child.data.tags["ray.trial_id"]
        ran = epochs.epochs[trial_id]
        history = client.get_metric_history(child.info.run_id, OBJECTIVE)
        assert [m.step for m in history] == list(range(1, ran + 1)), trial_id
        assert child.info.run_name == f"trial_{trial_id}"  # as its folder
        if history:  # the trial's value: its best epoch's, as the leaderboard ranks it
            assert child.data.metrics["best_value"] == max(m.value for m in history)
        assert child.data.params["learning_rate"] in {str(lr) for lr in QUALITY}
        assert child.data.params["num_classes"] == "10"  # the fixed hyperparameters too
        assert child.data.metrics["wall_time_seconds"] > 0
        assert child.data.metrics["images_per_second"] > 100
        statuses[child.data.params["learning_rate"]] = (
            child.info.status,
            child.data.tags["trial_status"],
        )
        if child.data.tags["trial_status"] == "pruned":
            assert child.data.tags["pruned_at_epoch"] == str(ran)
    assert statuses["0.1"] == ("FINISHED", "finished")
    assert statuses["0.3"] == ("FAILED", "failed")
    failed = next(c for c in children if c.data.params["learning_rate"] == "0.3")
    assert "simulated divergence" in failed.data.tags["error"]
    # lr 0.02 runs after 0.1 (one trial at a time) and is far worse at epoch 1: ASHA stops it
    assert statuses["0.02"] == ("KILLED", "pruned")

    # a resumed study continues the same parent run instead of making a second one
    again = _tracker(tmp_path, epochs, uri)
    again.start_study(space_text="name: fake\n", settings={"sampler": "grid"}, resume=True)
    again.finish_study(_summary(grid, epochs, again.study_dir))
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs if "mlflow.parentRunId" not in r.data.tags] == [
        parent.info.run_id
    ]


def test_relative_sqlite_uris_are_made_absolute(tmp_path: Path) -> None:
    assert (
        absolute_tracking_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    )
    assert absolute_tracking_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"
    assert absolute_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_the_default_store_sits_beside_the_study_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None, tmp_path / "studies" / "s1") == (
        f"sqlite:///{tmp_path / 'studies' / 'mlflow.db'}"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert resolve_tracking_uri(None, tmp_path / "s1") == "http://127.0.0.1:5999"


def test_an_interrupted_study_is_killed_and_its_resume_reopens_the_same_parent(
    tmp_path: Path,
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    epochs = _Epochs()
    first = _tracker(tmp_path, epochs, uri)
    first.start_study(space_text="name: fake\n", settings={"sampler": "grid"}, resume=False)
    first.close()  # the study raised before finish_study
    first.close()  # idempotent
    client = MlflowClient(uri)
    (parent,) = client.search_runs([client.get_experiment_by_name("fake-study").experiment_id])
    assert parent.info.status == "KILLED"

    resumed = _tracker(tmp_path, epochs, uri)
    resumed.start_study(space_text="name: fake\n", settings={"sampler": "grid"}, resume=True)
    resumed.recorder.flush(timeout=60)
    assert client.get_run(parent.info.run_id).info.status == "RUNNING"
    resumed.close()
    fresh = _tracker(tmp_path, epochs, uri)
    fresh.start_study(space_text="name: fake\n", settings={"sampler": "grid"}, resume=False)
    fresh.close()  # not a resume: a new parent run
    runs = client.search_runs([parent.info.experiment_id])
    assert len(runs) == 2
