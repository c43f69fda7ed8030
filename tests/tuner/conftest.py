"""Tuner test fixtures: a real `mlflow server` on 127.0.0.1 (free port, temp sqlite store)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen

import pytest

from tuner.tracking.server import free_port, start_mlflow_server, stop_server, wait_until_healthy


@dataclass
class MlflowServer:
    """A real `mlflow server` that a test can stop and start again on the same port and store."""

    root: Path
    port: int = field(default_factory=free_port)
    process: Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def backend_store_uri(self) -> str:
        return f"sqlite:///{self.root / 'server.db'}"

    def start(self) -> MlflowServer:
        self.process = start_mlflow_server(
            self.backend_store_uri,
            port=self.port,
            artifacts_destination=self.root / "artifacts",
            log_file=self.root / "server.log",
        )
        try:
            wait_until_healthy(self.uri, self.process)
        except RuntimeError as exc:
            log = (self.root / "server.log").read_text()[-3000:]
            raise RuntimeError(f"{exc}\n--- server.log ---\n{log}") from None
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_server(self.process)
            self.process = None


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One real tracking server for the session (tests use their own experiment names)."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    yield server
    server.stop()


@pytest.fixture()
def own_mlflow_server(tmp_path: Path) -> Iterator[MlflowServer]:
    """A server of the test's own, not yet started: for tests that stop and restart it."""
    server = MlflowServer(tmp_path / "mlflow-server")
    server.root.mkdir()
    yield server
    server.stop()
