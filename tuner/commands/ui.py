"""`tune ui`: the MLflow UI on a study's tracking store, bound to 127.0.0.1."""

from __future__ import annotations

import json
import signal
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

import click

from trainer.errors import UserError

__all__ = ["command", "store_of", "study_page"]


def store_of(study_dir: Path | None, tracking_uri: str | None) -> str:
    """The tracking URI to show: `--tracking-uri`, else the one the study recorded to (its
    `mlflow-runs.json`), else `MLFLOW_TRACKING_URI`, else the default store beside the study
    (or `./mlflow.db` without a study)."""
    from tuner.layout import read_tracking_runs
    from tuner.tracking_uri import (
        absolute_tracking_uri,
        resolve_tracking_uri,
        training_tracking_uri,
    )

    if tracking_uri:
        return absolute_tracking_uri(tracking_uri)
    if study_dir is not None:
        runs = read_tracking_runs(study_dir)
        if runs is not None:
            return runs.tracking_uri
        return resolve_tracking_uri(None, study_dir)
    return training_tracking_uri(None)


def _get(url: str, endpoint: str, **params: str) -> Any:
    """One GET of MLflow's REST API, as JSON."""
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{url}/api/2.0/mlflow/{endpoint}?{query}", timeout=10) as answer:
        return json.loads(answer.read())


def study_page(url: str, study_dir: Path | None) -> str:
    """The page to open on the UI at `url`: the study's experiment in MLflow's training view,
    with the study's shared view of its trials when the experiment has one; else the list of
    experiments (in the training view)."""
    from tuner.layout import read_tracking_runs
    from tuner.tracking.view import SHARE_TAG, experiment_url

    runs = read_tracking_runs(study_dir) if study_dir is not None else None
    run_id = runs.runs.get("study") if runs is not None else None
    if run_id is None:
        return experiment_url(url, None, shared_view=False)
    try:
        run = _get(url, "runs/get", run_id=run_id)["run"]
        experiment_id = str(run["info"]["experiment_id"])
        experiment = _get(url, "experiments/get", experiment_id=experiment_id)["experiment"]
    except (urllib.error.URLError, OSError, KeyError, TypeError, ValueError):
        return experiment_url(url, None, shared_view=False)  # the run is not in this store
    tags = {tag["key"] for tag in experiment.get("tags", [])}
    return experiment_url(url, experiment_id, shared_view=SHARE_TAG in tags)


# The server runs in its own process group (so Ctrl-C at the terminal reaches only `tune ui`):
# each of these signals must stop it through the `finally` below, or it keeps holding the port.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


@click.command(
    "ui",
    help="""Start the MLflow UI on a study's tracking store, bound to 127.0.0.1, and print its URL.

    The URL opens the study's experiment in MLflow's training view, its trials nested under the
    study run, with the objective and the searched hyperparameters as columns; select trials and
    press Compare (or open Chart view) to plot their metrics against the epoch.

    STUDY_DIR is a study directory (the store it recorded to is kept in its mlflow-runs.json);
    without it, MLFLOW_TRACKING_URI or ./mlflow.db. A study recording to a tracking server needs
    no UI of its own: the server's URL is printed instead.
    """,
)
@click.argument(
    "study_dir", required=False, type=click.Path(file_okay=False, path_type=Path), default=None
)
@click.option("--tracking-uri", default=None, help="Show this store instead of the study's.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind to.")
@click.option(
    "--port", default=5000, show_default=True, type=int, help="Port (a free one if it is taken)."
)
def command(study_dir: Path | None, tracking_uri: str | None, host: str, port: int) -> None:
    """Start `mlflow server` on the store, print its URL, serve until Ctrl-C (or SIGTERM, SIGHUP),
    then stop the server and its workers."""
    from tuner.tracking.server import (
        free_port,
        start_mlflow_server,
        stop_server,
        wait_until_healthy,
    )

    uri = store_of(study_dir, tracking_uri)
    if not uri.startswith("sqlite:///"):
        page = study_page(uri.rstrip("/"), study_dir) if uri.startswith("http") else uri
        click.echo(f"the study records to the tracking server {uri}: open {page}")
        return
    database = Path(uri[len("sqlite:///") :])
    if not database.is_file():
        raise UserError(
            f"there is no MLflow store at {database}: run a study (tune run) or a tracked "
            "training run (tune train --track) first, or pass --tracking-uri"
        )
    if not _port_is_free(host, port):
        port = free_port(host)
    url = f"http://{host}:{port}"
    previous = {signum: signal.signal(signum, _interrupt) for signum in _STOP_SIGNALS}
    process = None
    try:
        process = start_mlflow_server(
            uri, port=port, artifacts_destination=database.parent / "mlartifacts", host=host
        )
        wait_until_healthy(url, process)
        click.echo(f"MLflow UI for {uri}: {study_page(url, study_dir)}  (Ctrl-C stops it)")
        process.wait()
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        raise UserError(f"the MLflow UI could not start: {exc}") from None
    finally:
        for signum in _STOP_SIGNALS:  # a second Ctrl-C must not cut the stop short
            signal.signal(signum, signal.SIG_IGN)
        try:
            if process is not None:
                stop_server(process)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
