"""MLflow records of studies and training runs: the study's tracker, the training run's record,
the typed records and their recorder with its spool, the Ray callback, the logged model, the local
server and the study's plots.

Importing this package imports neither MLflow nor Ray; the modules that need them import them on
first use.
"""

from tuner.tracking.events import live_tracker
from tuner.tracking.recorder import Recorder, TrackingUnavailableError, sync_spool
from tuner.tracking.store import EXPERIMENT_TAGS
from tuner.tracking.tracker import StudyTracker, tracking_callback
from tuner.tracking.training import record_training_run
from tuner.tracking_uri import absolute_tracking_uri, resolve_tracking_uri

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
    "tracking_callback",
]
