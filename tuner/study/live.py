"""What a study running in this process shares with the objects Ray pickles.

Ray pickles the searcher, the scheduler and the run's callbacks into the study directory when the
study starts and unpickles them on `tune run --resume`, so they cannot hold this process's objects
(the completion criteria, the progress lines and their `log`). They hold the study's key (its
directory) and find the live study here; a restored study reaches the objects that the resuming
process made, through Ray's public callback and searcher hooks only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuner.study.criteria import CompletionCriteria
from tuner.study.progress import TrialProgress

__all__ = ["LiveStudy", "live_study", "register", "unregister"]


@dataclass
class LiveStudy:
    """This run's objects of one study. `optuna_study` is the searcher's, set when it is used."""

    criteria: CompletionCriteria
    progress: TrialProgress
    optuna_study: Any = None


_LIVE: dict[str, LiveStudy] = {}


def register(study_key: str, live: LiveStudy) -> None:
    """Make `live` the study `study_key`'s objects for the searcher and callbacks."""
    _LIVE[study_key] = live


def unregister(study_key: str) -> None:
    _LIVE.pop(study_key, None)


def live_study(study_key: str) -> LiveStudy | None:
    """The objects of the study `study_key` running in this process, if it runs here."""
    return _LIVE.get(study_key)
