"""The one adapter to engine state that no public API exposes.

Everything else in `tuner/` uses Ray's, Optuna's and MLflow's public APIs. What is here works only
with the versions pinned in `constraints.txt`; `tests/tuner/test_engine_internals.py` fails, naming
the pin, when an upgrade moves it.

- MLflow keeps the URIs set by `mlflow.set_tracking_uri` / `mlflow.set_registry_uri` in module
  globals and offers no getter that tells "unset" from "the default" (`mlflow.get_tracking_uri()`
  resolves the default). Logging a model must point those globals at the study's store for a
  moment and then put back exactly what was there, so the previous values are read here; they are
  written back through the public setters.
"""

from __future__ import annotations

__all__ = ["PINNED", "mlflow_global_uris"]

# engine -> what this module reads from it, for the test's message
PINNED = {
    "mlflow": (
        "mlflow.tracking._tracking_service.utils._tracking_uri",
        "mlflow.tracking._model_registry.utils._registry_uri",
    ),
}


def mlflow_global_uris() -> tuple[str | None, str | None]:
    """(tracking URI, registry URI) as set in this process by MLflow's setters; None when unset."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    return tracking_utils._tracking_uri, registry_utils._registry_uri
