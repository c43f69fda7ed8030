"""Opening an MLflow store: the one place a client is made for a study's or a run's records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["open_client"]

_SQLITE = "sqlite:///"


def open_client(tracking_uri: str) -> Any:
    """An `MlflowClient` on `tracking_uri` (also its registry).

    MLflow creates and migrates a sqlite store's tables when a client first opens it. Two
    processes doing that at once on a new store (two studies started together on the default
    `studies/mlflow.db`) run the migrations over each other and leave the store unusable
    ("table _alembic_tmp_tags already exists"), so here it happens under a lock file beside it.
    """
    import fcntl

    from mlflow import MlflowClient

    if not tracking_uri.startswith(_SQLITE):
        return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    database = Path(tracking_uri[len(_SQLITE) :])
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(f".{database.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
