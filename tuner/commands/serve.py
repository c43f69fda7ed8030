"""`tune serve`: a model behind SageMaker's inference contract, on 127.0.0.1 by default."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from pathlib import Path

import click

from trainer.errors import UserError

__all__ = ["command"]


def _forward_threads(workers: int) -> int:
    """Torch threads for each worker's forward passes: this process's (`OMP_NUM_THREADS` or the
    cores) for one worker, the cores shared out among several."""
    import torch

    if workers == 1:
        return torch.get_num_threads()
    return max(1, (os.cpu_count() or 1) // workers)


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UserError(
                f"cannot listen on {host}:{port} ({exc.strerror}); choose another with --port "
                "(or SAGEMAKER_BIND_TO_PORT)"
            ) from None


@click.command(
    "serve",
    help="""Serve a model behind SageMaker's inference contract, as its endpoint container does.

    MODEL is a model.tar.gz (from tune train or a study's best/) or an MLflow model URI, such as
    models:/quickstart@champion (the model a study registered), models:/NAME/VERSION or
    runs:/RUN_ID/model.

    \b
    GET  /ping          200 once the model is loaded
    POST /invocations   a JPEG or PNG body (Content-Type application/x-image, image/jpeg or
                        image/png) -> {"prediction": [p0, p1, ...]}; an application/x-recordio
                        body of im2rec image records, or Accept: application/jsonlines,
                        -> one {"prediction": [...]} line per image, as batch transform writes

    Requests that arrive together go through the model as one batch (up to --max-batch-size
    images, waiting at most --max-batch-delay-ms for more). A request the endpoint cannot answer
    gets a 4xx with a JSON {"code", "message"}: empty or undecodable body (400), unacceptable
    Accept (406), a body or image over the limits (413), a wrong Content-Type (415), more images
    waiting than the server holds (429).

    \b
    Example:
      tune serve models:/quickstart@champion &
      curl -H 'Content-Type: image/jpeg' --data-binary @cat.jpg http://127.0.0.1:8080/invocations
    """,
)
@click.argument("model")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on (0.0.0.0 for every interface, as in a SageMaker container).",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8080,
    show_default=True,
    envvar="SAGEMAKER_BIND_TO_PORT",
    show_envvar=True,
    help="Port to listen on; SAGEMAKER_BIND_TO_PORT sets it as in SageMaker containers.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Server processes, each with the model loaded and its share of the CPU cores. A new "
    "connection goes to whichever process accepts it first, so a few keep-alive clients may all "
    "land on one: more processes pay off with many clients.",
)
@click.option(
    "--tracking-uri",
    default=None,
    help="The MLflow store of an MLflow MODEL URI (default: MLFLOW_TRACKING_URI, else "
    "studies/mlflow.db or mlflow.db here).",
)
@click.option(
    "--max-batch-size",
    type=click.IntRange(1, 1024),
    default=32,
    show_default=True,
    help="Most images in one forward pass.",
)
@click.option(
    "--max-batch-delay-ms",
    type=click.FloatRange(0, 1000),
    default=5.0,
    show_default=True,
    help="Longest a request waits for others to share its forward pass.",
)
@click.option(
    "--max-payload-mb",
    type=click.IntRange(1, 100),
    default=6,
    show_default=True,
    help="Largest request body, in MiB (SageMaker's MaxPayloadInMB).",
)
@click.option(
    "--verbose", is_flag=True, help="Also show uvicorn's access log and MLflow's INFO lines."
)
def command(
    model: str,
    host: str,
    port: int,
    workers: int,
    tracking_uri: str | None,
    max_batch_size: int,
    max_batch_delay_ms: float,
    max_payload_mb: int,
    verbose: bool,
) -> None:
    """Resolve MODEL to a model.tar.gz, load it, and serve until Ctrl-C or SIGTERM."""
    import uvicorn

    from tuner.serving.app import ENVIRONMENT_VARIABLE, ServeSettings, build_app, load_predictor
    from tuner.serving.contract import Limits
    from tuner.serving.model_source import resolve_model
    from tuner.tracking_uri import model_lookup_uri

    if not verbose:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        logging.getLogger("mlflow").setLevel(logging.ERROR)
    _check_port_free(host, port)
    with tempfile.TemporaryDirectory(prefix="tune-serve-") as tmp:
        source = resolve_model(
            model, tracking_uri=model_lookup_uri(tracking_uri), download_dir=Path(tmp)
        )
        settings = ServeSettings(
            archive=source.archive.resolve(),
            max_batch_size=max_batch_size,
            max_batch_delay_ms=max_batch_delay_ms,
            threads=_forward_threads(workers),
            limits=Limits(max_payload_bytes=max_payload_mb * 1024 * 1024),
        )
        predictor = load_predictor(settings)
        hp = predictor.loaded.hyperparameters
        shape = ",".join(str(n) for n in predictor.loaded.image_shape)
        kind = "multi-label, " if predictor.loaded.multi_label else ""
        click.echo(
            f"model: {source.description}: ResNet-{hp.num_layers}, {kind}"
            f"{predictor.num_classes} classes, image_shape {shape}"
        )
        url_host = f"[{host}]" if ":" in host else host
        click.echo(
            f"serving at http://{url_host}:{port} ({workers} worker{'s' if workers > 1 else ''}, "
            f"batches of up to {max_batch_size} images within {max_batch_delay_ms:g} ms): "
            "GET /ping, POST /invocations; Ctrl-C stops it"
        )
        options = {
            "host": host,
            "port": port,
            "log_level": "info" if verbose else "warning",
            "access_log": verbose,
            "timeout_graceful_shutdown": 10,
        }
        if workers == 1:
            uvicorn.run(build_app(predictor, settings), **options)  # type: ignore[arg-type]
        else:
            del predictor  # each worker process loads its own
            os.environ[ENVIRONMENT_VARIABLE] = settings.to_json()
            uvicorn.run(
                "tuner.serving.app:app_from_environment",
                factory=True,
                workers=workers,
                **options,  # type: ignore[arg-type]
            )
    click.echo("stopped")
