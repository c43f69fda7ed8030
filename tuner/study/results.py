"""A study's results, read from its folder (`tuner.layout`): the leaderboard, the best trial and
its model. Everything here works without Ray running.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from trainer.errors import HyperparameterError
from trainer.hyperparameters import parse_hyperparameters
from tuner import layout
from tuner.layout import PrunedLog, StudyInfo, read_study_file, write_text_atomic
from tuner.summary import StudySummary

__all__ = [
    "StudySummary",
    "TrialRecord",
    "format_leaderboard",
    "load_trials",
    "summarize_study",
]

_STATUS_ORDER = {"finished": 0, "pruned": 1, "running": 2, "failed": 3}


@dataclass(frozen=True)
class TrialRecord:
    """One trial as found on disk."""

    trial_id: str
    status: str
    config: dict[str, Any]
    history: list[dict[str, float]]
    value: float | None
    model_path: Path | None
    error: str | None


def _best(history: list[dict[str, float]], objective: str, mode: str) -> float | None:
    values = [h[objective] for h in history if objective in h and math.isfinite(h[objective])]
    if not values:
        return None
    return max(values) if mode == "max" else min(values)


def load_trials(study_dir: Path, objective: str, mode: str) -> list[TrialRecord]:
    """Every trial of the study at `study_dir`, with its status, history and best objective."""
    pruned = PrunedLog(study_dir)
    records = []
    for files in layout.trial_files(study_dir):
        config = files.read_params()
        if config is None:
            continue
        history = layout.read_history(files.results)
        outcome = files.read_outcome()
        error = files.read_error()
        model_path = None
        if outcome is not None:
            status = "finished"
            model = Path(outcome.model_path)
            model_path = model if model.is_file() else None
        elif error is not None:
            status = "failed"
        elif pruned.epoch(files.trial_id) is not None:
            status = "pruned"
        else:
            status = "running"
        records.append(
            TrialRecord(
                trial_id=files.trial_id,
                status=status,
                config=config,
                history=history,
                value=_best(history, objective, mode),
                model_path=model_path,
                error=error if status == "failed" else None,
            )
        )
    return records


def _full_hyperparameters(fixed: dict[str, Any], config: dict[str, Any]) -> dict[str, str]:
    try:
        return parse_hyperparameters({**fixed, **config}).to_strings()
    except HyperparameterError:
        return {k: str(v) for k, v in {**fixed, **config}.items()}


def _leaderboard(records: list[TrialRecord], info: StudyInfo) -> pd.DataFrame:
    objective, mode = info.objective, info.mode
    searched = list(info.searched)
    rows = []
    for r in records:
        row: dict[str, Any] = {
            "trial_id": r.trial_id,
            "status": r.status,
            "epochs_run": len(r.history),
            objective: r.value,
        }
        row.update({name: r.config.get(name) for name in searched})
        for name, value in _full_hyperparameters(info.fixed, r.config).items():
            row.setdefault(name, value)
        if r.error:
            row["error"] = r.error
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["trial_id", "status", "epochs_run", objective])
    frame["_rank"] = frame["status"].map(_STATUS_ORDER)
    frame["_missing"] = frame[objective].isna()
    frame = frame.sort_values(
        ["_missing", objective, "_rank"], ascending=[True, mode == "min", True], kind="stable"
    )
    return frame.drop(columns=["_rank", "_missing"]).reset_index(drop=True)


def format_leaderboard(frame: pd.DataFrame, objective: str, limit: int | None = None) -> str:
    """The leaderboard as text: the fixed columns, then only the hyperparameters that vary."""
    if frame.empty:
        return "(no trials yet)"
    head = ["trial_id", "status", "epochs_run", objective]
    varying = [
        c
        for c in frame.columns
        # repr: NaN counts as a value (a conditional parameter only one trial sampled still
        # varies), and unhashable values compare by their text
        if c not in head and c != "error" and frame[c].map(repr).nunique() > 1
    ]
    shown = frame[head + varying + (["error"] if "error" in frame else [])]
    hidden = 0 if limit is None else max(0, len(shown) - limit)
    if hidden:
        shown = shown.head(limit)
    with pd.option_context(
        "display.width", 200, "display.max_columns", 50, "display.float_format", "{:.4g}".format
    ):
        text = shown.to_string(index=False, na_rep="-")
    return text + (f"\n({len(shown)} of {len(frame)} trials shown)" if hidden else "")


def summarize_study(
    study_dir: str | Path, *, optuna_study: Any = None, copy_best: bool = True
) -> StudySummary:
    """Read the study at `study_dir`; write `leaderboard.csv`, and copy the best finished trial's
    `model.tar.gz` and `hyperparameters.json` to `STUDY_DIR/best/`."""
    study_dir = Path(study_dir).resolve()
    info = read_study_file(study_dir)
    objective, mode = info.objective, info.mode
    records = load_trials(study_dir, objective, mode)
    frame = _leaderboard(records, info)
    write_text_atomic(study_dir / layout.LEADERBOARD_FILE, frame.to_csv(index=False))
    scored = [r for r in records if r.value is not None]
    # the best trial is the best one that has a model; a pruned trial never wrote one
    candidates = [r for r in scored if r.model_path is not None] or scored
    sign = 1.0 if mode == "max" else -1.0
    best = max(candidates, key=lambda r: sign * r.value) if candidates else None  # type: ignore[operator]
    best_hp: dict[str, str] = {}
    best_model = None
    if best is not None:
        best_hp = _full_hyperparameters(info.fixed, best.config)
        if copy_best:
            best_model = layout.write_best(
                study_dir,
                {"trial_id": best.trial_id, "value": best.value, "config": best.config},
                best_hp,
                best.model_path,
            )
    return StudySummary(
        study_name=info.name,
        objective=objective,
        mode=mode,
        leaderboard=frame,
        best_trial_id=best.trial_id if best else None,
        best_value=best.value if best else None,
        best_hyperparameters=best_hp,
        best_model_path=best_model,
        histories={r.trial_id: r.history for r in records},
        optuna_study=optuna_study,
    )
