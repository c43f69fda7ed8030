"""`tune ui`: the MLflow UI on a study's tracking store, bound to 127.0.0.1."""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from types import FrameType

import click

from trainer.errors import UserError

__all__ = ["command", "store_of"]


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
        click.echo(f"the study records to the tracking server {uri}: open that URL in a browser")
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
        click.echo(f"MLflow UI for {uri}: {url}  (Ctrl-C stops it)", err=False)
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
