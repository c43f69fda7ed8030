"""Running a study: Ray Tune's `Tuner` with our Optuna searcher, ASHA, limits, and resume.

`run_study(space)` starts the study in `space.study_dir`, or continues the one found there (Ray's
`Tuner.restore(..., resume_errored=True)`): finished trials are kept, trials that were running
continue from their last reported epoch, and the searcher keeps its Optuna study.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna

from tuner import layout
from tuner.engine_internals import routed_ray_cluster_messages
from tuner.errors import SearchSpaceError
from tuner.layout import PrunedLog, StudyInfo, read_study_file, write_study_file
from tuner.space import SearchSpace, build_sampler
from tuner.study import live
from tuner.study.asha import RecordingASHA
from tuner.study.asha_simulation import expected_epochs_per_trial
from tuner.study.criteria import CompletionCriteria
from tuner.study.progress import TrialProgress
from tuner.study.results import load_trials, summarize_study
from tuner.study.searcher import StudySearcher
from tuner.study.trainable import TrialSettings, train_trial
from tuner.study.warm_start import warm_trials
from tuner.summary import StudySummary

__all__ = ["check_resumable", "is_interrupted", "run_study", "study_exists"]

# Ray's settings for a study's `Tuner.fit`, where Ray reads them (tune.run, TuneController and its
# checkpoint manager); a value the user set in the environment wins.
_RAY_SETTINGS = {
    # the experiment state is saved every N seconds: small, so that a killed study loses little
    "TUNE_GLOBAL_CHECKPOINT_S": "5",
    # with verbose=0: only our progress lines
    "RAY_AIR_NEW_OUTPUT": "0",
    # num_to_keep=1 makes Ray snapshot the experiment after each trial checkpoint, which is what a
    # resume needs; its warning about that would print on every epoch of a small study
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    # Ray's automatic CSV and TensorBoard loggers cost time on every result and nothing here reads
    # them (MLflow is the UI); result.json and params.json (results.py, resume) come from the
    # JsonLoggerCallback run_study installs
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
}


@contextlib.contextmanager
def _ray_settings() -> Iterator[None]:
    """`_RAY_SETTINGS` in `os.environ` for the duration of the block only, so that a later plain
    Ray Tuner in the same process keeps Ray's defaults; the previous values are put back."""
    before = {name: os.environ.get(name) for name in _RAY_SETTINGS}
    for name, value in _RAY_SETTINGS.items():
        os.environ.setdefault(name, value)
    try:
        yield
    finally:
        for name, old in before.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


@contextlib.contextmanager
def _cluster_messages(study_dir: Path, verbose: bool) -> Iterator[None]:
    """Unless `verbose`, the cluster's error messages Ray prints (a dead node's raylet dump) go to
    the study's `ray-messages.log`; the user sees a `notice:` line for each trial retried."""
    if verbose:
        yield
        return
    path = layout.ray_messages_file(study_dir)

    def append(line: str) -> None:
        with open(path, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    with routed_ray_cluster_messages(append):
        yield


def _trial_dirname(trial: Any) -> str:
    return layout.trial_dirname(trial.trial_id)


def _trial_name(trial: Any) -> str:
    return str(trial.trial_id)


def _fingerprint(space: SearchSpace) -> str:
    """What must not change when a study is resumed: what is searched, how, and on which data."""
    parts = {
        "fixed": space.fixed,
        "dimensions": [repr(d) for d in space.dimensions],
        "objective": space.objective,
        "mode": space.mode,
        "data": space.data.model_dump(),
        "sampler": space.sampler.model_dump(),
        "pruner": space.pruner.model_dump(),
        "max_t": space.max_t,
        "seed": space.seed,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def study_exists(space: SearchSpace) -> bool:
    """Whether `space.study_dir` holds a study that Ray can continue."""
    from ray.tune import Tuner

    return (space.study_dir / layout.STUDY_FILE).is_file() and Tuner.can_restore(
        str(space.study_dir)
    )


def check_resumable(space: SearchSpace, resume: bool | None = None) -> bool:
    """Whether `tune run` would continue a study in `space.study_dir` (else it starts one);
    `SearchSpaceError` if `resume` asks for one that is not there, or if the one there was
    started with a different search space. Reads only."""
    study_dir = space.study_dir
    existing = study_exists(space)
    if resume and not existing:
        raise SearchSpaceError(f"there is no study to resume at {study_dir}")
    if existing and read_study_file(study_dir).fingerprint != _fingerprint(space):
        raise SearchSpaceError(
            f"the study at {study_dir} was started with a different search space; "
            "give this one another study.name (or study.directory), or restore the old YAML"
        )
    return existing


def _drop_orphans(study_dir: Path, log: Callable[[str], None]) -> None:
    """Remove trial directories that Ray's last experiment snapshot does not know and that hold no
    finished trial: a study killed right after starting a trial leaves one (the restored searcher
    suggests it again under a new id), and so can a trial created as the study ends."""
    known = layout.ray_known_trial_ids(study_dir)
    if known is None:
        return
    for files in layout.trial_files(study_dir):
        if files.trial_id not in known and not files.has_outcome():
            log(
                f"dropping trial {files.trial_id}: Ray did not keep it (the study was killed or "
                "ended as it started)"
            )
            shutil.rmtree(files.dir)


def _quiet_engines(verbose: bool) -> int:
    """The engines' log level for this study (INFO with `verbose`, else only errors), applied to
    Optuna, MLflow (and its alembic migrations, its artifact progress bar); returned for
    `ray.init`."""
    level = logging.INFO if verbose else logging.ERROR
    optuna.logging.set_verbosity(level)
    if not verbose:  # its "Downloading artifacts" bar when the best model is logged
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow  # noqa: F401  (it configures its loggers on import; set ours after)

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(level)
    # Ray logs each failed trial with its whole traceback; our progress line names the failure and
    # the trial's error.txt keeps the traceback
    failures = logging.INFO if verbose else logging.CRITICAL
    logging.getLogger("ray.tune.execution.tune_controller").setLevel(failures)
    return level


def _ensure_ray(space: SearchSpace, level: int = logging.ERROR) -> None:
    import ray

    if not ray.is_initialized():
        # a cluster only when asked for (RAY_ADDRESS), never one that happens to run here
        ray.init(
            address=os.environ.get("RAY_ADDRESS") or "local",
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=True,
            logging_level=level,
        )
    gpus = ray.cluster_resources().get("GPU", 0)
    if space.resources.gpu > gpus:
        raise SearchSpaceError(
            f"resources.gpu: a trial asks for {space.resources.gpu} GPU(s), "
            f"but the Ray cluster has {gpus:g}"
        )
    cpus = ray.cluster_resources().get("CPU", 0)
    if space.resources.cpu > cpus:
        raise SearchSpaceError(
            f"resources.cpu: a trial asks for {space.resources.cpu} CPU(s), "
            f"but the Ray cluster has {cpus:g}"
        )


def _tracker(space: SearchSpace, pruned: PrunedLog, log: Callable[[str], None]) -> Any:
    if not space.tracking.enabled:
        return None
    from tuner.tracking import StudyTracker

    return StudyTracker(
        tracking_uri=space.tracking_uri,
        experiment_name=space.tracking.experiment_name or space.name,
        study_name=space.name,
        study_dir=space.study_dir,
        objective=space.objective,
        mode=space.mode,
        registered_model_name=space.tracking.registered_model_name,
        alias=space.tracking.alias,
        hyperparameters_of=space.hyperparameter_strings,
        pruned_epoch=pruned.epoch,
        log=log,
    )


def _trainable(space: SearchSpace) -> Any:
    from ray import tune

    settings = TrialSettings(
        study_dir=str(space.study_dir),
        fixed=dict(space.fixed),
        data_root=space.data.path,
        content_type=space.data.content_type,
        attribute_names=space.data.attribute_names,
        label_format=space.data.label_format,
        seed=space.seed,
        threads=max(1, math.floor(space.resources.cpu)),
    )
    resources = {"cpu": space.resources.cpu, "gpu": space.resources.gpu}
    return tune.with_resources(tune.with_parameters(train_trial, settings=settings), resources)


def _new_tuner(space: SearchSpace, pruned: PrunedLog) -> Any:
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    sampler = build_sampler(
        space.sampler.name,
        list(space.dimensions),
        seed=space.sampler.seed if space.sampler.seed is not None else space.seed,
        max_parallel=space.limits.max_parallel,
        options=space.sampler.options,
    )
    searcher = StudySearcher(space, sampler, pruned, warm_trials(space))
    if space.pruner.name == "asha":
        # metric and mode given here, not left to Ray: tuner.pkl keeps this object as it is now,
        # and a restored study would otherwise get an ASHA without a metric that prunes nothing
        scheduler: Any = RecordingASHA(
            pruned,
            default_epochs=space.default_epochs,
            metric=space.objective,
            mode=space.mode,
            max_t=space.max_t,
            grace_period=space.pruner.grace_period,
            reduction_factor=space.pruner.reduction_factor,
        )
    else:
        scheduler = FIFOScheduler()
    reuse = space.resources.reuse_actors
    # metric and mode live in the searcher and the scheduler (Ray refuses them in both places)
    tune_config = tune.TuneConfig(
        search_alg=searcher,
        scheduler=scheduler,
        num_samples=space.limits.max_trials,
        max_concurrent_trials=space.limits.max_parallel,
        time_budget_s=space.limits.max_wall_seconds,
        # reused actors keep GPU memory of the previous trial (ray #23971): CPU-only by default
        reuse_actors=space.resources.gpu == 0 if reuse is None else reuse,
        trial_name_creator=_trial_name,
        trial_dirname_creator=_trial_dirname,
    )
    run_config = tune.RunConfig(
        name=space.study_dir.name,
        storage_path=str(space.study_dir.parent),
        verbose=0,
        failure_config=tune.FailureConfig(max_failures=space.limits.max_retries),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=_callbacks(str(space.study_dir)),
    )
    return tune.Tuner(_trainable(space), tune_config=tune_config, run_config=run_config)


def _callbacks(study_key: str) -> list[Any]:
    """The study's Ray callbacks. Ray pickles them into tuner.pkl with the rest of the run config
    and gives them back on `Tuner.restore`, so each holds the study's key only and finds this
    run's objects (`tuner.study.live`, the live tracker) in the process that runs the study."""
    from ray.tune.logger import JsonLoggerCallback

    from tuner.study.callbacks import ProgressCallback
    from tuner.tracking import tracking_callback

    # JsonLogger is the only logger Ray runs (_RAY_SETTINGS): result.json and params.json
    return [JsonLoggerCallback(), ProgressCallback(study_key), tracking_callback(study_key)]


def run_study(
    space: SearchSpace,
    *,
    resume: bool | None = None,
    log: Callable[[str], None] = print,
    verbose: bool = False,
) -> StudySummary:
    """Run the study `space` describes, or continue it; returns its summary.

    `resume=None` continues a study found in `space.study_dir` and starts one otherwise;
    `resume=True` requires one to continue (`SearchSpaceError` if there is none).
    `verbose` lets Ray's, Optuna's and MLflow's INFO and WARNING lines through (else only errors).
    """
    from ray.tune import Tuner

    study_dir = space.study_dir
    existing = check_resumable(space, resume)
    fingerprint = _fingerprint(space)
    _ensure_ray(space, _quiet_engines(verbose))
    pruned = PrunedLog(study_dir)
    if existing:
        log(f"resuming the study at {study_dir}")
        try:
            tuner = Tuner.restore(
                str(study_dir),
                trainable=_trainable(space),
                resume_unfinished=True,
                resume_errored=True,
            )
        except ModuleNotFoundError as exc:
            if not (exc.name or "").startswith("tuner."):
                raise
            raise SearchSpaceError(
                f"the study at {study_dir} was started by an earlier version of this tool (its "
                f"saved state refers to {exc.name}, which has moved), so it cannot be continued; "
                f"its results stay readable with `tune results {study_dir}`. To run this space "
                "again, give it another study.name (or study.directory)"
            ) from None
    else:
        write_study_file(
            study_dir,
            StudyInfo(
                name=space.name,
                objective=space.objective,
                mode=space.mode,
                fixed=space.fixed,
                searched=[d.name for d in space.dimensions],
                max_t=space.max_t,
                max_trials=space.limits.max_trials,
                fingerprint=fingerprint,
            ),
        )
        layout.write_space_text(study_dir, space.text)
        log(
            f"study {space.name}: {space.limits.max_trials} trials, sampler {space.sampler.name}, "
            f"pruner {space.pruner.name}, objective {space.mode} {space.objective}; in {study_dir}"
        )
        tuner = _new_tuner(space, pruned)

    stopper = CompletionCriteria(
        space.objective,
        space.mode,
        space.limits.target_value,
        space.limits.max_trials_not_improving,
    )
    progress = TrialProgress(
        space.objective,
        space.mode,
        space.limits.max_trials,
        space.max_t,
        pruned,
        stopper,
        log,
        expected_epochs=expected_epochs_per_trial(space),
        max_retries=space.limits.max_retries,
    )
    progress.resume_from(load_trials(study_dir, space.objective, space.mode))
    study_key = str(study_dir)
    running = live.LiveStudy(criteria=stopper, progress=progress)
    live.register(study_key, running)
    tracker = _tracker(space, pruned, log)
    try:
        if tracker is not None:
            tracker.start_study(space_text=space.text, settings=space.settings(), resume=existing)
        with _ray_settings(), _cluster_messages(study_dir, verbose):
            tuner.fit()
        _drop_orphans(study_dir, log)
        if stopper.reason:
            log(f"study ended early: {stopper.reason}")
        summary = summarize_study(study_dir, optuna_study=running.optuna_study)
        if is_interrupted(summary):
            log(f"the study was interrupted; `tune run {space.source or 'SPACE'}` continues it")
        elif tracker is not None:
            tracker.finish_study(summary)
    finally:
        live.unregister(study_key)
        if tracker is not None:
            tracker.close()  # marks an unfinished study's run KILLED; nothing after finish_study
    return summary


def is_interrupted(summary: StudySummary) -> bool:
    """Whether the study stopped with trials still running (Ctrl-C): it can be continued."""
    board = summary.leaderboard
    return bool(not board.empty and (board["status"] == "running").any())
