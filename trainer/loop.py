"""The epoch loop: train, validate, report, early stopping, checkpoints, `model.tar.gz`.

`train_one_epoch` and `evaluate` are plain functions that read top to bottom; `fit` wires them to
the data, the schedule, early stopping and the checkpoint policy. The hot loop never waits for
the host: metrics are summed on the device and read once per epoch.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from trainer.artifacts import (
    ARCHIVE_NAME,
    apply_weights,
    atomic_torch_save,
    checkpoint_name,
    load_incremental_weights,
    write_model_archive,
)
from trainer.data.config import DataConfig
from trainer.data.memory import InMemoryLoaders
from trainer.early_stopping import EarlyStopping
from trainer.errors import HyperparameterError
from trainer.hyperparameters import Hyperparameters
from trainer.metrics import MetricTotals
from trainer.models import build_model
from trainer.notices import notice, notices_to
from trainer.optim import build_optimizer, build_scheduler, current_learning_rate
from trainer.precision import (
    Precision,
    cpu_capability,
    place_model,
    prefers_channels_last,
    resolve_device,
    resolve_precision,
)
from trainer.progress import Progress

__all__ = [
    "STATE_FILE",
    "FitResult",
    "InMemoryLoaders",
    "TrainingData",
    "evaluate",
    "fit",
    "format_progress",
    "train_one_epoch",
]

STATE_FILE = "training_state.pt"
Batch = tuple[torch.Tensor, torch.Tensor]
Report = Callable[[dict[str, float]], None]


class TrainingData(Protocol):
    """What `fit` needs from the data: `trainer.data.Loaders` or `InMemoryLoaders`."""

    @property
    def train(self) -> Iterable[Batch]: ...
    @property
    def validation(self) -> Iterable[Batch]: ...
    @property
    def num_train(self) -> int: ...
    @property
    def class_counts(self) -> Sequence[int] | torch.Tensor | None: ...

    def set_epoch(self, epoch: int) -> None: ...


@dataclass
class FitResult:
    """The last epoch's metrics, every epoch's, the best validation epoch and the archive."""

    metrics: dict[str, float]
    history: list[dict[str, float]]
    best_epoch: int
    model_path: Path
    stopped_early: bool = False


@dataclass
class _Progress:
    """Everything that changes per epoch and must survive a resume."""

    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_accuracy: float = -1.0
    best_epoch: int = 0
    checkpoints: list[int] = field(default_factory=list)
    stopped_early: bool = False


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[Batch],
    optimizer: Optimizer,
    scheduler: LRScheduler,
    loss_fn: nn.Module,
    precision: Precision,
    scaler: torch.amp.GradScaler,
    totals: MetricTotals,
    *,
    channels_last: bool = True,
    progress: Progress | None = None,
) -> int:
    """One pass over `batches` (one scheduler step per batch); returns the images seen.
    `progress.update` is told of each batch (it reads no device value unless it draws)."""
    model.train()
    device = precision.device
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    seen = 0
    for images, labels in batches:
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        labels = labels.to(device, non_blocking=True)
        with precision.autocast():
            logits = model(images)
            loss = loss_fn(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        totals.update(logits, labels, loss)
        seen += labels.shape[0]
        if progress is not None:
            progress.update(labels.shape[0])
    return seen


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    batches: Iterable[Batch],
    loss_fn: nn.Module,
    precision: Precision,
    totals: MetricTotals,
    *,
    channels_last: bool = True,
) -> None:
    """Add the model's outputs on `batches` to `totals` (eval mode, no gradients)."""
    model.eval()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for images, labels in batches:
        images = images.to(precision.device, non_blocking=True)
        labels = labels.to(precision.device, non_blocking=True)
        with precision.autocast():
            logits = model(images.contiguous(memory_format=memory_format))
            loss = loss_fn(logits.float(), labels)
        totals.update(logits, labels, loss)


def format_progress(metrics: Mapping[str, float], epochs: int) -> str:
    """`epoch 3/30 train:accuracy=0.712 validation:accuracy=0.694 ... lr=0.1 img/s=812 time=3.1s`:
    every metric as `name=value`, so a regex like `validation:accuracy=([0-9.]+)` parses it."""
    named = [
        f"{k}={v:.4f}"
        for k, v in metrics.items()
        if k.startswith(("train:", "validation:")) and k != "train:images_per_second"
    ]
    return (
        f"epoch {int(metrics['epoch'])}/{epochs} "
        + " ".join(named)
        + f" lr={metrics['learning_rate']:.6g} img/s={metrics['train:images_per_second']:.0f}"
        + f" time={metrics['epoch_seconds']:.1f}s"
    )


def _loaders(
    hp: Hyperparameters, data: DataConfig | TrainingData, seed: int, device: torch.device
) -> TrainingData:
    if not isinstance(data, DataConfig):
        return data
    from trainer.data import build_loaders

    # Under DDP each worker takes its share of every epoch, so the lr schedule's epoch length holds.
    return build_loaders(hp, data, seed=seed, device=device, shard=_world())


def _start_block(loaders: TrainingData, precision: Precision, hp: Hyperparameters) -> list[str]:
    """What was found and what will run, printed once before the first epoch."""
    describe = getattr(loaders, "describe", None)
    lines = describe() if callable(describe) else []
    device = precision.device
    if device.type == "cpu":
        where = f"cpu ({cpu_capability()})"
    else:
        where = f"{device} ({torch.cuda.get_device_name(device)})"
    lines.append(
        f"device: {where}, precision: {precision.name}, threads: {torch.get_num_threads()}, "
        f"model: ResNet-{hp.num_layers} at {hp.image_shape}, batch {hp.mini_batch_size}"
    )
    return lines


def _epoch_progress(
    loaders: TrainingData,
    totals: MetricTotals,
    epoch: int,
    epochs: int,
    world: tuple[int, int],
    log: Callable[[str], None],
) -> Progress | None:
    """A progress bar or periodic line for one training epoch (rank 0 of `world` only)."""
    rank, world_size = world
    if rank != 0:
        return None
    train = loaders.train
    return Progress(
        loaders.num_train // world_size,
        f"epoch {epoch}/{epochs}",
        log=log,
        steps=len(train) if isinstance(train, Sized) else None,
        status=lambda: " ".join(
            f"{k}={v:.4f}" for k, v in totals.compute("train").items() if "top_k" not in k
        ),
    )


def _incremental_weights(
    hp: Hyperparameters, data: DataConfig | TrainingData, log: Callable[[str], None]
) -> tuple[dict[str, torch.Tensor], Path] | None:
    """The weights of the `model/` channel's archive (incremental training), and that folder."""
    if not isinstance(data, DataConfig):
        return None
    model_dir = Path(data.root) / "model"
    if not model_dir.is_dir():
        return None
    weights = load_incremental_weights(model_dir, hp)
    log(f"incremental training: starting from the model in {model_dir}")
    return weights, model_dir


def _loss(hp: Hyperparameters, loaders: TrainingData, device: torch.device) -> nn.Module:
    if not hp.multi_label:
        return nn.CrossEntropyLoss()
    if not hp.use_weighted_loss or loaders.class_counts is None:
        return nn.BCEWithLogitsLoss()
    positives = torch.as_tensor(loaders.class_counts, dtype=torch.float32)
    pos_weight = (loaders.num_train - positives) / positives.clamp(min=1)
    return nn.BCEWithLogitsLoss(pos_weight=pos_weight.to(device))


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _keep_checkpoint(
    hp: Hyperparameters, progress: _Progress, epoch: int, improved: bool
) -> tuple[bool, list[int]]:
    """(save this epoch?, epochs whose checkpoints to drop) under the contract's policy."""
    if hp.checkpoint_frequency:
        return epoch % hp.checkpoint_frequency == 0, []
    return improved, list(progress.checkpoints) if improved else []


def fit(
    hp: Hyperparameters,
    data: DataConfig | TrainingData,
    output_dir: str | Path,
    *,
    report: Report | None = None,
    state_dir: str | Path | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    log: Callable[[str], None] = print,
    optimizer_factory: Callable[[nn.Module], Optimizer] | None = None,
) -> FitResult:
    """Train `hp` on `data` (a `trainer.data.DataConfig` or ready loaders) and write
    `output_dir/model.tar.gz`.

    `report(metrics)` is called once per epoch, after `state_dir/training_state.pt` (when
    `state_dir` is given) holds that epoch; a run whose `state_dir` already holds one continues
    from it. All data and hyperparameter problems are raised before anything is written.

    `optimizer_factory(model)` replaces `build_optimizer(model, hp)` with an optimizer that itself
    combines the workers' updates (a parameter server's client for `kv_store=dist_async`), so
    under torch.distributed the gradients are then not all-reduced (no DDP).
    """
    device = resolve_device(device)
    precision = resolve_precision(hp.precision_dtype, device)
    rank, world_size = _world()
    torch.manual_seed(seed)
    if device.type == "cuda":  # same seed, same model: deterministic cuDNN algorithms
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    with notices_to(log):  # ours and the data layer's, one `notice: ...` line each
        if precision.notice:
            notice(precision.notice)
        if hp.kv_store and world_size == 1:
            notice(f"kv_store={hp.kv_store} has no effect on single-machine training")
        if hp.top_k and hp.multi_label:
            notice("top_k is not reported with multi_label=1 (top-k accuracy needs one label)")
        loaders = _loaders(hp, data, seed, device)
    if rank == 0:
        for line in _start_block(loaders, precision, hp):
            log(line)
    initial = _incremental_weights(hp, data, log)
    model = build_model(hp)
    if initial is not None:
        apply_weights(model, *initial)
    channels_last = prefers_channels_last(device)
    place_model(model, device)
    trained: nn.Module = model
    if world_size > 1 and optimizer_factory is None:
        ids = [device] if device.type == "cuda" else None
        trained = DistributedDataParallel(model, device_ids=ids)
    optimizer = (optimizer_factory or (lambda m: build_optimizer(m, hp)))(model)
    scheduler = build_scheduler(optimizer, hp, world_size)
    scaler = precision.grad_scaler()
    loss_fn = _loss(hp, loaders, device)
    stopper = EarlyStopping(
        hp.early_stopping_min_epochs, hp.early_stopping_patience, hp.early_stopping_tolerance
    )
    progress = _Progress()
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}

    with contextlib.ExitStack() as stack:
        if state_dir is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fit-")))
        else:
            work = Path(state_dir)
            work.mkdir(parents=True, exist_ok=True)
        state_path = work / STATE_FILE
        if state_path.is_file():
            progress = _resume(state_path, hp, seed, parts, stopper)
            log(f"resuming from {state_path} after epoch {progress.epoch}")

        for epoch in range(progress.epoch + 1, hp.epochs + 1):
            if progress.stopped_early:
                break
            loaders.set_epoch(epoch - 1)
            learning_rate = current_learning_rate(optimizer)
            start = time.perf_counter()
            train_totals = MetricTotals(device, multi_label=bool(hp.multi_label), top_k=hp.top_k)
            progress_bar = _epoch_progress(
                loaders, train_totals, epoch, hp.epochs, (rank, world_size), log
            )
            seen = train_one_epoch(
                trained,
                loaders.train,
                optimizer,
                scheduler,
                loss_fn,
                precision,
                scaler,
                train_totals,
                channels_last=channels_last,
                progress=progress_bar,
            )
            if progress_bar is not None:
                progress_bar.close()
            train_metrics = train_totals.compute("train")  # waits for the device
            train_seconds = time.perf_counter() - start
            val_totals = MetricTotals(device, multi_label=bool(hp.multi_label), top_k=hp.top_k)
            evaluate(
                model,
                loaders.validation,
                loss_fn,
                precision,
                val_totals,
                channels_last=channels_last,
            )
            metrics = {
                "epoch": float(epoch),
                **train_metrics,
                **val_totals.compute("validation"),
                "learning_rate": learning_rate,
                "train:images_per_second": seen * world_size / max(train_seconds, 1e-9),
                "epoch_seconds": time.perf_counter() - start,
            }
            accuracy = metrics["validation:accuracy"]
            improved = accuracy > progress.best_accuracy
            if improved:
                progress.best_accuracy, progress.best_epoch = accuracy, epoch
            progress.stopped_early = bool(hp.early_stopping) and stopper.update(epoch, accuracy)
            progress.epoch = epoch
            progress.history.append(metrics)
            save, drop = _keep_checkpoint(hp, progress, epoch, improved)
            if rank == 0:
                if save:
                    atomic_torch_save(model.state_dict(), work / checkpoint_name(epoch))
                    progress.checkpoints.append(epoch)
                for old in drop:
                    progress.checkpoints.remove(old)
                if state_dir is not None:
                    _save_state(state_path, hp, seed, parts, stopper, progress)
                # only once the saved state no longer lists them: a run stopped before (a full
                # disk, kill -9) resumes from a state whose checkpoints all exist
                for old in drop:
                    (work / checkpoint_name(old)).unlink(missing_ok=True)
            log(format_progress(metrics, hp.epochs))
            if report is not None:
                report(metrics)
            if progress.stopped_early:
                log(
                    f"early stopping after epoch {epoch}: validation:accuracy has not improved "
                    f"since epoch {stopper.best_epoch} (best {stopper.best:.4f})"
                )

        model_path = Path(output_dir) / ARCHIVE_NAME
        if rank == 0:
            write_model_archive(
                model_path,
                hp=hp,
                state_dict=model.state_dict(),
                checkpoints={e: work / checkpoint_name(e) for e in progress.checkpoints},
                info={
                    "best_epoch": progress.best_epoch,
                    "epochs_run": progress.epoch,
                    "stopped_early": progress.stopped_early,
                    "metrics": progress.history[-1] if progress.history else {},
                },
            )
    return FitResult(
        metrics=progress.history[-1] if progress.history else {},
        history=progress.history,
        best_epoch=progress.best_epoch,
        model_path=model_path,
        stopped_early=progress.stopped_early,
    )


def _save_state(
    path: Path,
    hp: Hyperparameters,
    seed: int,
    parts: Mapping[str, Any],
    stopper: EarlyStopping,
    progress: _Progress,
) -> None:
    atomic_torch_save(
        {
            "hyperparameters": hp.to_strings(),
            "seed": seed,
            **{name: part.state_dict() for name, part in parts.items()},
            "early_stopping": stopper.state_dict(),
            "progress": vars(progress),
            "rng": torch.get_rng_state(),
        },
        path,
    )


def _resume(
    path: Path, hp: Hyperparameters, seed: int, parts: Mapping[str, Any], stopper: EarlyStopping
) -> _Progress:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["hyperparameters"] != hp.to_strings() or state["seed"] != seed:
        raise HyperparameterError(
            f"{path} holds a run with other hyperparameters or seed; use a new state directory "
            f"(saved: seed={state['seed']} {state['hyperparameters']})"
        )
    for name, part in parts.items():
        part.load_state_dict(state[name])
    stopper.load_state_dict(state["early_stopping"])
    torch.set_rng_state(state["rng"])
    return _Progress(**state["progress"])
