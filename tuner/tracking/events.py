"""Trial events, from Ray's callback to the study's tracker, and the trackers live in this process.

`TrackingCallback` pickles to the study's key only (Ray keeps the run config in `tuner.pkl` and
gives it back on `Tuner.restore`), so it finds the tracker here by that key: a restored study
records through the tracker that the resuming process created, and a study run without tracking
records nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "TrialEnded",
    "TrialEvent",
    "TrialEventSink",
    "TrialResult",
    "TrialStarted",
    "live_tracker",
    "register",
    "unregister",
]


@dataclass(frozen=True)
class TrialStarted:
    trial_id: str
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialResult:
    """One reported epoch."""

    trial_id: str
    config: dict[str, Any]
    result: dict[str, Any]


@dataclass(frozen=True)
class TrialEnded:
    """Finished or stopped (`error` None), or failed (`error`: Ray's error text)."""

    trial_id: str
    config: dict[str, Any]
    error: str | None = None


TrialEvent = TrialStarted | TrialResult | TrialEnded


class TrialEventSink(Protocol):
    """What records trial events (`StudyTracker`)."""

    def record_event(self, event: TrialEvent) -> None: ...


_LIVE: dict[str, TrialEventSink] = {}


def register(study_key: str, sink: TrialEventSink) -> None:
    _LIVE[study_key] = sink


def unregister(study_key: str) -> None:
    _LIVE.pop(study_key, None)


def live_tracker(study_key: str) -> TrialEventSink | None:
    """The tracker recording the study `study_key` in this process, if any."""
    return _LIVE.get(study_key)
