"""The MLflow UI: `tune ui` serves a study's store on 127.0.0.1; and, as a user sees it, a real
finished study opened by `tune ui` in headless Chromium (driven over the DevTools protocol): the
training view, the trials nested under the study run with the objective and the searched
hyperparameters as columns, and Compare drawing the objective against the epoch for each trial
(screenshots in test-artifacts/)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
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


class Chromium:
    """Headless Chromium driven over its DevTools protocol (a websocket, through aiohttp): open a
    page, run JavaScript in it as a user's clicks, take screenshots."""

    def __init__(self, binary: str, profile: Path, width: int = 1900, height: int = 1000) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                binary,
                *CHROMIUM_FLAGS,
                f"--window-size={width},{height}",
                f"--user-data-dir={profile}",
                f"--remote-debugging-port={self.port}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.loop = asyncio.new_event_loop()
        self.session: Any = None
        self.socket: Any = None
        self.next_id = 0
        try:
            self.loop.run_until_complete(self._connect())
        except BaseException:
            self.close()
            raise

    async def _connect(self) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession()
        deadline = time.monotonic() + 60
        while True:
            try:
                async with self.session.get(f"http://127.0.0.1:{self.port}/json/list") as answer:
                    pages = [t for t in await answer.json() if t["type"] == "page"]
                if pages:
                    break
            except aiohttp.ClientError:
                pass
            assert self.process.poll() is None, f"chromium exited with {self.process.returncode}"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port in 60 s"
            await asyncio.sleep(0.3)
        self.socket = await self.session.ws_connect(
            pages[0]["webSocketDebuggerUrl"], max_msg_size=0
        )

    async def _call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        await self.socket.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            message = await self.socket.receive_json(timeout=120)
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command, its result."""
        return self.loop.run_until_complete(self._call(method, params))

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 90.0) -> Any:
        """Poll until `expression` is truthy in the page; its value."""
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            assert time.monotonic() < deadline, f"the page did not show {what} in {timeout:.0f} s"
            time.sleep(0.5)
        return value

    def text(self) -> str:
        return str(self.evaluate("document.body.innerText"))

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        if self.socket is not None:
            self.loop.run_until_complete(self.socket.close())
        if self.session is not None:
            self.loop.run_until_complete(self.session.close())
        self.loop.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


def _tiny_study(tmp_path: Path, assets: Path) -> Path:
    """A real finished study, run as a user runs one (`tune run`): 4 trials of 2 epochs, grid over
    two hyperparameters, ASHA (the two poor learning rates are pruned at epoch 1), recorded to
    the default store beside it (studies/mlflow.db)."""
    space = tmp_path / "ui-study.yaml"
    space.write_text(
        f"""\
study: {{name: ui-study, directory: studies, seed: 0}}
data: {{path: {assets / "cifar10"}}}
fixed:
  num_classes: 10
  num_training_samples: 300
  num_layers: 20
  image_shape: 3,16,16
  mini_batch_size: 64
  epochs: 2
search:
  learning_rate: {{type: categorical, values: [0.1, 0.0001]}}
  optimizer: {{type: categorical, values: [sgd, adam]}}
sampler: {{name: grid}}
pruner: {{name: asha, grace_period: 1, reduction_factor: 2}}
limits: {{max_trials: 4, max_parallel: 1, max_retries: 1}}
"""
    )
    tune = Path(sys.executable).with_name("tune")
    done = subprocess.run(
        [str(tune), "run", str(space)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return tmp_path / "studies" / "ui-study"


@contextlib.contextmanager
def _tune_ui(study_dir: Path) -> Iterator[str]:
    """`tune ui STUDY_DIR` running for real; the URL it prints."""
    tune = Path(sys.executable).with_name("tune")
    process = subprocess.Popen(
        [str(tune), "ui", str(study_dir), "--port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        lines = []
        for line in process.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if found := re.search(r"http://127\.0\.0\.1:\d+/\S*", line):
                break
        assert found, "".join(lines)
        yield found.group(0)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)


def _click(tag: str, text: str) -> str:
    """JavaScript: click the first `tag` element whose text is `text`; whether there was one."""
    return (
        f"(e => e ? (e.click(), true) : false)(Array.from(document.querySelectorAll('{tag}'))"
        f".find(e => e.innerText.trim() === '{text}'))"
    )


def _cell(row_id: str, column: str, inside: str = "") -> str:
    """JavaScript: the text of the runs table's cell of run `row_id` in `column` (of the element
    `inside` it), or null while there is none."""
    return (
        f'document.querySelector(\'[role=row][row-id="{row_id}"] '
        f'[col-id="{column}"] {inside}\')?.innerText?.trim()'
    )


def test_tune_ui_opens_a_finished_study_for_comparing_its_trials(
    tmp_path: Path, assets: Path
) -> None:
    binary = _chromium()
    if binary is None:
        pytest.skip("chromium is not installed (`make chromium` installs it with apt-get as root)")
    from tuner.layout import read_tracking_runs

    study_dir = _tiny_study(tmp_path, assets)
    board = pd.read_csv(study_dir / "leaderboard.csv", dtype={"trial_id": str})
    assert len(board) == 4 and (board["status"] == "pruned").any(), board
    runs = read_tracking_runs(study_dir)
    assert runs is not None
    trial_runs = {runs.runs[f"trial:{t}"]: t for t in board["trial_id"]}
    ARTIFACTS.mkdir(exist_ok=True)

    with _tune_ui(study_dir) as url:
        # the training view (not MLflow 3's GenAI pages), with the study's shared view
        assert "workflowType=machine_learning" in url and "viewStateShareKey=" in url, url
        browser = Chromium(binary, tmp_path / "profile")
        try:
            browser.call("Page.navigate", url=url)
            browser.wait_for(_cell(runs.runs["study"], "attributes.`Run Name`"), "the study run")
            text = browser.text()
            assert "1 matching runs" not in text and "5 matching runs" in text, text[-2000:]
            for trial_id in board["trial_id"]:  # nested: hidden until the study run is expanded
                assert f"trial_{trial_id}" not in text

            expand = 'button[data-component-id$="runnamecellrenderer.tsx_46"]'
            browser.evaluate(
                f"document.querySelector('[row-id=\"{runs.runs['study']}\"] {expand}').click()"
            )
            for run_id, trial_id in trial_runs.items():
                name = browser.wait_for(_cell(run_id, "attributes.`Run Name`", "a"), trial_id)
                assert name == f"trial_{trial_id}"
                row = board.set_index("trial_id").loc[trial_id]
                shown = browser.evaluate(_cell(run_id, "metrics.`best_value`"))
                assert float(shown) == pytest.approx(row["validation:accuracy"], abs=5e-4), shown
                assert browser.evaluate(_cell(run_id, "tags.`trial_status`")) == row["status"]
                for name in ("learning_rate", "optimizer"):  # the searched hyperparameters
                    assert browser.evaluate(_cell(run_id, f"params.`{name}`")) == str(row[name])
            browser.screenshot(ARTIFACTS / "mlflow-ui-runs.png")

            # choose the trials, press Compare, open the objective: its curve against the epoch
            for run_id in trial_runs:
                browser.evaluate(
                    f"document.querySelector('.ag-pinned-left-cols-container "
                    f'[row-id="{run_id}"] input[type=checkbox]\').click()'
                )
            browser.wait_for(
                _click("button", "Compare"),
                "the Compare button",
            )
            browser.wait_for("location.hash.startsWith('#/compare-runs')", "the comparison")
            browser.wait_for(
                _click("a", "validation:accuracy"),
                "the objective in the comparison",
            )
            browser.wait_for("location.hash.startsWith('#/metric?')", "the metric's chart")
            legend = [f"trial_{t} (validation:accuracy)" for t in board["trial_id"]]
            browser.wait_for(
                " && ".join(f"document.body.innerText.includes({s!r})" for s in legend)
                + " && !!document.querySelector('.js-plotly-plot .scatterlayer')",
                "a curve per trial",
            )
            text = browser.text()
            assert "Step" in text  # the x-axis: the epoch
            for trial_id, epochs in zip(board["trial_id"], board["epochs_run"], strict=True):
                # the table under the chart: each trial's last epoch (a pruned one's is 1)
                assert re.search(rf"trial_{trial_id}\s+\S+ \(step={epochs}\)", text), text
            browser.screenshot(ARTIFACTS / "mlflow-ui-compare.png")
        finally:
            browser.close()
    for name in ("mlflow-ui-runs.png", "mlflow-ui-compare.png"):
        assert (ARTIFACTS / name).stat().st_size > 20_000
