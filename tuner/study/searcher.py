"""A Ray Tune searcher around our own Optuna study.

Ray's `OptunaSearch` tells Optuna that a trial ASHA stopped is *complete*, with its last, partial
score, so TPE learns from truncated results as if they were final; and its warm start does not work
with define-by-run spaces (ray #18587, #35319). This searcher asks Optuna with the space's
define-by-run function, reports every epoch as an intermediate value (step = epoch), tells Optuna
`PRUNED` for trials ASHA stopped, and warm-starts by enqueueing points (`enqueue_trial`) and adding
earlier trials (`add_trial`).

Ray pickles the searcher into the study and restores it on a resume, so it holds no object of
the running process: it finds the completion criteria in `tuner.study.live` by the study's key,
and leaves its Optuna study there for the summary.
"""

from __future__ import annotations

import math
import os
import pickle
import warnings
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from ray.tune.search import Searcher

from tuner.layout import PrunedLog
from tuner.space.loading import SearchSpace
from tuner.study.live import LiveStudy, live_study

__all__ = ["StudySearcher"]


class StudySearcher(Searcher):
    """Suggests configurations from an Optuna study with the space's define-by-run function."""

    def __init__(
        self,
        space: SearchSpace,
        sampler: optuna.samplers.BaseSampler,
        pruned: PrunedLog,
        warm_trials: list[FrozenTrial] | None = None,
    ) -> None:
        super().__init__(metric=space.objective, mode=space.mode)
        self._space = space
        self._pruned = pruned
        self._study = optuna.create_study(
            study_name=space.name,
            sampler=sampler,
            direction="maximize" if space.mode == "max" else "minimize",
        )
        for trial in warm_trials or []:
            self._study.add_trial(trial)
        for point in space.warm_start.points:
            self._study.enqueue_trial(space.optuna_params(point), skip_if_exists=True)
        self._live: dict[str, optuna.Trial] = {}
        # Ray's own count of samples is not exact across a restore; this one is saved with the
        # searcher, in the same snapshot as the trials Ray restores
        self._suggested = 0
        self.study_key = str(space.study_dir)

    @property
    def study(self) -> optuna.Study:
        """The Optuna study (for plots and `StudySummary.optuna_study`)."""
        return self._study

    def _check_in(self) -> LiveStudy | None:
        """This run's objects of the study, told which Optuna study is the searcher's."""
        live = live_study(self.study_key)
        if live is not None:
            live.optuna_study = self._study
        return live

    def suggest(self, trial_id: str) -> dict[str, Any] | None:  # or Searcher.FINISHED
        live = self._check_in()
        if trial_id not in self._live and (
            self._suggested >= self._space.limits.max_trials
            or (live is not None and live.criteria.met)
            or getattr(self._study.sampler, "is_exhausted", lambda s: False)(self._study)
        ):
            return Searcher.FINISHED  # type: ignore[return-value]
        trial = self._live.get(trial_id)
        if trial is None:
            trial = self._live[trial_id] = self._study.ask()
            self._suggested += 1
        config = self._space.suggest(trial)
        trial.set_user_attr("ray_trial_id", trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        trial = self._live.get(trial_id)
        if trial is not None:
            self._report(trial, result)

    def _report(self, trial: optuna.Trial, result: dict[str, Any]) -> None:
        """One epoch's objective as Optuna's intermediate value at step = epoch."""
        value, epoch = result.get(self.metric), result.get("epoch")
        if value is None or epoch is None or not math.isfinite(value):
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna warns about repeated steps after a resume
            trial.report(float(value), int(epoch))

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        self._check_in()
        trial = self._live.pop(trial_id, None)
        if trial is None:
            return
        if result and not error:
            # When the scheduler stops a trial, Ray passes the result it stopped it at here only,
            # not to on_trial_result; without it TPE would rank a trial stopped at epoch 1 as one
            # with no result at all, and one stopped at epoch 3 by its epoch-2 value.
            self._report(trial, result)
        value = (result or {}).get(self.metric)
        if error or value is None or not math.isfinite(value):
            self._study.tell(trial, None, state=TrialState.FAIL)
        elif self._pruned.epoch(trial_id) is not None:
            self._study.tell(trial, None, state=TrialState.PRUNED)
        else:
            self._study.tell(trial, float(value))

    def save(self, checkpoint_path: str) -> None:
        tmp = f"{checkpoint_path}.tmp"
        with open(tmp, "wb") as f:
            pickle.dump(self.__dict__, f)
        os.replace(tmp, checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))  # noqa: S301 - our own study directory
