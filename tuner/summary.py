"""The seam between a study and its records: what a finished study hands to tracking.

`tuner.study` builds a `StudySummary` from the study folder; `tuner.tracking` records it. Both
import it from here, so neither room imports the other's modules for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["StudySummary"]


@dataclass(frozen=True)
class StudySummary:
    """The outcome of a study (docs/architecture.md, "Tuning <-> tracking seam")."""

    study_name: str
    objective: str
    mode: str
    leaderboard: pd.DataFrame
    best_trial_id: str | None
    best_value: float | None
    best_hyperparameters: dict[str, str]
    best_model_path: Path | None
    histories: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    optuna_study: Any = None
