"""Real studies: real Ray, real Optuna, ResNet-20 on real CIFAR-10 images (tests/assets)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tuner.errors import SearchSpaceError
from tuner.space import load_space
from tuner.study import run_study
from tuner.study.results import summarize_study

pytestmark = pytest.mark.slow

FIXED = """\
fixed:
  num_classes: 10
  num_training_samples: 300
  num_layers: 20
  image_shape: 3,32,32
  mini_batch_size: 64
  epochs: {epochs}
"""


def write_space(tmp_path: Path, assets: Path, name: str, body: str, epochs: int = 3) -> Path:
    text = (
        f"study: {{name: {name}, directory: studies, seed: 0}}\n"
        f"data: {{path: {assets / 'cifar10'}}}\n"
        "tracking: {enabled: false}\n" + FIXED.format(epochs=epochs) + body
    )
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def trial_params(study_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(study_dir.glob("trial_*/params.json"))]


def test_asha_stops_poor_trials_early_and_conditions_hold(
    ray_cluster: None, tmp_path: Path, assets: Path
) -> None:
    path = write_space(
        tmp_path,
        assets,
        "asha",
        """\
search:
  learning_rate: {type: continuous, low: 1.0e-4, high: 0.5, scaling: log}
  optimizer: {type: categorical, values: [sgd, adam]}
  momentum: {type: continuous, low: 0.5, high: 0.99, when: {optimizer: [sgd]}}
  beta_1: {type: continuous, low: 0.8, high: 0.95, when: {optimizer: [adam]}}
sampler: {name: random}
pruner: {name: asha, grace_period: 1, reduction_factor: 2}
limits: {max_trials: 8, max_parallel: 2}
""",
        epochs=4,
    )
    lines: list[str] = []
    summary = run_study(load_space(path), log=lines.append)
    board = summary.leaderboard
    assert len(board) == 8 and board["trial_id"].is_unique
    assert set(board["status"]) <= {"finished", "pruned"}
    pruned = board[board["status"] == "pruned"]
    finished = board[board["status"] == "finished"]
    assert len(pruned) >= 1 and len(finished) >= 1
    assert pruned["epochs_run"].max() < finished["epochs_run"].min() == 4
    # one progress line per trial, with the best so far
    ended = [ln for ln in lines if ln.startswith("[")]
    assert len(ended) == 8 and all("best" in ln for ln in ended)
    assert any("pruned at epoch" in ln for ln in ended)
    for params in trial_params(summary_dir := path.parent / "studies" / "asha"):
        assert ("momentum" in params) == (params["optimizer"] == "sgd")
        assert ("beta_1" in params) == (params["optimizer"] == "adam")
    # the best trial's model and hyperparameters are copied to best/; the CSV has every row
    assert summary.best_model_path == summary_dir / "best" / "model.tar.gz"
    assert summary.best_model_path.is_file()
    best_hp = json.loads((summary_dir / "best" / "hyperparameters.json").read_text())
    assert best_hp == summary.best_hyperparameters and best_hp["num_layers"] == "20"
    assert summary.best_trial_id == finished.iloc[0]["trial_id"]
    assert (summary_dir / "leaderboard.csv").read_text().count("\n") == 9
    # Optuna was told the truth about pruned trials
    states = {t.user_attrs["ray_trial_id"]: t.state.name for t in summary.optuna_study.trials}
    assert {states[t] for t in pruned["trial_id"]} == {"PRUNED"}
    assert {states[t] for t in finished["trial_id"]} == {"COMPLETE"}
    # ... with every epoch each trial ran, including the one ASHA stopped it at (Ray hands that
    # result only to on_trial_complete): TPE ranks pruned trials by their last step and value
    steps = {
        t.user_attrs["ray_trial_id"]: t.intermediate_values for t in summary.optuna_study.trials
    }
    for row in board.itertuples():
        assert sorted(steps[row.trial_id]) == list(range(1, row.epochs_run + 1)), row.trial_id


def test_a_trial_that_raises_is_recorded_failed_and_the_study_goes_on(
    ray_cluster: None, tmp_path: Path, assets: Path
) -> None:
    # 40x40 crops of 32x32 images: the trainer raises a DataError naming the image
    path = write_space(
        tmp_path,
        assets,
        "fails",
        """\
search:
  image_shape: {type: categorical, values: ["3,40,40", "3,32,32"]}
sampler: {name: grid}
pruner: {name: none}
limits: {max_trials: 2, max_parallel: 1, max_retries: 1}
""",
        epochs=1,
    )
    path.write_text(path.read_text().replace("  image_shape: 3,32,32\n", ""))
    lines: list[str] = []
    summary = run_study(load_space(path), log=lines.append)
    board = summary.leaderboard.set_index("image_shape")
    assert board.loc["3,40,40", "status"] == "failed"
    assert "40" in board.loc["3,40,40", "error"]
    assert board.loc["3,32,32", "status"] == "finished"
    assert any("failed" in ln for ln in lines)
    assert summary.best_hyperparameters["image_shape"] == "3,32,32"


def test_warm_start_from_an_earlier_study_and_given_points(
    ray_cluster: None, tmp_path: Path, assets: Path
) -> None:
    body = """\
search:
  learning_rate: {type: continuous, low: 1.0e-3, high: 0.5, scaling: log}
  optimizer: {type: categorical, values: [sgd, adam]}
sampler: {name: tpe}
pruner: {name: none}
limits: {max_trials: 2, max_parallel: 1}
"""
    first = run_study(
        load_space(write_space(tmp_path, assets, "first", body, epochs=1)), log=lambda s: None
    )
    assert len(first.leaderboard) == 2
    point = (
        "warm_start:\n  studies: [studies/first]\n"
        "  points: [{learning_rate: 0.0123, optimizer: adam}]\n"
    )
    second = run_study(
        load_space(write_space(tmp_path, assets, "second", body + point, epochs=1)),
        log=lambda s: None,
    )
    params = trial_params(tmp_path / "studies" / "second")
    assert {"learning_rate": 0.0123, "optimizer": "adam"} in params  # the given point ran
    trials = second.optuna_study.trials
    warm = [t for t in trials if "warm_start_from" in t.user_attrs]
    assert len(warm) == 2 and {t.state.name for t in warm} == {"COMPLETE"}
    assert sorted(t.value for t in warm) == sorted(first.leaderboard["validation:accuracy"])
    assert len(trials) == 4


def _fails_first(config: dict) -> None:
    """A trial that errors on its first attempt and reports one epoch on the next."""
    from ray import tune

    marker = Path(config["marker"])
    if not marker.exists():
        marker.write_text("failed once")
        raise RuntimeError("first attempt")
    tune.report({"epoch": 1, "validation:accuracy": 0.5})


def test_early_stops_recorded_in_a_resumed_run_survive_rays_experiment_sync(
    ray_cluster: None, tmp_path: Path
) -> None:
    # On a resume Ray copies the study directory's top-level *.json files to its staging
    # directory and uploads them back at every sync: a study-level pruned file recorded during
    # the resumed run was overwritten by its copy from the restore, and a trial pruned then read
    # as `running` (the study said "interrupted" and exited 130).
    from ray import cloudpickle, tune

    from tuner.layout import PrunedLog
    from tuner.study.running import _trial_dirname, _trial_name

    # Ray's workers cannot import this test module by name: ship the trainable by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    study_dir = tmp_path / "exp"

    class Prunes(tune.Callback):  # stands in for ASHA stopping the trial
        def on_trial_result(self, iteration, trials, trial, result, **info):  # type: ignore[no-untyped-def]
            PrunedLog(study_dir).record(trial.trial_id, int(result["epoch"]))

    tune_config = tune.TuneConfig(
        num_samples=1, trial_name_creator=_trial_name, trial_dirname_creator=_trial_dirname
    )
    # the callback is given when the study starts, as run_study gives its own: Ray keeps it in
    # tuner.pkl and runs it again in the restored run
    run_config = tune.RunConfig(
        name="exp", storage_path=str(tmp_path), verbose=0, callbacks=[Prunes()]
    )
    first = tune.Tuner(
        _fails_first,
        param_space={"marker": str(tmp_path / "marker")},
        tune_config=tune_config,
        run_config=run_config,
    ).fit()
    (trial_dir,) = [Path(r.path) for r in first]
    trial_id = trial_dir.name.removeprefix("trial_")
    assert trial_dir.parent == study_dir and first.errors
    PrunedLog(study_dir).record("earlier", 2)  # a trial stopped before the restore

    tuner = tune.Tuner.restore(str(study_dir), trainable=_fails_first, resume_errored=True)
    assert not tuner.fit().errors

    assert PrunedLog(study_dir).epoch("earlier") == 2
    assert PrunedLog(study_dir).epoch(trial_id) == 1
    assert PrunedLog(study_dir).epoch("never-stopped") is None


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_a_study_killed_with_sigkill_resumes_with_every_trial_once(
    ray_cluster: None, tmp_path: Path, assets: Path
) -> None:
    import ray

    path = write_space(
        tmp_path,
        assets,
        "killed",
        """\
search:
  learning_rate: {type: continuous, low: 1.0e-3, high: 0.5, scaling: log}
  optimizer: {type: categorical, values: [sgd, adam]}
sampler: {name: tpe, options: {n_startup_trials: 2}}
pruner: {name: asha, grace_period: 1, reduction_factor: 2}
limits: {max_trials: 6, max_parallel: 2}
""",
        epochs=3,
    )
    study_dir = tmp_path / "studies" / "killed"
    tune = [str(Path(sys.executable).parent / "tune")]
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    output = (tmp_path / "first-run.log").open("w")
    proc = subprocess.Popen(
        [*tune, "run", str(path)],
        cwd=tmp_path,
        env=env,
        start_new_session=True,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    try:
        ended = _wait_for(
            lambda: (
                proc.poll() is not None or len(list(study_dir.glob("trial_*/outcome.json"))) >= 2
            ),
            480,  # hang guards only, wide for a loaded 2-core CI machine
        )
        ended = ended and proc.poll() is None
        assert ended, (
            "no trial finished before the kill:\n" + (tmp_path / "first-run.log").read_text()
        )
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        output.close()
    assert proc.returncode == -signal.SIGKILL
    before = {
        p.parent.name: (p.stat().st_mtime_ns, (p.parent / "result.json").read_text())
        for p in study_dir.glob("trial_*/outcome.json")
    }
    at_kill = summarize_study(study_dir).leaderboard
    # killed with work left: trials not yet started, or one still running (pruning can start all
    # six before two have finished on a fast machine)
    assert len(at_kill) < 6 or (at_kill["status"] == "running").any(), at_kill

    done = subprocess.run(
        [*tune, "run", str(path), "--resume"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=720,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming the study" in done.stdout
    for text in ((tmp_path / "first-run.log").read_text(), done.stdout + done.stderr):
        chatter = re.search(r"^\S+ \S+\s+(INFO|WARNING)\s.*$", text, re.M)  # engines' log lines
        assert chatter is None, chatter.group(0)
        assert "Downloading artifacts" not in text  # MLflow's own progress bar
    board = summarize_study(study_dir).leaderboard
    assert len(board) == 6 and board["trial_id"].is_unique, done.stdout
    assert set(board["status"]) <= {"finished", "pruned"}
    assert len(list(study_dir.glob("trial_*"))) == 6
    for name, (mtime, results) in before.items():  # finished trials were neither lost nor re-run
        assert (study_dir / name / "outcome.json").stat().st_mtime_ns == mtime
        assert (study_dir / name / "result.json").read_text() == results
    for trial_dir in study_dir.glob("trial_*"):  # no epoch of any trial counted twice
        epochs = [
            json.loads(line)["epoch"]
            for line in (trial_dir / "result.json").read_text().splitlines()
            if '"epoch"' in line
        ]
        assert len(epochs) == len(set(epochs)), (trial_dir.name, epochs)


def test_a_target_value_ends_the_study_without_cutting_running_trials(
    ray_cluster: None, tmp_path: Path, assets: Path
) -> None:
    path = write_space(
        tmp_path,
        assets,
        "target",
        """\
search:
  learning_rate: {type: continuous, low: 1.0e-3, high: 0.5, scaling: log}
sampler: {name: random}
pruner: {name: none}
limits: {max_trials: 6, max_parallel: 1, target_value: 0.01}
""",
        epochs=1,
    )
    lines: list[str] = []
    names = ("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "TUNE_GLOBAL_CHECKPOINT_S", "RAY_AIR_NEW_OUTPUT")
    environ = {name: os.environ.get(name) for name in names}
    summary = run_study(load_space(path), log=lines.append)
    # Ray's settings for the study are put back: a later plain Tuner keeps Ray's defaults
    assert {name: os.environ.get(name) for name in names} == environ
    assert 1 <= len(summary.leaderboard) < 6
    assert set(summary.leaderboard["status"]) == {"finished"}
    assert any(
        "study ended early: validation:accuracy reached the target 0.01" in ln for ln in lines
    )
    # a study saved by an earlier version, whose pickles name modules that have since moved, is
    # refused with one message instead of Ray's ModuleNotFoundError traceback
    saved = tmp_path / "studies" / "target" / "tuner.pkl"
    saved.write_bytes(b"\x80\x04ctuner.searcher\nStudySearcher\n.")
    with pytest.raises(SearchSpaceError, match=r"earlier version .*tuner\.searcher.*tune results"):
        run_study(load_space(path), log=lines.append)


def test_engines_chatter_is_kept_out_unless_verbose(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    import optuna

    from tuner.study.running import _quiet_engines

    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    try:
        assert _quiet_engines(verbose=False) == logging.ERROR
        assert logging.getLogger("mlflow").getEffectiveLevel() == logging.ERROR
        assert logging.getLogger("mlflow.store.db.utils").getEffectiveLevel() == logging.ERROR
        assert logging.getLogger("alembic").level == logging.ERROR
        assert optuna.logging.get_verbosity() == logging.ERROR
        assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
        assert _quiet_engines(verbose=True) == logging.INFO
        assert logging.getLogger("mlflow").getEffectiveLevel() == logging.INFO
    finally:
        optuna.logging.set_verbosity(logging.WARNING)
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
