"""MLflow records of studies and training runs: the tracker, its recorder and spool, the Ray
callback, the logged model, the local server and the study's plots.

Importing this package imports neither MLflow nor Ray; the modules that need them import them on
first use.
"""

from tuner.tracking.recorder import (
    EXPERIMENT_TAGS,
    Recorder,
    TrackingUnavailableError,
    sync_spool,
)
from tuner.tracking.tracker import (
    StudyTracker,
    absolute_tracking_uri,
    live_tracker,
    record_training_run,
    resolve_tracking_uri,
)

__all__ = [
    "EXPERIMENT_TAGS",
    "Recorder",
    "StudyTracker",
    "TrackingUnavailableError",
    "absolute_tracking_uri",
    "live_tracker",
    "record_training_run",
    "resolve_tracking_uri",
    "sync_spool",
]
