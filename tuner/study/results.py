"""A study's results, read from its directory: the leaderboard, the best trial and its model.

Each trial directory (`STUDY_DIR/trial_<id>/`) holds Ray's `params.json` (the sampled
hyperparameters) and `result.json` (one JSON object per reported epoch), Ray's `error.txt` when the
trial failed, our `outcome.json` when `fit` ran to its end, and our `pruned.json` (`PrunedLog`) with
the epoch at which the trial was stopped early; `STUDY_DIR/study.json` the objective and the fixed
hyperparameters. Everything here works without Ray running.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from trainer.errors import HyperparameterError
from trainer.hyperparameters import parse_hyperparameters
from tuner.errors import SearchSpaceError
from tuner.study.searcher import PrunedLog
from tuner.study.trainable import OUTCOME_FILE

__all__ = [
    "STUDY_FILE",
    "StudySummary",
    "TrialRecord",
    "format_leaderboard",
    "load_trials",
    "summarize_study",
    "write_study_file",
]

STUDY_FILE = "study.json"
BEST_DIR = "best"
_STATUS_ORDER = {"finished": 0, "pruned": 1, "running": 2, "failed": 3}


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


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_study_file(study_dir: Path, info: dict[str, Any]) -> None:
    """Write `STUDY_DIR/study.json` (name, objective, mode, fixed hyperparameters, max_t)."""
    study_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(study_dir / STUDY_FILE, json.dumps(info, indent=1, sort_keys=True))


def read_study_file(study_dir: Path) -> dict[str, Any]:
    """The study's `study.json`; `SearchSpaceError` if `study_dir` is not a study."""
    path = Path(study_dir) / STUDY_FILE
    if not path.is_file():
        raise SearchSpaceError(f"{study_dir} is not a study directory (it has no {STUDY_FILE})")
    info: dict[str, Any] = json.loads(path.read_text())
    return info


def _history(trial_dir: Path) -> list[dict[str, float]]:
    by_epoch: dict[int, dict[str, float]] = {}
    path = trial_dir / "result.json"
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            if "epoch" not in row:
                continue
            metrics = {
                k: float(v)
                for k, v in row.items()
                if (":" in k or k in ("epoch", "learning_rate", "epoch_seconds"))
                and isinstance(v, int | float)
                and not isinstance(v, bool)
            }
            by_epoch[int(row["epoch"])] = metrics  # a replayed epoch after a resume counts once
    return [by_epoch[e] for e in sorted(by_epoch)]


def _best(history: list[dict[str, float]], objective: str, mode: str) -> float | None:
    values = [h[objective] for h in history if objective in h and math.isfinite(h[objective])]
    if not values:
        return None
    return max(values) if mode == "max" else min(values)


def _error(trial_dir: Path) -> str | None:
    path = trial_dir / "error.txt"
    if not path.is_file():
        return None
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:500] if lines else "failed"


def load_trials(study_dir: Path, objective: str, mode: str) -> list[TrialRecord]:
    """Every trial of the study at `study_dir`, with its status, history and best objective."""
    pruned = PrunedLog(study_dir)
    records = []
    for trial_dir in sorted(study_dir.glob("trial_*")):
        params = trial_dir / "params.json"
        if not params.is_file():
            continue
        trial_id = trial_dir.name[len("trial_") :]
        history = _history(trial_dir)
        outcome = trial_dir / OUTCOME_FILE
        error = _error(trial_dir)
        model_path = None
        if outcome.is_file():
            status = "finished"
            model = Path(json.loads(outcome.read_text())["model_path"])
            model_path = model if model.is_file() else None
        elif error is not None:
            status = "failed"
        elif pruned.epoch(trial_id) is not None:
            status = "pruned"
        else:
            status = "running"
        records.append(
            TrialRecord(
                trial_id=trial_id,
                status=status,
                config=json.loads(params.read_text()),
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


def _leaderboard(records: list[TrialRecord], info: dict[str, Any]) -> pd.DataFrame:
    objective, mode = info["objective"], info["mode"]
    searched = list(info.get("searched", []))
    rows = []
    for r in records:
        row: dict[str, Any] = {
            "trial_id": r.trial_id,
            "status": r.status,
            "epochs_run": len(r.history),
            objective: r.value,
        }
        row.update({name: r.config.get(name) for name in searched})
        for name, value in _full_hyperparameters(info.get("fixed", {}), r.config).items():
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


def _copy_best(
    study_dir: Path, record: TrialRecord, hyperparameters: dict[str, str]
) -> Path | None:
    best = study_dir / BEST_DIR
    best.mkdir(exist_ok=True)
    _write_atomic(best / "hyperparameters.json", json.dumps(hyperparameters, indent=1))
    _write_atomic(
        best / "trial.json",
        json.dumps(
            {"trial_id": record.trial_id, "value": record.value, "config": record.config}, indent=1
        ),
    )
    if record.model_path is None:
        return None
    target = best / "model.tar.gz"
    tmp = best / ".model.tar.gz.tmp"
    shutil.copyfile(record.model_path, tmp)
    os.replace(tmp, target)
    return target


def summarize_study(
    study_dir: str | Path, *, optuna_study: Any = None, copy_best: bool = True
) -> StudySummary:
    """Read the study at `study_dir`; write `leaderboard.csv`, and copy the best finished trial's
    `model.tar.gz` and `hyperparameters.json` to `STUDY_DIR/best/`."""
    study_dir = Path(study_dir).resolve()
    info = read_study_file(study_dir)
    objective, mode = info["objective"], info["mode"]
    records = load_trials(study_dir, objective, mode)
    frame = _leaderboard(records, info)
    _write_atomic(study_dir / "leaderboard.csv", frame.to_csv(index=False))
    scored = [r for r in records if r.value is not None]
    # the best trial is the best one that has a model; a pruned trial never wrote one
    candidates = [r for r in scored if r.model_path is not None] or scored
    sign = 1.0 if mode == "max" else -1.0
    best = max(candidates, key=lambda r: sign * r.value) if candidates else None  # type: ignore[operator]
    best_hp: dict[str, str] = {}
    best_model = None
    if best is not None:
        best_hp = _full_hyperparameters(info.get("fixed", {}), best.config)
        if copy_best:
            best_model = _copy_best(study_dir, best, best_hp)
    return StudySummary(
        study_name=info["name"],
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
