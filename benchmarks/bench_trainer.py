"""Trainer overhead and mixed precision: prints, in one run,

1. our `fit`'s training img/s over a bare PyTorch loop's, on the same model (ResNet-20, 32x32), the
   same batch, precision and in-memory batches (target >= 0.95, float32 and float16);
2. the CPU capability and float16 img/s over float32 img/s for our trainer (target >= 1.5 where
   bf16 is native on the CPU, or on CUDA; never < 0.95 elsewhere);
3. peak memory of each (CUDA: max allocated; CPU: the measuring process's peak RSS).

Throughput: trainer and bare loop alternate in one process, `--repeats` times each (first epoch of
each run is warm-up), and the medians are compared, so a busy machine slows both alike. Peak
memory: one short run of each in its own process (so the peak RSS is its own).
The bare loop is what a careful user writes: channels_last, autocast (+ GradScaler on CUDA),
zero_grad / backward / step, no per-step host sync, and fit's deterministic cuDNN settings.
Images are seeded random uint8 (throughput does not depend on content).

    python -m benchmarks.bench_trainer [--images 1024] [--batch 128] [--epochs 3] [--repeats 3]
                                       [--device cpu] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from trainer.data import InMemoryLoaders
from trainer.hyperparameters import Hyperparameters, parse_hyperparameters
from trainer.loop import fit
from trainer.models import build_model
from trainer.optim import build_optimizer
from trainer.precision import cpu_capability, resolve_device, resolve_precision


def _hp(precision: str, images: int, epochs: int, batch: int) -> Hyperparameters:
    return parse_hyperparameters(
        {
            "num_classes": 10,
            "num_training_samples": images,
            "num_layers": 20,
            "image_shape": "3,32,32",
            "mini_batch_size": batch,
            "epochs": epochs,
            "precision_dtype": precision,
            "learning_rate": 0.05,
        }
    )


def _loaders(hp: Hyperparameters, device: torch.device) -> InMemoryLoaders:
    g = torch.Generator().manual_seed(0)
    n = hp.num_training_samples
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g).to(device)
    y = torch.randint(0, 10, (n,), generator=g).to(device)
    batch = hp.mini_batch_size
    return InMemoryLoaders(x, y, x[:batch], y[:batch], batch_size=batch)


def _trainer(hp: Hyperparameters, device: torch.device) -> list[float]:
    with tempfile.TemporaryDirectory() as out:
        result = fit(hp, _loaders(hp, device), out, device=device, log=lambda line: None)
    return [m["train:images_per_second"] for m in result.history]


def _bare(hp: Hyperparameters, device: torch.device) -> list[float]:
    torch.manual_seed(0)
    if device.type == "cuda":  # the same cuDNN settings as `fit` (deterministic with a seed)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    precision = resolve_precision(hp.precision_dtype, device)
    model = build_model(hp).to(device).to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, hp)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.grad_scaling)
    loss_fn = torch.nn.CrossEntropyLoss()
    loaders = _loaders(hp, device)
    rates = []
    for epoch in range(hp.epochs):
        loaders.set_epoch(epoch)
        model.train()
        start, seen = time.perf_counter(), 0
        for images, labels in loaders.train:
            images = images.contiguous(memory_format=torch.channels_last)
            with precision.autocast():
                loss = loss_fn(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            seen += len(labels)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(seen / (time.perf_counter() - start))
    return rates


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:  # VmHWM starts afresh at exec; ru_maxrss would carry the forking parent's peak over
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _worker(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    hp = _hp(args.precision, args.images, args.epochs + 1, args.batch)  # epoch 1: warm-up
    rates = {"trainer": _trainer, "bare": _bare}[args.worker](hp, device)
    print(
        json.dumps(
            {
                "img_s": statistics.median(rates[1:]),
                "peak_mb": _peak_mb(device),
                "ran_as": resolve_precision(args.precision, device).name,
            }
        )
    )


def _measure(args: argparse.Namespace, worker: str, precision: str) -> dict[str, float | str]:
    """One short run (4 batches an epoch, 1 + 1 epochs) of `worker` in its own process."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.bench_trainer",
        "--worker",
        worker,
        "--precision",
        precision,
        "--images",
        str(args.batch * 4),
        "--epochs",
        "1",
        "--threads",
        str(args.threads),
        "--batch",
        str(args.batch),
    ]
    if args.device:
        cmd += ["--device", args.device]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1024, help="training images per epoch")
    parser.add_argument("--batch", type=int, default=128, help="mini_batch_size")
    parser.add_argument("--epochs", type=int, default=3, help="measured epochs (+1 warm-up)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--worker", choices=["trainer", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return

    device = resolve_device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device: {where}; CPU capability: {cpu_capability()}; torch threads: "
        f"{args.threads or torch.get_num_threads()}; ResNet-20 3x32x32, batch {args.batch}, "
        f"{args.images} images/epoch, {args.epochs} measured epochs, {args.repeats} repeats"
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = {  # first, while this process is small (each child's own peak, see _peak_mb)
        (worker, precision): float(_measure(args, worker, precision)["peak_mb"])
        for precision in ("float32", "float16")
        for worker in ("trainer", "bare")
    }
    rates: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for precision in ("float32", "float16"):
            hp = _hp(precision, args.images, args.epochs + 1, args.batch)
            for worker, run in (("trainer", _trainer), ("bare", _bare)):
                rates.setdefault((worker, precision), []).append(
                    statistics.median(run(hp, device)[1:])
                )

    def median(worker: str, precision: str) -> float:
        return statistics.median(rates[(worker, precision)])

    for precision in ("float32", "float16"):
        ours, bare = median("trainer", precision), median("bare", precision)
        ran_as = resolve_precision(precision, device).name
        print(
            f"precision_dtype={precision} (runs as {ran_as}): trainer {ours:.0f} img/s, "
            f"bare loop {bare:.0f} img/s, ratio {ours / bare:.3f} (target >= 0.95); peak memory "
            f"trainer {peak[('trainer', precision)]:.0f} MiB, "
            f"bare {peak[('bare', precision)]:.0f} MiB"
        )
    speedup = median("trainer", "float16") / median("trainer", "float32")
    native = resolve_precision("float16", device).autocast_dtype is not None
    target = ">= 1.5 (native half precision)" if native else ">= 0.95 (no native half precision)"
    print(f"float16 / float32 img/s (trainer): {speedup:.3f} (target {target})")


if __name__ == "__main__":
    main()
