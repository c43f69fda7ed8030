"""The one adapter to engine state without a public API (`tuner.engine_internals`) still reads
what it claims with the engine versions installed; when an upgrade moves it, this fails and names
the version `constraints.txt` pins."""

from __future__ import annotations

import os
import re
from pathlib import Path

import mlflow
import pytest

from tuner.engine_internals import PINNED, mlflow_global_uris, routed_ray_cluster_messages

CONSTRAINTS = Path(__file__).resolve().parents[2] / "constraints.txt"


def _pin(package: str) -> str:
    found = re.search(rf"^{re.escape(package)}==\S+$", CONSTRAINTS.read_text(), re.M)
    return found.group(0) if found else f"{package} (not pinned!)"


def test_every_engine_the_adapter_reads_is_pinned() -> None:
    for engine in PINNED:
        assert "==" in _pin(engine), f"{engine} is read by tuner.engine_internals but not pinned"


def test_mlflows_global_uris_are_read_as_its_public_setters_set_them(tmp_path: Path) -> None:
    # the setters also set these variables (set_registry_uri(None) leaves its own): put back after
    saved_env = {
        name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    }
    where = f"tuner.engine_internals reads {', '.join(PINNED['mlflow'])}"
    try:
        before = mlflow_global_uris()
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"{where}, which {_pin('mlflow')} has but this MLflow has not: {exc}")
    tracking, registry = f"sqlite:///{tmp_path / 't.db'}", f"sqlite:///{tmp_path / 'r.db'}"
    try:
        mlflow.set_tracking_uri(tracking)
        mlflow.set_registry_uri(registry)
        assert mlflow_global_uris() == (tracking, registry), (
            f"{where}; they no longer hold what mlflow.set_*_uri set (pinned: {_pin('mlflow')})"
        )
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
        assert mlflow_global_uris() == (None, None), (
            f"{where}; None no longer means unset (pinned: {_pin('mlflow')})"
        )
    finally:
        mlflow.set_tracking_uri(before[0])  # type: ignore[arg-type]
        mlflow.set_registry_uri(before[1])  # type: ignore[arg-type]
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def test_rays_cluster_messages_go_to_the_sink_and_its_printer_comes_back(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ray._private import worker

    where = f"tuner.engine_internals replaces {PINNED['ray'][0]}"
    assert "print_to_stdstream" in worker.listen_error_messages.__code__.co_names, (
        f"{where}, but Ray's error listener no longer calls it (pinned: {_pin('ray')})"
    )
    printer = worker.print_to_stdstream
    dump = "Raylet is terminated. Termination is unexpected. Possible reasons include: ..."
    seen: list[str] = []
    with routed_ray_cluster_messages(seen.append):
        worker.print_to_stdstream({"lines": [dump], "pid": "raylet", "is_err": False}, False)
        worker.print_to_stdstream(
            {
                "lines": ["a worker's line"],
                "pid": 42,
                "ip": "127.0.0.1",
                "is_err": False,
                "task_name": "t",
                "actor_name": "",
                "job": "01000000",
            },
            True,
        )
    assert seen == [dump]
    out = capsys.readouterr().out
    assert dump not in out and "a worker's line" in out, f"{where} (pinned: {_pin('ray')})"
    assert worker.print_to_stdstream is printer
