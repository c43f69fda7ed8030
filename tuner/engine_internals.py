"""The one adapter to engine state that no public API exposes.

Everything else in `tuner/` uses Ray's, Optuna's and MLflow's public APIs. What is here works only
with the versions pinned in `constraints.txt`; `tests/tuner/test_engine_internals.py` fails, naming
the pin, when an upgrade moves it.

- MLflow keeps the URIs set by `mlflow.set_tracking_uri` / `mlflow.set_registry_uri` in module
  globals and offers no getter that tells "unset" from "the default" (`mlflow.get_tracking_uri()`
  resolves the default). Logging a model must point those globals at the study's store for a
  moment and then put back exactly what was there, so the previous values are read here; they are
  written back through the public setters.
- Ray's driver prints the cluster's error messages (a dead node's raylet dump, an out-of-memory
  kill) straight to stdout: `ray._private.worker.listen_error_messages` hands each to the module's
  `print_to_stdstream`, with no logger and no setting to quiet it (`log_to_driver=False` does not
  cover it). `routed_ray_cluster_messages` swaps that function for one that sends those messages
  elsewhere, and puts Ray's back after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["PINNED", "mlflow_global_uris", "routed_ray_cluster_messages"]

# engine -> what this module reads from it, for the test's message
PINNED = {
    "mlflow": (
        "mlflow.tracking._tracking_service.utils._tracking_uri",
        "mlflow.tracking._model_registry.utils._registry_uri",
    ),
    "ray": ("ray._private.worker.print_to_stdstream (called by listen_error_messages)",),
}


def mlflow_global_uris() -> tuple[str | None, str | None]:
    """(tracking URI, registry URI) as set in this process by MLflow's setters; None when unset."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    return tracking_utils._tracking_uri, registry_utils._registry_uri


@contextmanager
def routed_ray_cluster_messages(sink: Callable[[str], None]) -> Iterator[None]:
    """Within the block, each line of the cluster error messages Ray's driver would print (those
    it marks as coming from a raylet) goes to `sink` instead of stdout; worker output and
    everything else Ray prints is left as it is."""
    from ray._private import worker

    printer = worker.print_to_stdstream

    def routed(data: dict[str, Any], ignore_prefix: bool) -> None:
        if data.get("pid") != "raylet":
            printer(data, ignore_prefix)
            return
        for line in data.get("lines") or ():
            sink(str(line))

    worker.print_to_stdstream = routed
    try:
        yield
    finally:
        worker.print_to_stdstream = printer
