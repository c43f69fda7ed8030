"""The study's orchestration logic without starting Ray: completion criteria, progress lines, the
ASHA bookkeeping (Ray's real scheduler and `Trial` objects) and the searcher against a real
in-memory Optuna study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from trainer.notices import Notice
from tuner.layout import Outcome, PrunedLog, TrialFiles
from tuner.space import SearchSpace, build_sampler, space_from_mapping
from tuner.study import live
from tuner.study.asha import RecordingASHA
from tuner.study.criteria import CompletionCriteria
from tuner.study.progress import TrialProgress
from tuner.study.results import TrialRecord
from tuner.study.searcher import StudySearcher

METRIC = "validation:accuracy"


def _trial(trial_id: str, **config: Any) -> Trial:
    return Trial("fake", config=config, trial_id=trial_id, stub=True)


def _epoch(epoch: int, value: float) -> dict[str, Any]:
    return {"epoch": epoch, METRIC: value}


# ---------------------------------------------------------------------------- completion criteria


def test_the_target_value_ends_the_study_in_the_objectives_direction() -> None:
    high = CompletionCriteria(METRIC, "max", target=0.8, patience=None)
    high.observe({METRIC: 0.79})
    assert not high.met
    high.observe({METRIC: 0.81})
    assert high.met and "reached the target 0.8" in (high.reason or "")
    low = CompletionCriteria("validation:loss", "min", target=0.5, patience=None)
    low.observe({"validation:loss": 0.6})
    low.observe({METRIC: 0.1})  # another metric: ignored
    assert not low.met
    low.observe({"validation:loss": 0.4})
    assert low.met


def test_patience_counts_finished_trials_without_improvement() -> None:
    criteria = CompletionCriteria(METRIC, "max", target=None, patience=2)
    for value in (0.5, 0.6, 0.55):  # improves, improves, not
        criteria.trial_finished(value)
    assert not criteria.met and criteria.since_best == 1
    criteria.trial_finished(None)  # a failed trial does not improve either
    assert criteria.met and "not improved for 2 trials" in (criteria.reason or "")
    never = CompletionCriteria(METRIC, "max", target=None, patience=None)
    for _ in range(10):
        never.trial_finished(float("nan"))
    assert not never.met


# ---------------------------------------------------------------------------- progress lines


def _progress(
    tmp_path: Path, lines: list[str], max_t: int = 3, trials: int = 4, **options: Any
) -> TrialProgress:
    """A study of `trials` trials; `options`: TrialProgress's keywords (ETA, retries, clock)."""
    criteria = CompletionCriteria(METRIC, "max", target=None, patience=None)
    return TrialProgress(
        METRIC, "max", trials, max_t, PrunedLog(tmp_path), criteria, lines.append, **options
    )


def test_progress_lines_say_how_each_trial_ended_with_the_best_so_far(tmp_path: Path) -> None:
    lines: list[str] = []
    progress = _progress(tmp_path, lines)
    for epoch, value in ((1, 0.3), (2, 0.5), (3, 0.4)):
        progress.trial_result("a", _epoch(epoch, value))
    TrialFiles(tmp_path, "a").write_outcome(Outcome(model_path="/m"))
    progress.trial_completed("a", _epoch(3, 0.4))
    progress.trial_result("b", _epoch(1, 0.2))
    PrunedLog(tmp_path).record("b", 1)  # ASHA stopped it
    progress.trial_completed("b", _epoch(1, 0.2))
    progress.trial_completed("b", _epoch(1, 0.2))  # Ray can end a trial twice on a resume
    error = tmp_path / "error.txt"
    error.write_text("Traceback\n  ...\nDataError: image x.jpg is too small\n")
    progress.trial_failed("c", str(error))
    assert lines[0].startswith("[1/4] trial a finished 3 epochs")
    assert lines[0].endswith(f"{METRIC}=0.5000  best 0.5000 (a)")
    assert lines[1].startswith("[2/4] trial b pruned at epoch 1/3")
    assert lines[1].endswith("best 0.5000 (a)")
    assert lines[2] == "[3/4] trial c failed: DataError: image x.jpg is too small"
    assert len(lines) == 3


def test_each_line_ends_with_the_study_eta_from_the_observed_epoch_rate(tmp_path: Path) -> None:
    now = [0.0]
    lines: list[str] = []
    progress = _progress(tmp_path, lines, expected_epochs=2.0, clock=lambda: now[0])
    for epoch in (1, 2, 3):
        progress.trial_result("a", _epoch(epoch, 0.5))
    progress.trial_result("b", _epoch(1, 0.4))
    now[0] = 40.0  # 4 epochs in 40 s: 10 s per epoch of the study
    TrialFiles(tmp_path, "a").write_outcome(Outcome(model_path="/m"))
    progress.trial_completed("a", _epoch(3, 0.5))
    # 3 trials left at 2 epochs each, less the 1 that b has run: 5 epochs, 50 s
    assert lines[0].endswith("best 0.5000 (a)  ETA 50s")
    for epoch in (2, 3):
        progress.trial_result("b", _epoch(epoch, 0.4))
    for trial in ("c", "d"):
        progress.trial_result(trial, _epoch(1, 0.1))
        now[0] += 600.0
        PrunedLog(tmp_path).record(trial, 1)
        progress.trial_completed(trial, _epoch(1, 0.1))
    # at c's end: 640 s for 7 epochs; b already ran past the 2 expected (0 left), d: 2 epochs
    assert lines[1].endswith("ETA 3m 03s")
    TrialFiles(tmp_path, "b").write_outcome(Outcome(model_path="/m"))
    progress.trial_completed("b", _epoch(3, 0.4))
    assert "ETA" not in lines[-1]  # the last trial: nothing left to forecast


def test_a_trial_the_study_stopped_early_is_recorded_as_pruned(tmp_path: Path) -> None:
    lines: list[str] = []
    progress = _progress(tmp_path, lines)
    progress.trial_result("a", _epoch(1, 0.3))
    progress.trial_completed("a", _epoch(1, 0.3))  # no outcome.json, no ASHA stop: a limit hit
    assert PrunedLog(tmp_path).epoch("a") == 1
    assert "pruned at epoch 1/3" in lines[0]


def test_a_retried_trial_gets_one_notice_naming_its_cause_and_retry(tmp_path: Path) -> None:
    lines: list[str] = []
    progress = _progress(tmp_path, lines, max_retries=3)
    error = tmp_path / "error.txt"
    error.write_text(
        "Traceback (most recent call last):\n  ...\n"
        "ray.exceptions.ActorDiedError: The actor died because its node has died.\n\n"
    )
    with pytest.warns(Notice) as caught:
        progress.trial_retried("t2", 1, str(error))
    assert [str(w.message) for w in caught] == [
        "trial t2 stopped (ray.exceptions.ActorDiedError: The actor died because its node has "
        "died.); it continues from its last saved epoch (retry 1 of at most 3)"
    ]
    assert lines == [] and progress.done == 0  # not an ended trial: it runs again
    with pytest.warns(Notice, match=r"trial t2 stopped \(its worker stopped\).*retry 2 of"):
        progress.trial_retried("t2", 2, None)


def test_a_resumed_study_counts_the_trials_its_earlier_run_ended(tmp_path: Path) -> None:
    lines: list[str] = []
    progress = _progress(tmp_path, lines)
    records = [
        TrialRecord("a", "finished", {}, [], 0.7, None, None),
        TrialRecord("b", "running", {}, [], 0.9, None, None),
        TrialRecord("c", "failed", {}, [], None, None, "x"),
    ]
    progress.resume_from(records)
    assert progress.done == 2 and progress.best == (0.7, "a")
    progress.trial_completed("a", _epoch(3, 0.7))  # ended before: not counted again
    assert lines == []
    progress.trial_result("b", _epoch(3, 0.9))
    progress.trial_completed("b", _epoch(3, 0.9))
    assert lines[0].startswith("[3/4] trial b finished 3 epochs")


def test_the_eta_of_a_resumed_study_counts_the_epochs_its_running_trials_ran_before(
    tmp_path: Path,
) -> None:
    now = [0.0]
    lines: list[str] = []
    progress = _progress(tmp_path, lines, trials=3, expected_epochs=3.0, clock=lambda: now[0])
    # killed with a finished, b after 2 of its 3 epochs, c after 1
    history = [_epoch(1, 0.5), _epoch(2, 0.6)]
    progress.resume_from(
        [
            TrialRecord("a", "finished", {}, history, 0.6, None, None),
            TrialRecord("b", "running", {}, history, 0.6, None, None),
            TrialRecord("c", "running", {}, history[:1], 0.5, None, None),
        ]
    )
    progress.trial_result("b", _epoch(3, 0.7))
    now[0] = 20.0  # this run: 1 epoch in 20 s
    TrialFiles(tmp_path, "b").write_outcome(Outcome(model_path="/m"))
    progress.trial_completed("b", _epoch(3, 0.7))
    # left: c's 2 epochs (not 3: it ran 1 before the kill), 40 s
    assert lines[0].endswith("ETA 40s"), lines


# ---------------------------------------------------------------------------- ASHA bookkeeping


def _asha(tmp_path: Path, max_t: int = 4) -> RecordingASHA:
    return RecordingASHA(
        PrunedLog(tmp_path),
        default_epochs=max_t,
        metric=METRIC,
        mode="max",
        max_t=max_t,
        grace_period=1,
        reduction_factor=2,
    )


def test_asha_records_the_epoch_it_stops_a_trial_at(tmp_path: Path) -> None:
    asha = _asha(tmp_path)
    good, poor = _trial("good"), _trial("poor")
    for trial in (good, poor):
        asha.on_trial_add(None, trial)
    assert asha.on_trial_result(None, good, _epoch(1, 0.9)) == TrialScheduler.CONTINUE
    assert asha.on_trial_result(None, poor, _epoch(1, 0.1)) == TrialScheduler.STOP
    asha.on_trial_complete(None, poor, _epoch(1, 0.1))
    assert PrunedLog(tmp_path).epoch("poor") == 1
    assert PrunedLog(tmp_path).epoch("good") is None


def test_asha_never_stops_a_trial_at_its_own_last_epoch(tmp_path: Path) -> None:
    asha = _asha(tmp_path)
    best, short = _trial("best"), _trial("short", epochs=2)
    for trial in (best, short):
        asha.on_trial_add(None, trial)
    asha.on_trial_result(None, best, _epoch(1, 0.9))
    asha.on_trial_result(None, best, _epoch(2, 0.95))
    asha.on_trial_result(None, short, _epoch(1, 0.95))
    # its sampled `epochs` is 2: it ends by itself there, so it writes its model
    assert asha.on_trial_result(None, short, _epoch(2, 0.01)) == TrialScheduler.CONTINUE
    # at max_t Ray's ASHA says STOP; the trial ends there anyway, unrecorded
    assert asha.on_trial_result(None, best, _epoch(4, 0.9)) == TrialScheduler.CONTINUE
    assert PrunedLog(tmp_path).epoch("short") is None and PrunedLog(tmp_path).epoch("best") is None


def test_asha_takes_trials_restored_by_a_resume_that_it_never_saw_added(tmp_path: Path) -> None:
    asha = _asha(tmp_path)
    restored = _trial("restored")
    assert asha.on_trial_result(None, restored, _epoch(2, 0.5)) == TrialScheduler.CONTINUE
    assert "restored" in asha.known
    asha.on_trial_complete(None, restored, _epoch(3, 0.5))
    asha.on_trial_remove(None, restored)  # after complete: nothing left to remove
    stranger = _trial("stranger")
    asha.on_trial_complete(None, stranger, _epoch(1, 0.5))  # never added: left alone
    asha.on_trial_remove(None, stranger)
    assert asha.known == set()


# ---------------------------------------------------------------------------- the searcher


def _space(tmp_path: Path, assets: Path, max_trials: int = 3) -> SearchSpace:
    mapping = {
        "study": {"name": "unit", "directory": str(tmp_path)},
        "data": {"path": str(assets / "cifar10")},
        "fixed": {"num_classes": 10, "num_training_samples": 300, "epochs": 3},
        "search": {
            "learning_rate": {"type": "continuous", "low": 0.001, "high": 0.1, "scaling": "log"},
            "optimizer": {"type": "categorical", "values": ["sgd", "adam"]},
        },
        "limits": {"max_trials": max_trials},
        "tracking": {"enabled": False},
    }
    return space_from_mapping(mapping, text=yaml.safe_dump(mapping), source=None, base_dir=tmp_path)


def _searcher(space: SearchSpace) -> StudySearcher:
    sampler = build_sampler("random", list(space.dimensions), seed=0, max_parallel=1, options={})
    return StudySearcher(space, sampler, PrunedLog(space.study_dir))


def _states(searcher: StudySearcher) -> dict[str, str]:
    return {t.user_attrs["ray_trial_id"]: t.state.name for t in searcher.study.trials}


def test_the_searcher_asks_reports_prunes_and_tells_optuna(tmp_path: Path, assets: Path) -> None:
    space = _space(tmp_path, assets)
    searcher = _searcher(space)
    config = searcher.suggest("a")
    assert config is not None and set(config) == {"learning_rate", "optimizer"}
    assert 0.001 <= config["learning_rate"] <= 0.1
    assert searcher.suggest("a") == config  # asked again for the same trial: the same config
    searcher.on_trial_result("a", _epoch(1, 0.4))
    searcher.on_trial_complete("a", _epoch(2, 0.6))  # the last result comes with the completion
    (done,) = searcher.study.trials
    assert done.state == TrialState.COMPLETE and done.value == 0.6
    assert done.intermediate_values == {1: 0.4, 2: 0.6}

    searcher.suggest("b")
    searcher.on_trial_result("b", _epoch(1, 0.1))
    PrunedLog(space.study_dir).record("b", 1)
    searcher.on_trial_complete("b", _epoch(1, 0.1))
    searcher.suggest("c")
    searcher.on_trial_complete("c", None, error=True)
    assert _states(searcher) == {"a": "COMPLETE", "b": "PRUNED", "c": "FAIL"}
    assert searcher.study.trials[1].intermediate_values == {1: 0.1}
    assert searcher.suggest("d") == Searcher.FINISHED  # max_trials 3
    searcher.on_trial_complete("unknown", _epoch(1, 0.5))  # not ours: ignored


def test_the_searcher_stops_when_the_live_studys_criteria_are_met(
    tmp_path: Path, assets: Path
) -> None:
    space = _space(tmp_path, assets, max_trials=10)
    searcher = _searcher(space)
    criteria = CompletionCriteria(METRIC, "max", target=0.5, patience=None)
    progress = TrialProgress(METRIC, "max", 10, 3, PrunedLog(space.study_dir), criteria)
    running = live.LiveStudy(criteria=criteria, progress=progress)
    live.register(str(space.study_dir), running)
    try:
        assert searcher.suggest("a") is not None
        assert running.optuna_study is searcher.study  # the summary's Optuna study
        criteria.observe(_epoch(1, 0.6))
        assert searcher.suggest("b") == Searcher.FINISHED
        assert searcher.suggest("a") is not None  # a trial already asked for still runs
    finally:
        live.unregister(str(space.study_dir))
    assert searcher.suggest("b") is not None  # no live study here: nothing stops it


def test_the_searcher_saved_by_ray_restores_its_optuna_study(tmp_path: Path, assets: Path) -> None:
    space = _space(tmp_path, assets)
    searcher = _searcher(space)
    searcher.suggest("a")
    searcher.on_trial_complete("a", _epoch(1, 0.5))
    searcher.suggest("b")
    checkpoint = tmp_path / "searcher.pkl"
    searcher.save(str(checkpoint))
    restored = _searcher(space)
    restored.restore(str(checkpoint))
    assert _states(restored) == {"a": "COMPLETE", "b": "RUNNING"}
    restored.on_trial_complete("b", _epoch(1, 0.7))  # the running trial, told after the resume
    assert restored.suggest("c") is not None
    assert restored.suggest("d") == Searcher.FINISHED
    assert [t.value for t in restored.study.trials[:2]] == [0.5, 0.7]


def test_warm_points_are_asked_first(tmp_path: Path, assets: Path) -> None:
    space = _space(tmp_path, assets)
    point = {"learning_rate": 0.0123, "optimizer": "adam"}
    warm = SearchSpace(
        **{**space.__dict__, "warm_start": space.warm_start.model_copy(update={"points": [point]})}
    )
    searcher = _searcher(warm)
    assert searcher.suggest("a") == point
    assert isinstance(searcher.study, optuna.Study)
