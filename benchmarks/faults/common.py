"""What the campaign's parts share: the short real study they fault, and how they count what it
left in MLflow."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["ASSETS", "TUNE", "study_runs", "study_space"]

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "tests" / "assets" / "cifar10"
TUNE = str(Path(sys.executable).parent / "tune")


def study_space(name: str, *, epochs: int, body: str, seed: int = 0) -> str:
    """A short real study's YAML: ResNet-20 on the committed CIFAR-10 sample (300 + 100 images),
    studies in `./studies`; `body` gives its search, sampler, pruner, limits and tracking."""
    return (
        f"study: {{name: {name}, directory: studies, seed: {seed}}}\n"
        f"data: {{path: {ASSETS}}}\n"
        "fixed:\n  num_classes: 10\n  num_training_samples: 300\n  num_layers: 20\n"
        f"  image_shape: 3,32,32\n  mini_batch_size: 64\n  epochs: {epochs}\n" + body
    )


def study_runs(tracking_uri: str, experiment_name: str) -> tuple[Counter[str], int, list[Any]]:
    """(child runs per Ray trial id, parent runs, all runs) of a study's experiment."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    children = Counter(r.data.tags["ray.trial_id"] for r in runs if "ray.trial_id" in r.data.tags)
    return children, len(runs) - sum(children.values()), list(runs)
