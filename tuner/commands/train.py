"""`tune train`: one training run with fixed hyperparameters, like one SageMaker training job."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from trainer.errors import HyperparameterError

if TYPE_CHECKING:
    from trainer.data import DataConfig
    from trainer.hyperparameters import Hyperparameters
    from trainer.loop import FitResult

__all__ = ["command", "hyperparameters_from"]


def hyperparameters_from(file: Path | None, pairs: tuple[str, ...]) -> dict[str, str]:
    """The `--hyperparameters` file's values, overridden by each `--hp name=value`."""
    from trainer.hyperparameters import load_hyperparameters_file

    values: dict[str, str] = dict(load_hyperparameters_file(file)) if file else {}
    bad = [pair for pair in pairs if "=" not in pair or not pair.split("=", 1)[0].strip()]
    if bad:
        raise HyperparameterError(
            [
                f"--hp must be given as name=value (e.g. --hp num_classes=10), but got {p!r}"
                for p in bad
            ]
        )
    for pair in pairs:
        name, value = pair.split("=", 1)
        values[name.strip()] = value.strip()
    if not values:
        raise HyperparameterError(
            "no hyperparameters given: pass --hyperparameters hyperparameters.json or --hp "
            "name=value (num_classes and num_training_samples are required)"
        )
    return values


@click.command(
    "train",
    help="""Train once with fixed hyperparameters, like one SageMaker training job.

    DATA is a directory in SageMaker's channel layout: train/ and validation/ with train_lst/ and
    validation_lst/ (images), or a .rec in train/ and validation/ (RecordIO), or
    train.manifest/validation.manifest (augmented manifest); a model/ folder holding an earlier
    model.tar.gz starts incremental training. The result is OUTPUT/model.tar.gz, with per-epoch
    metrics printed on the way (one line per epoch).

    \b
    Example:
      tune train --data data/cifar10 --output out \\
        --hp num_classes=10 --hp num_training_samples=45000 \\
        --hp num_layers=20 --hp image_shape=3,32,32 --hp epochs=5
    """,
)
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Data directory with the SageMaker channels (train/, validation/, ...).",
)
@click.option(
    "--output",
    "output_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where model.tar.gz is written (created if missing; written only at the end).",
)
@click.option(
    "--hyperparameters",
    "hp_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A SageMaker hyperparameters.json (a JSON object; values may be strings).",
)
@click.option(
    "--hp",
    "pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="One hyperparameter, SageMaker's name and value (repeatable); overrides the "
    "same name from --hyperparameters.",
)
@click.option(
    "--content-type",
    default="auto",
    show_default=True,
    help="auto, image, recordio or augmented-manifest (SageMaker's MIME names such as "
    "application/x-image and application/x-recordio are accepted too).",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    help="Random seed: the same seed, data and hyperparameters give the same model.",
)
@click.option(
    "--track/--no-track",
    default=None,
    help="Record the run in MLflow (params, per-epoch metrics, the model). Default: on when "
    "--tracking-uri or MLFLOW_TRACKING_URI is set; --track alone records to sqlite:///mlflow.db. "
    "While the store is unreachable the records wait in OUTPUT/mlflow-spool/ "
    "(`tune results OUTPUT --sync` records them).",
)
@click.option("--tracking-uri", default=None, help="MLflow tracking URI (implies --track).")
@click.option(
    "--experiment", default="tune-train", show_default=True, help="MLflow experiment name."
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Ray Train workers (data-parallel). Above 1, kv_store picks dist_sync (the default: "
    "DDP, mini_batch_size per worker) or dist_async (a parameter server on a Ray actor).",
)
@click.option(
    "--address",
    default=None,
    help="With --workers > 1: the Ray cluster to run them on (e.g. HEAD_IP:6379 after `ray start "
    "--head`); default: a local Ray. DATA and OUTPUT must then be paths every node can reach.",
)
@click.option(
    "--cache-mib",
    default=None,
    type=click.IntRange(min=0),
    help="Memory for decoded images, in MiB: a channel that fits is decoded once and kept; a "
    "larger one is decoded again each epoch by worker processes, with bounded memory. "
    "0 always streams. [default: 4096]",
)
@click.option(
    "--checkpoint-dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the training state here after every epoch (as SageMaker's checkpoint_local_path "
    "does for spot training): the same command run again continues after the last finished "
    "epoch instead of starting over. Single-process runs only.",
)
def command(
    data_dir: Path,
    output_dir: Path,
    hp_file: Path | None,
    pairs: tuple[str, ...],
    content_type: str,
    seed: int,
    track: bool | None,
    tracking_uri: str | None,
    experiment: str,
    workers: int,
    address: str | None,
    cache_mib: int | None,
    checkpoint_dir: Path | None,
) -> None:
    """Parse and check everything, then train (see the help text above)."""
    from trainer.data import DataConfig
    from trainer.hyperparameters import parse_hyperparameters
    from trainer.loop import fit
    from tuner.tracking_uri import tracking_requested, training_tracking_uri

    hp = parse_hyperparameters(hyperparameters_from(hp_file, pairs))
    cache = None if cache_mib is None else cache_mib << 20
    data = DataConfig(data_dir, content_type=content_type, cache_bytes=cache)
    if workers > 1 and checkpoint_dir is not None:
        raise click.BadParameter(
            f"--checkpoint-dir is for single-process runs (--workers 1), not --workers {workers}",
            param_hint="--checkpoint-dir",
        )
    if workers > 1:
        result = _train_on_ray(hp, data, output_dir, workers=workers, address=address, seed=seed)
    else:
        result = fit(
            hp,
            data,
            output_dir,
            seed=seed,
            state_dir=checkpoint_dir,
            log=lambda line: click.echo(line, err=False),
        )
    metrics = " ".join(f"{k}={v:.4f}" for k, v in result.metrics.items() if k.endswith(":accuracy"))
    click.echo(f"model written to {result.model_path} (best epoch {result.best_epoch}; {metrics})")
    if tracking_requested(track, tracking_uri):
        from tuner.tracking import record_training_run

        record_training_run(
            hp,
            result,
            tracking_uri=training_tracking_uri(tracking_uri),
            experiment_name=experiment,
            folder=output_dir,
            log=click.echo,
        )


def _train_on_ray(
    hp: Hyperparameters,
    data: DataConfig,
    output_dir: Path,
    *,
    workers: int,
    address: str | None,
    seed: int,
) -> FitResult:
    """`--workers N` (N > 1): the run on N Ray Train workers, as `kv_store` says (see
    `tuner.distributed`)."""
    import ray

    from tuner.distributed import train_distributed

    if not hp.kv_store:
        click.echo(f"kv_store is not set: using dist_sync (synchronous DDP) over {workers} workers")
        hp = hp.replace(kv_store="dist_sync")
    if not ray.is_initialized():  # rank 0's lines come through train_distributed's `log`
        # a cluster only when asked for (--address, RAY_ADDRESS), never one that happens to run here
        address = address or os.environ.get("RAY_ADDRESS")
        ray.init(address=address or "local", log_to_driver=False)
    cpus = ray.cluster_resources().get("CPU", 0)
    if address is None and cpus < workers:  # a local Ray would wait for them forever
        raise click.BadParameter(
            f"{workers} needs one CPU per worker, but the local Ray has {cpus:g}: use at most "
            "that many workers, or a Ray cluster with --address",
            param_hint="--workers",
        )
    run = train_distributed(hp, data, output_dir, workers=workers, seed=seed, log=click.echo)
    if run.updates_by_worker:
        updates = run.updates_by_worker
        counts = ", ".join(f"worker {r}: {n}" for r, n in sorted(updates.items()))
        click.echo(f"parameter server applied {sum(updates.values())} updates ({counts})")
    return run.fit
