"""The MLflow UI: `tune ui` serves a study's store on 127.0.0.1, and headless Chromium shows the
study's runs in the UI of a real `mlflow server` (screenshot in test-artifacts/)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from tuner.tracking.recorder import Recorder
from tuner.tracking.records import CreateRun, LogBatch, Metric
from tuner.tracking.server import free_port

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,900",
]


def _record_study(uri: str, study_dir: Path, experiment: str) -> Recorder:
    """A parent run and two trial runs with a metric each, as the tracker writes them."""
    recorder = Recorder(uri, study_dir, background=False)
    now = int(time.time() * 1000)
    recorder.submit(CreateRun("study", experiment, run_name=f"{experiment}-study"))
    for trial in ("t1", "t2"):
        key = f"trial:{trial}"
        recorder.submit(
            CreateRun(key, experiment, parent="study", run_name=f"{experiment}-{trial}")
        )
        recorder.submit(
            LogBatch(key, step=1, metrics=(Metric("validation:accuracy", 0.5, now, 1),))
        )
    assert recorder.close() == 0
    return recorder


def test_tune_ui_serves_the_study_store_on_localhost(tmp_path: Path) -> None:
    study_dir = tmp_path / "studies" / "demo"
    uri = f"sqlite:///{tmp_path / 'studies' / 'mlflow.db'}"
    _record_study(uri, study_dir, "demo")
    tune = Path(sys.executable).with_name("tune")
    process = subprocess.Popen(
        [str(tune), "ui", str(study_dir), "--port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        url = None
        lines = []
        for line in process.stdout:  # type: ignore[union-attr]
            lines.append(line)
            found = re.search(r"(http://127\.0\.0\.1:\d+)", line)
            if found:
                url = found.group(1)
                break
        assert url is not None, "".join(lines)
        runs = MlflowClient(url).search_runs(
            [MlflowClient(url).get_experiment_by_name("demo").experiment_id]
        )
        assert sorted(r.info.run_name for r in runs) == ["demo-study", "demo-t1", "demo-t2"]
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)


def test_tune_ui_refuses_a_store_that_does_not_exist(tmp_path: Path) -> None:
    from tuner.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["ui", str(tmp_path / "nothing-here")])
    assert exit_info.value.code == 2


def _proc_stat(pid: int) -> list[str]:
    """`/proc/PID/stat`'s fields after the command name: state, ppid, pgrp, ...; [] if gone."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` in the process tree."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _proc_stat(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _running(pid: int) -> bool:
    fields = _proc_stat(pid)
    return bool(fields) and fields[0] != "Z"


def _nothing_listens_on(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR: a closed connection's TIME_WAIT must not count, only a listener
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads processes from /proc")
def test_tune_ui_stopped_by_sigterm_stops_its_server_and_frees_the_port(tmp_path: Path) -> None:
    database = tmp_path / "mlflow.db"
    database.touch()  # an empty SQLite store
    port = free_port()
    tune = Path(sys.executable).with_name("tune")
    process = subprocess.Popen(
        [str(tune), "ui", "--tracking-uri", f"sqlite:///{database}", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    tree: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while _nothing_listens_on(port):
            assert process.poll() is None, f"tune ui exited with {process.returncode}"
            assert time.monotonic() < deadline, "the MLflow UI did not listen within 60 s"
            time.sleep(0.3)
        tree = _descendants(process.pid)
        assert tree, "tune ui started no server process"

        process.send_signal(signal.SIGTERM)
        process.wait(timeout=40)
        deadline = time.monotonic() + 10
        while any(map(_running, tree)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in tree if _running(pid)], "server processes outlived tune ui"
        assert _nothing_listens_on(port)
    finally:
        for pid in [process.pid, *tree]:
            if _running(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        process.wait(timeout=10)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            binary,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=30000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_mlflow_ui_lists_the_study_runs(tmp_path: Path, mlflow_server: Any) -> None:
    binary = _chromium()
    if binary is None:
        pytest.skip("chromium is not installed (`make chromium` installs it with apt-get as root)")
    recorder = _record_study(mlflow_server.uri, tmp_path / "study", "ui-study")
    experiment_id = recorder.store.client.get_experiment_by_name("ui-study").experiment_id
    page = f"{mlflow_server.uri}/#/experiments/{experiment_id}/runs"

    dom = _run_chromium(binary, tmp_path / "profile-dom", "--dump-dom", page)
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", dom.stdout, flags=re.S)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text))
    assert "You need to enable JavaScript" in text  # the static shell ...
    assert "ui-study-study" in text  # ... and what the app rendered from the API: the parent run
    assert "3 matching runs" in text  # with its two nested trial runs

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "mlflow-ui-runs.png"
    shot = _run_chromium(binary, tmp_path / "profile-shot", f"--screenshot={screenshot}", page)
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.stat().st_size > 10_000
