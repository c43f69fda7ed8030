"""Warm start: an earlier study's finished and pruned trials, as Optuna trials of this space."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.errors import SearchSpaceError
from tuner.layout import read_study_file
from tuner.space import SearchSpace, canonical
from tuner.study.results import load_trials

__all__ = ["warm_trials"]


def warm_trials(space: SearchSpace) -> list[FrozenTrial]:
    """Earlier studies' finished and pruned trials, as Optuna trials of this space."""
    dims = {d.name: d for d in space.dimensions}
    trials = []
    for study_dir in map(Path, space.warm_start.studies):
        info = read_study_file(study_dir)
        if info.objective != space.objective or info.mode != space.mode:
            raise SearchSpaceError(
                f"warm_start.studies: {study_dir} optimised {info.mode} {info.objective}, "
                f"but this study optimises {space.mode} {space.objective}"
            )
        for record in load_trials(study_dir, info.objective, info.mode):
            if record.status not in ("finished", "pruned") or record.value is None:
                continue
            try:
                config = {k: canonical(k, v) for k, v in record.config.items() if k in dims}
            except (ValueError, TypeError):
                continue
            if not all(dims[k].is_active({**space.base, **config}) for k in config):
                continue
            pruned = record.status == "pruned"
            try:
                trial = optuna.trial.create_trial(
                    state=TrialState.PRUNED if pruned else TrialState.COMPLETE,
                    value=None if pruned else record.value,
                    params=space.optuna_params(config),
                    distributions=space.distributions(config),
                    intermediate_values={
                        int(h["epoch"]): h[space.objective]
                        for h in record.history
                        if space.objective in h and math.isfinite(h[space.objective])
                    },
                    user_attrs={"warm_start_from": f"{info.name}/{record.trial_id}"},
                )
            except ValueError:
                continue  # outside this study's ranges (Optuna checks each parameter)
            trials.append(trial)
    return trials
