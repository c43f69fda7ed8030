"""Tracking against a real `mlflow server` that is down, or goes away and comes back: nothing
fails, the problem is reported once, what was not recorded is spooled and recorded later."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from tuner.layout import RUNS_FILE, SPOOL_DIR
from tuner.tracking.recorder import Recorder, TrackingUnavailableError, sync_spool
from tuner.tracking.records import CreateRun, LogBatch, Metric, Record
from tuner.tracking.server import free_port

pytestmark = pytest.mark.slow  # each test starts a real server (seconds)


@pytest.fixture(autouse=True)
def _fail_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


def _epoch(key: str, epoch: int) -> LogBatch:
    now = int(time.time() * 1000)
    return LogBatch(
        key,
        step=epoch,
        metrics=(
            Metric("validation:accuracy", 0.1 * epoch, now, epoch),
            Metric("train:loss", 1.0, now, epoch),
        ),
    )


def _study_ops(experiment: str) -> list[Record]:
    return [
        CreateRun("study", experiment, run_name="s"),
        LogBatch("study", params={"sampler": "tpe"}),
        CreateRun("trial:a", experiment, parent="study", tags={"ray.trial_id": "a"}),
        LogBatch("trial:a", params={"learning_rate": "0.1"}),
    ]


def test_a_study_started_while_the_server_is_down_is_recorded_by_sync(
    tmp_path: Path, mlflow_server: Any
) -> None:
    messages: list[str] = []
    nobody = f"http://127.0.0.1:{free_port()}"
    recorder = Recorder(nobody, tmp_path, background=False, log=messages.append)
    for operation in [*_study_ops("down-at-start"), _epoch("trial:a", 1), _epoch("trial:a", 2)]:
        recorder.submit(operation)
    assert recorder.close() == 6
    assert len([m for m in messages if "cannot record" in m]) == 1  # reported once
    assert (tmp_path / SPOOL_DIR).is_dir()
    with pytest.raises(TrackingUnavailableError, match="still unreachable"):
        sync_spool(tmp_path)

    # the records go where the sync says (a study moved to another server): here, a live one
    assert sync_spool(tmp_path, mlflow_server.uri) == 6
    assert sync_spool(tmp_path) == 0  # nothing twice
    runs = json.loads((tmp_path / RUNS_FILE).read_text())["runs"]
    client = MlflowClient(mlflow_server.uri)
    trial = client.get_run(runs["trial:a"])
    assert trial.data.tags["mlflow.parentRunId"] == runs["study"]
    assert trial.data.params["learning_rate"] == "0.1"
    steps = [m.step for m in client.get_metric_history(runs["trial:a"], "validation:accuracy")]
    assert steps == [1, 2]


def test_a_server_going_away_mid_study_gets_the_missing_epochs_when_it_returns(
    tmp_path: Path, own_mlflow_server: Any
) -> None:
    own_mlflow_server.start()
    messages: list[str] = []
    recorder = Recorder(own_mlflow_server.uri, tmp_path, retry_seconds=0.5, log=messages.append)
    for operation in [*_study_ops("goes-away"), _epoch("trial:a", 1)]:
        recorder.submit(operation)
    assert recorder.flush(timeout=60)
    assert recorder.pending() == 0

    own_mlflow_server.stop()
    for epoch in (2, 3):
        recorder.submit(_epoch("trial:a", epoch))
    assert recorder.flush(timeout=60)
    assert recorder.pending() == 2
    assert len([m for m in messages if "cannot record" in m]) == 1

    own_mlflow_server.start()
    recorder.submit(_epoch("trial:a", 4))
    deadline = time.monotonic() + 60
    while recorder.pending() and time.monotonic() < deadline:
        time.sleep(0.5)
        recorder.flush(timeout=30)
    assert recorder.close() == 0
    assert any("is back" in m for m in messages)
    run_id = recorder.run_id("trial:a")
    client = MlflowClient(own_mlflow_server.uri)
    steps = [m.step for m in client.get_metric_history(run_id, "validation:accuracy")]
    assert steps == [1, 2, 3, 4]  # in order, none lost, none twice


def test_a_replayed_epoch_is_not_logged_twice(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    recorder = Recorder(uri, tmp_path, background=False)
    for operation in [*_study_ops("replay"), _epoch("trial:a", 1), _epoch("trial:a", 2)]:
        recorder.submit(operation)
    # a resumed trial reports epoch 2 again (its checkpoint lagged): recorded once
    resumed = Recorder(uri, tmp_path, background=False)
    resumed.submit(_epoch("trial:a", 2))
    resumed.submit(_epoch("trial:a", 3))
    history = MlflowClient(uri).get_metric_history(resumed.run_id("trial:a"), "validation:accuracy")
    assert [m.step for m in history] == [1, 2, 3]


def test_a_store_that_hangs_does_not_hold_the_study_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_server: Any
) -> None:
    """A server that accepts connections and never answers (MLflow's client times out)."""
    import socket

    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(16)
    uri = f"http://127.0.0.1:{hanging.getsockname()[1]}"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    try:
        recorder = Recorder(uri, tmp_path, log=lambda _m: None)
        for operation in [*_study_ops("hangs"), _epoch("trial:a", 1), _epoch("trial:a", 2)]:
            recorder.submit(operation)  # returns at once: the calls happen on the thread
        assert recorder.close(timeout=1) == 6  # all on disk, the in-flight one included
    finally:
        hanging.close()
    spooled = [json.loads(line)["op"] for line in recorder.spool_path.read_text().splitlines()]
    assert sorted(spooled) == sorted(["create_run", "log", "create_run", "log", "log", "log"])
    # the spool's order is not the submission order (the in-flight creation came last); a sync
    # still builds the same runs: parent, child with its link, both epochs
    assert sync_spool(tmp_path, mlflow_server.uri) == 6
    client = MlflowClient(mlflow_server.uri)
    runs = json.loads((tmp_path / RUNS_FILE).read_text())["runs"]
    trial = client.get_run(runs["trial:a"])
    assert trial.data.tags["mlflow.parentRunId"] == runs["study"]
    history = client.get_metric_history(trial.info.run_id, "validation:accuracy")
    assert [m.step for m in history] == [1, 2]


def test_tune_results_sync_records_the_spool_once_the_studys_store_is_back(
    tmp_path: Path, own_mlflow_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from tuner.cli import main
    from tuner.layout import write_study_file

    study = tmp_path / "study"
    write_study_file(
        study, {"name": "s", "objective": "validation:accuracy", "mode": "max", "fixed": {}}
    )
    # the study's store (a real server, not started yet) was down the whole study
    recorder = Recorder(own_mlflow_server.uri, study, background=False, log=lambda _m: None)
    for operation in [*_study_ops("synced-by-cli"), _epoch("trial:a", 1), _epoch("trial:a", 2)]:
        recorder.submit(operation)
    assert recorder.close() == 6

    with pytest.raises(SystemExit) as still_down:
        main(["results", str(study), "--sync"])
    assert still_down.value.code == 2
    err = capsys.readouterr().err
    assert "still unreachable" in err and own_mlflow_server.uri in err
    assert "6 remain" in err

    own_mlflow_server.start()
    main(["results", str(study), "--sync"])
    out = capsys.readouterr().out
    assert "mlflow: recorded 6 spooled operations" in out
    assert "leaderboard:" in out  # then the results, as without --sync
    runs = json.loads((study / RUNS_FILE).read_text())["runs"]
    client = MlflowClient(own_mlflow_server.uri)
    trial = client.get_run(runs["trial:a"])
    assert trial.data.tags["mlflow.parentRunId"] == runs["study"]
    steps = [m.step for m in client.get_metric_history(runs["trial:a"], "validation:accuracy")]
    assert steps == [1, 2]

    main(["results", str(study), "--sync"])  # nothing twice
    assert "nothing spooled" in capsys.readouterr().out
    assert [m.step for m in client.get_metric_history(runs["trial:a"], "train:loss")] == [1, 2]
