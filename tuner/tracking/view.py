"""How the MLflow UI shows a study: its training view, and the trials table's columns and order.

MLflow 3's UI picks between its GenAI pages and its training-runs pages by a *workflow type*: the
`workflowType` URL parameter, else the browser's last choice (GenAI on a first visit). Older UIs
read the experiment's `mlflow.experimentKind` tag instead, so the experiment carries both.

The table's columns are the UI's own state (kept per browser). The one way MLflow offers to hand
a view to someone else is a *shared view*: the state as JSON in the experiment tag
`mlflow.sharedViewState.<key>`, opened by the URL parameter `viewStateShareKey=<key>` (what the
UI's "Share" button writes). The study writes one such view: the objective, the searched
hyperparameters and each trial's status as columns, best trial first.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import urlencode

__all__ = [
    "EXPERIMENT_KIND_TAG",
    "SHARE_KEY",
    "SHARE_TAG",
    "experiment_url",
    "study_view_state",
    "study_view_tags",
]

EXPERIMENT_KIND_TAG = {"mlflow.experimentKind": "custom_model_development"}
SHARE_KEY = "tuner-trials"
SHARE_TAG = f"mlflow.sharedViewState.{SHARE_KEY}"
_TRAINING_VIEW = {"workflowType": "machine_learning"}


def _column(group: str, name: str) -> str:
    """A runs-table column as the UI names it: "metrics.`validation:accuracy`"."""
    return f"{group}.`{name}`"


def study_view_state(objective: str, mode: str, searched: Iterable[str]) -> dict[str, object]:
    """The shared view of a study's runs: `best_value` (a trial's objective, its best epoch's, as
    the leaderboard ranks it; the study's best on the study run), the objective's last value, the
    searched hyperparameters, the trial's status (finished, pruned, failed) and epochs run; the
    best first."""
    return {
        "selectedColumns": [
            _column("metrics", "best_value"),
            _column("metrics", objective),
            *(_column("params", name) for name in searched),
            _column("tags", "trial_status"),
            _column("metrics", "epochs_run"),
        ],
    }


def study_view_tags(objective: str, mode: str, searched: Iterable[str]) -> dict[str, str]:
    """The experiment tags of a study's experiment: its kind and its shared view."""
    state = study_view_state(objective, mode, searched)
    return {**EXPERIMENT_KIND_TAG, SHARE_TAG: json.dumps(state)}


def experiment_url(base: str, experiment_id: str | None, shared_view: bool) -> str:
    """The UI's address of an experiment's runs in the training view (with the study's shared
    view when the experiment has one); without an experiment, the experiments list."""
    if experiment_id is None:
        return f"{base}/#/experiments?{urlencode(_TRAINING_VIEW)}"
    params = dict(_TRAINING_VIEW)
    if shared_view:
        params["viewStateShareKey"] = SHARE_KEY
    return f"{base}/#/experiments/{experiment_id}/runs?{urlencode(params)}"
