"""Where MLflow records go: the one resolution of a tracking URI, shared by the search space,
the tracker, `tune train --track` and `tune ui`.

The order is: the URI given (the YAML's `tracking.tracking_uri`, `--tracking-uri`), else
`MLFLOW_TRACKING_URI`, else a sqlite database `mlflow.db` in a default folder (beside the study
directories, so one UI shows every study; the working directory for `tune train`). A relative
sqlite path is made absolute: Ray runs trials with the trial directory as working directory, so
`sqlite:///mlflow.db` would otherwise mean a different database in every process.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "DEFAULT_DATABASE",
    "absolute_tracking_uri",
    "model_lookup_uri",
    "resolve_tracking_uri",
    "tracking_requested",
    "training_tracking_uri",
]

DEFAULT_DATABASE = "mlflow.db"
_SQLITE = "sqlite:///"


def absolute_tracking_uri(uri: str, base: Path | None = None) -> str:
    """`uri` with a relative sqlite path made absolute against `base` (default: the working dir)."""
    if uri.startswith(_SQLITE) and not uri.startswith(_SQLITE + "/"):
        relative = uri[len(_SQLITE) :]
        return _SQLITE + str(((base or Path.cwd()) / relative).resolve())
    return uri


def _resolve(configured: str | None, default_dir: Path, base: Path | None) -> str:
    chosen = configured or os.environ.get("MLFLOW_TRACKING_URI")
    if chosen:
        return absolute_tracking_uri(chosen, base)
    return f"{_SQLITE}{default_dir.resolve() / DEFAULT_DATABASE}"


def resolve_tracking_uri(configured: str | None, study_dir: Path, base: Path | None = None) -> str:
    """The store a study records to: `configured`, else `MLFLOW_TRACKING_URI`, else
    `sqlite:///<studies root>/mlflow.db`; a relative sqlite path resolves from `base` (the
    search-space file's folder; default: the working directory)."""
    return _resolve(configured, Path(study_dir).resolve().parent, base)


def training_tracking_uri(configured: str | None) -> str:
    """The store a `tune train` run records to: `configured`, else `MLFLOW_TRACKING_URI`, else
    `sqlite:///mlflow.db` in the working directory."""
    return _resolve(configured, Path.cwd(), None)


def model_lookup_uri(configured: str | None) -> str | None:
    """Where a `models:/NAME@ALIAS` URI is looked up (`tune serve`): `configured`, else
    `MLFLOW_TRACKING_URI`, else the quickstart's `studies/mlflow.db` or `./mlflow.db` when one
    exists in the working directory, else None."""
    chosen = configured or os.environ.get("MLFLOW_TRACKING_URI")
    if chosen:
        return absolute_tracking_uri(chosen)
    for store in (Path("studies") / DEFAULT_DATABASE, Path(DEFAULT_DATABASE)):
        if store.is_file():
            return f"{_SQLITE}{store.resolve()}"
    return None


def tracking_requested(track: bool | None, configured: str | None) -> bool:
    """`--track/--no-track` as given, else on when a tracking URI is given or in the environment."""
    if track is not None:
        return track
    return bool(configured or os.environ.get("MLFLOW_TRACKING_URI"))
