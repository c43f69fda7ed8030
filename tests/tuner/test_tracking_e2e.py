"""End to end: a small real study (real Ray, Optuna, trainer) recorded on a real `mlflow server`,
checked through the MLflow client, down to a prediction through `models:/NAME@champion`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tuner.space import load_space
from tuner.study import run_study

pytestmark = pytest.mark.slow

STATUS = {"finished": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}


def _space(tmp_path: Path, assets: Path, server_uri: str) -> Path:
    # 40x40 crops of 32x32 images make the trainer raise in the trial: the failed trials
    text = f"""\
study: {{name: e2e, directory: studies, seed: 0}}
data: {{path: {assets / "cifar10"}}}
tracking:
  tracking_uri: {server_uri}
  experiment_name: e2e-tracking
  registered_model_name: e2e-cifar
  alias: champion
fixed:
  num_classes: 10
  num_training_samples: 300
  num_layers: 20
  mini_batch_size: 64
  epochs: 3
search:
  image_shape: {{type: categorical, values: ["3,40,40", "3,16,16"]}}
  learning_rate: {{type: categorical, values: [0.05, 0.2, 0.001]}}
sampler: {{name: grid}}
pruner: {{name: asha, grace_period: 1, reduction_factor: 2}}
limits: {{max_trials: 6, max_parallel: 1, max_retries: 0}}
"""
    path = tmp_path / "e2e.yaml"
    path.write_text(text)
    return path


def test_a_study_on_a_tracking_server_is_recorded_and_its_champion_predicts(
    ray_cluster: None,
    tmp_path: Path,
    assets: Path,
    mlflow_server: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from trainer.predict import Predictor

    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)
    summary = run_study(load_space(_space(tmp_path, assets, mlflow_server.uri)), log=print)
    shown = capsys.readouterr().out
    assert "[6/6] trial" in shown
    # MLflow's "View run ... at: http://..." pair for each of the 7 runs stays out of the terminal
    assert "View run" not in shown and "View experiment" not in shown
    board = summary.leaderboard.set_index("trial_id")
    assert len(board) == 6 and (board["status"] == "failed").sum() == 3

    client = MlflowClient(mlflow_server.uri, registry_uri=mlflow_server.uri)
    experiment = client.get_experiment_by_name("e2e-tracking")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["sampler"] == "grid" and parent.data.params["pruner"] == "asha"
    assert parent.data.metrics["validation:accuracy"] == pytest.approx(summary.best_value)
    assert parent.data.params["best.learning_rate"] == summary.best_hyperparameters["learning_rate"]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"search_space.yaml", "leaderboard.csv", "plots", "model_archive"} <= artifacts

    assert sorted(c.data.tags["ray.trial_id"] for c in children) == sorted(board.index)
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        row = board.loc[child.data.tags["ray.trial_id"]]
        assert child.info.status == STATUS[row["status"]], row
        assert child.data.tags["trial_status"] == row["status"]
        history = client.get_metric_history(child.info.run_id, "validation:accuracy")
        assert [m.step for m in history] == list(range(1, int(row["epochs_run"]) + 1))
        assert child.data.params["num_layers"] == "20"  # fixed hyperparameters are params too
        assert child.data.params["learning_rate"] == str(row["learning_rate"])
        if row["status"] == "pruned":
            assert child.data.tags["pruned_at_epoch"] == str(int(row["epochs_run"]))
        if row["status"] == "failed":
            assert "40" in child.data.tags["error"]
        else:
            assert child.data.metrics["images_per_second"] > 0

    champion = client.get_model_version_by_alias("e2e-cifar", "champion")
    assert champion.run_id == parent.info.run_id
    images = [
        p.read_bytes() for p in sorted((assets / "cifar10" / "validation").rglob("*.jpg"))[:5]
    ]
    expected = Predictor.from_archive(summary.best_model_path).predict(images)
    mlflow.set_tracking_uri(mlflow_server.uri)
    try:
        model = mlflow.pyfunc.load_model("models:/e2e-cifar@champion")
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    predicted = model.predict(pd.DataFrame({"image": images}))
    np.testing.assert_allclose(predicted, expected, rtol=1e-5, atol=1e-6)
