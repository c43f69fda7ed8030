"""What a study left in MLflow, counted the same way by every part of the campaign."""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["study_runs"]


def study_runs(tracking_uri: str, experiment_name: str) -> tuple[Counter[str], int, list[Any]]:
    """(child runs per Ray trial id, parent runs, all runs) of a study's experiment."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    children = Counter(r.data.tags["ray.trial_id"] for r in runs if "ray.trial_id" in r.data.tags)
    return children, len(runs) - sum(children.values()), list(runs)
