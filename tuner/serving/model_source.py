"""What `tune serve MODEL` serves: a `model.tar.gz`, or the archive inside an MLflow model logged
by a study or `tune train` (`models:/NAME@ALIAS`, `models:/NAME/VERSION`, `runs:/RUN_ID/model`).

The MLflow model's pyfunc flavour carries the `model.tar.gz` as an artifact; only its `MLmodel`
file and that archive are downloaded, through MLflow's public client.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from trainer.errors import UserError

__all__ = ["ModelSource", "resolve_model"]

_REGISTERED = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")


@dataclass(frozen=True)
class ModelSource:
    """The local `model.tar.gz` to serve and how it was found (for the start line)."""

    archive: Path
    description: str


def resolve_model(model: str, *, tracking_uri: str | None, download_dir: Path) -> ModelSource:
    """The `model.tar.gz` that `model` names: a file path, or an MLflow model URI whose archive is
    downloaded into `download_dir`."""
    if ":/" not in model:
        path = Path(model)
        if not path.is_file():
            raise UserError(
                f"MODEL {model}: no such file; give a model.tar.gz (as tune train writes it) or an "
                "MLflow model URI such as models:/quickstart@champion"
            )
        return ModelSource(path, str(path))
    if tracking_uri is None:
        raise UserError(
            f"MODEL {model} needs an MLflow tracking store: give --tracking-uri or set "
            "MLFLOW_TRACKING_URI (no studies/mlflow.db or mlflow.db in this directory)"
        )
    from mlflow.exceptions import MlflowException

    try:
        artifact_uri, description = _model_location(model, tracking_uri)
        return ModelSource(_download_archive(artifact_uri, tracking_uri, download_dir), description)
    except MlflowException as exc:
        raise UserError(f"MODEL {model} on {tracking_uri}: {exc.message}") from None


def _model_location(model: str, tracking_uri: str) -> tuple[str, str]:
    """Where the model's files are, and a description naming the version a registry URI means."""
    from mlflow import MlflowClient

    registered = _REGISTERED.match(model)
    if registered is None:
        return model, model
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    name = registered["name"]
    if registered["alias"]:
        version = client.get_model_version_by_alias(name, registered["alias"]).version
    else:
        version = client.get_model_version(name, registered["version"]).version
    location = client.get_model_version_download_uri(name, version)
    return location, f"{model} (version {version})"


def _download_archive(artifact_uri: str, tracking_uri: str, download_dir: Path) -> Path:
    import mlflow.artifacts
    from mlflow.models import Model

    base = artifact_uri.rstrip("/")
    mlmodel = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{base}/MLmodel",
        tracking_uri=tracking_uri,
        dst_path=tempfile.mkdtemp(dir=download_dir),
    )
    pyfunc = Model.load(mlmodel).flavors.get("python_function", {})
    archives = [
        entry["path"]
        for entry in (pyfunc.get("artifacts") or {}).values()
        if str(entry.get("path", "")).endswith(".tar.gz")
    ]
    if len(archives) != 1:
        raise UserError(
            f"the MLflow model at {artifact_uri} holds no model.tar.gz artifact; tune serve takes "
            "models logged by a tuning study or tune train --tracking-uri"
        )
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{base}/{archives[0]}",
        tracking_uri=tracking_uri,
        dst_path=tempfile.mkdtemp(dir=download_dir),
    )
    return Path(local)
