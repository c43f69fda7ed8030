"""The MLflow UI: `tune ui` serves a study's store on 127.0.0.1, and headless Chromium shows the
study's runs in the UI of a real `mlflow server` (screenshot in test-artifacts/)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from tuner.mlflow_server import free_port
from tuner.tracking_store import Recorder

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
    recorder.submit(
        {
            "op": "create_run",
            "key": "study",
            "experiment": experiment,
            "run_name": f"{experiment}-study",
        }
    )
    for trial in ("t1", "t2"):
        key = f"trial:{trial}"
        recorder.submit(
            {
                "op": "create_run",
                "key": key,
                "parent": "study",
                "experiment": experiment,
                "run_name": f"{experiment}-{trial}",
            }
        )
        recorder.submit(
            {"op": "log", "key": key, "step": 1, "metrics": [["validation:accuracy", 0.5, now, 1]]}
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
    experiment_id = recorder.client.get_experiment_by_name("ui-study").experiment_id
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
