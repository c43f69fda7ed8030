"""The tracking store under faults the fault campaign found: a run created just before a kill,
and two processes opening a new sqlite store at the same moment (real MLflow, real sqlite)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow
import pytest

from tuner.layout import read_tracking_runs, write_tracking_runs
from tuner.tracking.records import CreateRun, DeleteRun, decode, encode
from tuner.tracking.store import RUN_KEY_TAG, TrackingStore


def test_a_run_created_just_before_a_kill_is_reopened_not_created_twice(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    folder = tmp_path / "study"
    folder.mkdir()
    store = TrackingStore(uri, folder, log=print)
    before = read_tracking_runs(folder)  # what a kill between create_run and the save leaves
    assert before is not None
    store.apply(CreateRun(key="study", experiment="killed", run_name="killed"))
    first = store.run_id("study")
    write_tracking_runs(folder, before)

    resumed = TrackingStore(uri, folder, log=print)
    assert resumed.run_id("study") is None
    resumed.apply(CreateRun(key="study", experiment="killed", run_name="killed"))
    assert resumed.run_id("study") == first
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("killed")
    assert len(client.search_runs([experiment.experiment_id])) == 1

    # a new study in the same folder (not a resume) still gets a run of its own
    resumed.forget_runs()
    resumed.apply(CreateRun(key="study", experiment="killed", run_name="killed"))
    assert resumed.run_id("study") != first
    assert len(client.search_runs([experiment.experiment_id])) == 2


def test_the_run_of_a_dropped_trial_is_deleted_and_the_record_spools(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = TrackingStore(uri, tmp_path, log=print)
    store.apply(CreateRun(key="study", experiment="dropped"))
    for trial in ("kept", "orphan"):
        store.apply(CreateRun(key=f"trial:{trial}", experiment="dropped", parent="study"))
    assert sorted(store.keys("trial:")) == ["trial:kept", "trial:orphan"]
    record = decode(encode(DeleteRun("trial:orphan")))  # as replayed from the spool
    store.apply(record)
    store.apply(record)  # replayed twice: nothing left to delete
    assert store.keys("trial:") == ["trial:kept"]
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("dropped")
    names = {
        r.data.tags.get(RUN_KEY_TAG, "").split("/")[-1]
        for r in client.search_runs([experiment.experiment_id])
    }
    assert names == {"study", "trial:kept"}


OPEN_AND_WRITE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tuner.tracking.records import CreateRun, DeleteRun, decode, encode
    from tuner.tracking.store import RUN_KEY_TAG, TrackingStore

    uri, folder, start = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
    folder.mkdir(parents=True)
    time.sleep(max(0.0, start - time.time()))
    store = TrackingStore(uri, folder, log=print)
    store.apply(CreateRun(key="study", experiment=folder.name, run_name=folder.name))
    print(store.run_id("study"))
    """
)


@pytest.mark.slow
def test_processes_opening_a_new_sqlite_store_at_once_all_get_a_working_store(
    tmp_path: Path,
) -> None:
    uri = f"sqlite:///{tmp_path / 'studies' / 'mlflow.db'}"
    start = time.time() + 8  # after every process has imported MLflow
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AND_WRITE, uri, str(tmp_path / f"study{i}"), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-2000:]
        assert "already exists" not in err
    client = mlflow.MlflowClient(uri)
    for i in range(4):
        experiment = client.get_experiment_by_name(f"study{i}")
        assert experiment is not None
        assert len(client.search_runs([experiment.experiment_id])) == 1
