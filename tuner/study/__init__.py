"""Running a study: Ray Tune with our Optuna searcher, ASHA, completion criteria, resume; and
reading a finished or interrupted study's results.

Names are imported on first use: `tune results` reads a study without importing Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainer.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from tuner.study.forecast import Forecast, forecast_study
    from tuner.study.results import TrialRecord, format_leaderboard, load_trials, summarize_study
    from tuner.study.running import is_interrupted, run_study, study_exists

__all__ = [
    "Forecast",
    "forecast_study",
    "TrialRecord",
    "format_leaderboard",
    "is_interrupted",
    "load_trials",
    "run_study",
    "study_exists",
    "summarize_study",
]

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Forecast": "tuner.study.forecast",
    "forecast_study": "tuner.study.forecast",
    "run_study": "tuner.study.running",
    "study_exists": "tuner.study.running",
    "is_interrupted": "tuner.study.running",
    "TrialRecord": "tuner.study.results",
    "load_trials": "tuner.study.results",
    "summarize_study": "tuner.study.results",
    "format_leaderboard": "tuner.study.results",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
