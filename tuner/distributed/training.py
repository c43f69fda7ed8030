"""`kv_store` for real: one training run on N Ray Train workers (`tune train --workers N`).

`dist_sync` is synchronous data-parallel training: `ray.train.torch.TorchTrainer` starts N workers
with torch.distributed set up (gloo on CPU, NCCL on GPU) and each calls `trainer.loop.fit`, which
then wraps the model in DDP, reads its shard, sums the metrics over workers and writes the archive
on rank 0 only; `mini_batch_size` is per worker. `dist_async` runs the same workers, but their
optimizer is a client of a parameter server on a Ray actor
(`tuner.distributed.parameter_server`), which applies every worker's gradients as they arrive.
Scale-out is a Ray cluster (`ray start --head`, then `--address`): the data and the output
directory must then be paths every node can read (the output one written by rank 0's node).
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.train.torch
from torch.optim import Optimizer

from trainer.data import DataConfig
from trainer.errors import UserError
from trainer.hyperparameters import Hyperparameters, parse_hyperparameters
from trainer.loop import FitResult, fit
from tuner.distributed.parameter_server import ParameterServerClient, start_parameter_server

__all__ = ["KV_STORES", "DistributedResult", "train_distributed"]

# kv_store -> whether the run needs a parameter server (dist_sync: DDP all-reduce inside `fit`).
KV_STORES: dict[str, bool] = {"dist_sync": False, "dist_async": True}


@dataclass(frozen=True)
class DistributedResult:
    """Rank 0's `FitResult` (metrics summed over workers), the worker count, the kv_store used
    and, for `dist_async`, how many pushes the parameter server applied from each worker rank."""

    fit: FitResult
    workers: int
    kv_store: str
    updates_by_worker: dict[int, int] = field(default_factory=dict)


def _quiet(line: str) -> None:
    """Progress lines of ranks other than 0 (their metrics are rank 0's: summed over workers)."""


class _RunLog:
    """Rank 0's progress lines and result, read by the driver (one small actor per run).

    The driver shows the lines itself and runs Ray with `log_to_driver=False`, so the user sees
    the epoch lines and, for a bad input, one error message, not every worker's Ray log and
    traceback. (Ray Train V2 also keeps reported metrics only with checkpoints.)
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.result: dict[str, Any] | None = None

    def add_line(self, line: str) -> None:
        self.lines.append(line)

    def lines_from(self, start: int) -> list[str]:
        return self.lines[start:]

    def put_result(self, result: dict[str, Any]) -> None:
        self.result = result

    def get_result(self) -> dict[str, Any] | None:
        return self.result


def _train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: `fit` on this worker's shard, then one report of rank 0's result."""
    rank = ray.train.get_context().get_world_rank()
    run_log = config["run_log"]
    hp = parse_hyperparameters(config["hyperparameters"])
    server = config["server"]
    factory: Callable[[Any], Optimizer] | None = None
    if server is not None:

        def factory(model: Any) -> Optimizer:
            return ParameterServerClient(model, server, rank, hp.learning_rate)

    result = fit(
        hp,
        config["data"],
        config["output_dir"],
        seed=config["seed"],
        device=ray.train.torch.get_device(),
        log=(lambda line: run_log.add_line.remote(line)) if rank == 0 else _quiet,
        optimizer_factory=factory,
    )
    if rank == 0:  # after the lines: one caller's calls run in order on the actor
        ray.get(run_log.put_result.remote(dataclasses.asdict(result)))


@contextlib.contextmanager
def _showing(run_log: Any, log: Callable[[str], None], every_s: float = 0.5) -> Iterator[None]:
    """Pass rank 0's new lines to `log` while the block runs, and the last ones after it."""
    stop = threading.Event()
    shown = 0

    def show() -> None:
        nonlocal shown
        for line in ray.get(run_log.lines_from.remote(shown)):
            log(line)
            shown += 1

    def poll() -> None:
        while not stop.wait(every_s):
            show()

    thread = threading.Thread(target=poll, name="run-log", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        show()


def _user_error(error: ray.train.WorkerGroupError) -> UserError | None:
    """The lowest rank's `UserError` (a bad hyperparameter or data seen by a worker), if any."""
    for _, failure in sorted(error.worker_failures.items()):
        if isinstance(failure, UserError):
            return failure
    return None


def train_distributed(
    hp: Hyperparameters,
    data: DataConfig,
    output_dir: str | Path,
    *,
    workers: int,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> DistributedResult:
    """Train `hp` on `data` with `workers` Ray Train workers on the connected Ray cluster (call
    `ray.init` first) and write rank 0's `output_dir/model.tar.gz`.

    `hp.kv_store` picks the mode (unset means `dist_sync`). GPUs are used when the cluster has one
    per worker. Rank 0's progress lines go to `log`. A `UserError` raised in a worker is raised
    here as itself.
    """
    kv_store = hp.kv_store or "dist_sync"
    server = start_parameter_server(hp) if KV_STORES[kv_store] else None
    run_log: Any = ray.remote(num_cpus=0)(_RunLog).remote()
    config = {
        "hyperparameters": hp.to_strings(),
        "data": dataclasses.replace(data, root=Path(data.root).resolve()),  # workers' cwd differs
        "output_dir": str(Path(output_dir).resolve()),
        "seed": seed,
        "server": server,
        "run_log": run_log,
    }
    use_gpu = ray.cluster_resources().get("GPU", 0) >= workers
    try:
        with tempfile.TemporaryDirectory(prefix="ray-train-") as storage:
            trainer = ray.train.torch.TorchTrainer(
                _train_worker,
                train_loop_config=config,
                scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=use_gpu),
                run_config=ray.train.RunConfig(name="tune-train", storage_path=storage),
            )
            try:
                with _showing(run_log, log):
                    trainer.fit()
            except ray.train.WorkerGroupError as error:
                user_error = _user_error(error)
                if user_error is None:
                    raise
                raise user_error from None
        result: dict[str, Any] = ray.get(run_log.get_result.remote())
        updates = ray.get(server.update_counts.remote()) if server is not None else {}
    finally:
        for actor in (run_log, server):
            if actor is not None:
                ray.kill(actor)
    return DistributedResult(
        fit=FitResult(**result),
        workers=workers,
        kv_store=kv_store,
        updates_by_worker={int(rank): int(n) for rank, n in updates.items()},
    )
