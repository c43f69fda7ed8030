"""Start `mlflow server` (tracking API + UI) on 127.0.0.1 and wait until it answers.

Used by `tune ui` and by the tests' real-server fixture. One worker, and MLflow's job execution off,
so the server is one light process on a laptop.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["free_port", "start_mlflow_server", "stop_server", "wait_until_healthy"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def start_mlflow_server(
    backend_store_uri: str,
    *,
    port: int,
    artifacts_destination: Path,
    host: str = "127.0.0.1",
    log_file: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `mlflow server` in its own process group; output goes to `log_file` (or nowhere)."""
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow_cli) if mlflow_cli.exists() else "mlflow",
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        str(artifacts_destination),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    output = open(log_file, "ab") if log_file is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    finally:
        if log_file is not None:
            output.close()  # type: ignore[union-attr]


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    """Poll `url/health` until it answers 200; raise if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"mlflow server exited with status {process.returncode} before answering"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"mlflow server at {url} did not answer /health within {timeout:.0f} s")


def _wait_for_group(process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Whether every process of `process`'s group has exited within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        process.poll()  # reap the leader, else it counts as a member
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def stop_server(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Stop the server and its workers (its own process group) and wait until all have exited:
    SIGTERM, then SIGKILL to whatever is left after `timeout` seconds."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return
        if _wait_for_group(process, timeout):
            return
