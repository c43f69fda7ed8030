"""The study folder: the one module that knows its file names and formats.

```
STUDY_DIR/
  study.json                 what the study optimises (StudyInfo), written when it starts
  space.yaml                 the search space it was started with
  leaderboard.csv            written by every summary (`tune run`, `tune results`)
  best/                      the best trial: model.tar.gz, hyperparameters.json, trial.json
  trial_<id>/                one per Ray trial (its id is the directory name's suffix)
    params.json              Ray: the sampled hyperparameters
    result.json              Ray: one JSON object per reported epoch (a kill can cut the last
                             line; a resumed trial can repeat an epoch)
    error.txt                Ray: the traceback of a failed trial
    outcome.json             ours: `fit` ran to its end (Outcome)
    pruned.json              ours: the epoch the trial was stopped early at (PrunedLog)
    state/ train.log output/ the trial's training state, log and model.tar.gz
  experiment_state-*.json    Ray: its snapshot of the trials it knows (one per run)
  mlflow-runs.json           tracking: the store and the MLflow run of each key (TrackingRuns)
  mlflow-spool/operations.jsonl   tracking: records waiting for the store (one JSON per line)
  tracking/                  tracking: the leaderboard and plots as logged
```

A `tune train --track` output directory holds the two tracking entries too. Everything here is
plain file work: no Ray, no Optuna, no MLflow. Every file we write is written atomically.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuner.errors import SearchSpaceError

__all__ = [
    "BEST_DIR",
    "LEADERBOARD_FILE",
    "RUNS_FILE",
    "SPOOL_DIR",
    "STUDY_FILE",
    "TRACKING_DIR",
    "Outcome",
    "PrunedLog",
    "StudyInfo",
    "TrackingRuns",
    "TrialFiles",
    "ray_known_trial_ids",
    "ray_messages_file",
    "read_history",
    "read_study_file",
    "read_tracking_runs",
    "spool_file",
    "tracking_runs_file",
    "trial_dirname",
    "trial_files",
    "write_best",
    "write_space_text",
    "write_study_file",
    "write_text_atomic",
    "write_tracking_runs",
]

STUDY_FILE = "study.json"
SPACE_FILE = "space.yaml"
LEADERBOARD_FILE = "leaderboard.csv"
BEST_DIR = "best"
TRACKING_DIR = "tracking"
_TRIAL_PREFIX = "trial_"
RUNS_FILE = "mlflow-runs.json"
SPOOL_DIR = "mlflow-spool"
RAY_MESSAGES_FILE = "ray-messages.log"
_SPOOL_FILE = "operations.jsonl"
# result.json keys that are metrics the trainer reported (Ray adds its own beside them)
_METRIC_NAMES = ("epoch", "learning_rate", "epoch_seconds")


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder: a reader never sees
    half a file, and a kill leaves the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------- study files


@dataclass(frozen=True)
class StudyInfo:
    """`study.json`: what a study optimises, read by `tune results`, warm starts and resumes."""

    name: str
    objective: str
    mode: str
    fixed: dict[str, Any] = field(default_factory=dict)
    searched: list[str] = field(default_factory=list)
    max_t: int | None = None
    max_trials: int | None = None
    fingerprint: str | None = None


def write_study_file(study_dir: Path, info: StudyInfo | Mapping[str, Any]) -> None:
    """Write `STUDY_DIR/study.json` (creating the study directory); `info` may be given as the
    mapping of `StudyInfo`'s fields."""
    if not isinstance(info, StudyInfo):
        info = StudyInfo(**info)
    text = json.dumps(asdict(info), indent=1, sort_keys=True)
    write_text_atomic(Path(study_dir) / STUDY_FILE, text)


def read_study_file(study_dir: Path) -> StudyInfo:
    """The study's `study.json`; `SearchSpaceError` if `study_dir` is not a study."""
    path = Path(study_dir) / STUDY_FILE
    if not path.is_file():
        raise SearchSpaceError(f"{study_dir} is not a study directory (it has no {STUDY_FILE})")
    data = json.loads(path.read_text())
    known = StudyInfo.__dataclass_fields__
    return StudyInfo(**{k: v for k, v in data.items() if k in known})


def write_space_text(study_dir: Path, text: str) -> None:
    """Keep the search space the study was started with (`STUDY_DIR/space.yaml`)."""
    write_text_atomic(Path(study_dir) / SPACE_FILE, text)


def write_best(
    study_dir: Path,
    trial: Mapping[str, Any],
    hyperparameters: Mapping[str, str],
    model_path: Path | None,
) -> Path | None:
    """Write `STUDY_DIR/best/`: `trial.json` (`trial`: its id, value and sampled config),
    `hyperparameters.json` (the full contract, string form) and a copy of its `model.tar.gz`
    when it has one; returns the copy's path."""
    best = Path(study_dir) / BEST_DIR
    write_text_atomic(best / "hyperparameters.json", json.dumps(dict(hyperparameters), indent=1))
    write_text_atomic(best / "trial.json", json.dumps(dict(trial), indent=1))
    if model_path is None:
        return None
    target = best / "model.tar.gz"
    tmp = best / ".model.tar.gz.tmp"
    shutil.copyfile(model_path, tmp)
    os.replace(tmp, target)
    return target


# ---------------------------------------------------------------------------------- trials


def trial_dirname(trial_id: str) -> str:
    """The directory name of a trial inside the study directory."""
    return f"{_TRIAL_PREFIX}{trial_id}"


@dataclass(frozen=True)
class Outcome:
    """`outcome.json`: written when `fit` returned, so the trial ran to its end."""

    model_path: str
    best_epoch: int | None = None
    stopped_early: bool | None = None
    fit_seconds: float | None = None
    hyperparameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialFiles:
    """The files of one trial, `STUDY_DIR/trial_<id>/`."""

    study_dir: Path
    trial_id: str

    @property
    def dir(self) -> Path:
        return self.study_dir / trial_dirname(self.trial_id)

    @property
    def state_dir(self) -> Path:
        return self.dir / "state"

    @property
    def output_dir(self) -> Path:
        return self.dir / "output"

    @property
    def log(self) -> Path:
        return self.dir / "train.log"

    @property
    def params(self) -> Path:
        return self.dir / "params.json"

    @property
    def results(self) -> Path:
        return self.dir / "result.json"

    @property
    def error(self) -> Path:
        return self.dir / "error.txt"

    @property
    def outcome_file(self) -> Path:
        return self.dir / "outcome.json"

    @property
    def pruned_file(self) -> Path:
        return self.dir / "pruned.json"

    def has_outcome(self) -> bool:
        """Whether `fit` ran to its end (a trial restarted after that need not train again)."""
        return self.outcome_file.is_file()

    def write_outcome(self, outcome: Outcome) -> None:
        write_text_atomic(self.outcome_file, json.dumps(asdict(outcome), indent=1))

    def read_outcome(self) -> Outcome | None:
        if not self.outcome_file.is_file():
            return None
        data = json.loads(self.outcome_file.read_text())
        return Outcome(**{k: v for k, v in data.items() if k in Outcome.__dataclass_fields__})

    def read_params(self) -> dict[str, Any] | None:
        """The sampled hyperparameters, or None before Ray wrote them (or while it writes them:
        Ray does not write params.json atomically, and `tune results` may read a running study)."""
        try:
            params: dict[str, Any] = json.loads(self.params.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return params

    def read_error(self) -> str | None:
        """The last line of Ray's traceback (at most 500 characters), or None if it did not
        fail."""
        if not self.error.is_file():
            return None
        lines = [ln for ln in self.error.read_text(errors="replace").splitlines() if ln.strip()]
        return lines[-1][:500] if lines else "failed"


def trial_files(study_dir: Path) -> Iterator[TrialFiles]:
    """Every trial directory of the study, sorted by trial id."""
    for path in sorted(Path(study_dir).glob(f"{_TRIAL_PREFIX}*")):
        if path.is_dir():
            yield TrialFiles(Path(study_dir), path.name.removeprefix(_TRIAL_PREFIX))


def read_history(results_file: Path) -> list[dict[str, float]]:
    """The per-epoch metrics in a trial's `result.json`, one entry per epoch, in epoch order.

    A line cut by a kill is skipped; an epoch repeated after a resume (its checkpoint lagged)
    counts once, with its last values. Only the trainer's metrics are kept (names with a colon,
    `epoch`, `learning_rate`, `epoch_seconds`), not Ray's own keys."""
    by_epoch: dict[int, dict[str, float]] = {}
    if not results_file.is_file():
        return []
    for line in results_file.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(row, dict) or "epoch" not in row:
            continue
        by_epoch[int(row["epoch"])] = {
            k: float(v)
            for k, v in row.items()
            if (":" in k or k in _METRIC_NAMES)
            and isinstance(v, int | float)
            and not isinstance(v, bool)
        }
    return [by_epoch[e] for e in sorted(by_epoch)]


class PrunedLog:
    """Which trials were stopped early and at which epoch: `STUDY_DIR/trial_<id>/pruned.json`.

    One small file per trial, next to the trial's `outcome.json`, read afresh on every question,
    so the scheduler and searcher Ray restores from its snapshot, this run's callbacks and the
    results all see the same answer. Not one study-level JSON file: on a resume Ray copies the
    study directory's top-level `*.json` files into its driver staging directory and uploads them
    back over the study directory at every experiment sync, so such a file would lose what was
    recorded after the restore (a trial pruned in a resumed run would read as still running).
    """

    def __init__(self, study_dir: Path) -> None:
        self.study_dir = Path(study_dir)

    def record(self, trial_id: str, epoch: int) -> None:
        """Remember that `trial_id` was stopped after `epoch` (written atomically)."""
        path = TrialFiles(self.study_dir, trial_id).pruned_file
        write_text_atomic(path, json.dumps({"epoch": int(epoch)}))

    def epoch(self, trial_id: str) -> int | None:
        """The epoch at which `trial_id` was stopped early, or None if it was not.

        A trial whose `outcome.json` exists ran to its end (a resumed trial can finish after an
        early stop the killed run recorded but Ray's snapshot missed): not stopped early, so the
        progress lines, Optuna and the leaderboard agree."""
        files = TrialFiles(self.study_dir, trial_id)
        if files.has_outcome():
            return None
        try:
            return int(json.loads(files.pruned_file.read_text())["epoch"])
        except FileNotFoundError:
            return None


def ray_known_trial_ids(study_dir: Path) -> set[str] | None:
    """The trial ids in Ray's experiment snapshots (`experiment_state-*.json`, Ray's own format:
    `trial_data` holds each trial as JSON text or an object with `trial_id`); None if there is
    no snapshot yet."""
    states = list(Path(study_dir).glob("experiment_state-*.json"))
    if not states:
        return None
    known = set()
    for state in states:
        for entry in json.loads(state.read_text()).get("trial_data", []):
            raw = entry[0] if isinstance(entry, list) else entry
            known.add(json.loads(raw)["trial_id"] if isinstance(raw, str) else raw["trial_id"])
    return known


# ---------------------------------------------------------------------------------- tracking


@dataclass
class TrackingRuns:
    """`mlflow-runs.json`: the store records go to, the MLflow run id of each local key
    (`study`, `trial:<id>`, `train:<id>`), and the epochs (steps) already logged per key: what
    makes a resume reuse its runs and a replay skip what is recorded. `instance` names this
    bookkeeping in the runs' tags, so a run created just before a kill (its id not yet saved here)
    is found again instead of created twice."""

    tracking_uri: str
    runs: dict[str, str] = field(default_factory=dict)
    steps: dict[str, list[int]] = field(default_factory=dict)
    instance: str = field(default_factory=lambda: uuid.uuid4().hex)


def read_tracking_runs(folder: Path) -> TrackingRuns | None:
    """The folder's `mlflow-runs.json`, or None when it was never tracked."""
    path = Path(folder) / RUNS_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return TrackingRuns(
        tracking_uri=str(data["tracking_uri"]),
        runs=dict(data.get("runs", {})),
        steps={k: [int(s) for s in v] for k, v in data.get("steps", {}).items()},
        **({"instance": str(data["instance"])} if "instance" in data else {}),
    )


def write_tracking_runs(folder: Path, runs: TrackingRuns) -> None:
    write_text_atomic(Path(folder) / RUNS_FILE, json.dumps(asdict(runs), indent=1, sort_keys=True))


def tracking_runs_file(folder: Path) -> Path:
    """Where `mlflow-runs.json` is (for messages)."""
    return Path(folder) / RUNS_FILE


def ray_messages_file(study_dir: Path) -> Path:
    """Where a study keeps the cluster messages Ray would print (a dead node's raylet dump)."""
    return Path(study_dir) / RAY_MESSAGES_FILE


def spool_file(folder: Path) -> Path:
    """The file holding tracking records that wait for the store, one JSON object per line."""
    return Path(folder) / SPOOL_DIR / _SPOOL_FILE
