"""Real-size throughput: `tune train` end to end on the full CIFAR-10 RecordIO split against the
model-only loop and against MXNet 1.9.1's own `train_cifar10.py`, measured in one run.

Prints, for our trainer as a user runs it (`tune train` in its own process, RecordIO in,
decode + random crop + mirror + train + validate):
- start-up: process start until the start block is printed (data read and decoded, the model about
  to be built; the first batch follows at once);
- images/s of the first epoch and of the later ones (the trainer's own per-epoch figure);
- whole-process wall time and peak RSS (the process and its DataLoader workers, sampled every
  0.25 s and summed, so pages a forked worker shares with its parent count twice);
- the same with the cache off (`--cache-mib 0`): images decoded by workers every epoch;
and, in the same run:
- the model-only loop (same model, batch and precision, images already in memory and cropped, no
  data work at all): later-epoch img/s over it;
- MXNet 1.9.1 (`benchmarks/mxnet_reference.py`, run with the interpreter given by `--mxnet-python`)
  training the same `.rec` for the same epochs: ours over theirs per epoch (target >= 1.0) and for
  the whole process including start-up (target >= 0.95).
With `--precision float16` on a CPU with native bf16, our float16 run over MXNet's float32 run
(target >= 1.5).

    python -m benchmarks.bench_scale --data DIR [--epochs 2] [--streamed-epochs 1]
                                     [--precision float16] [--mxnet-python PATH]

DIR holds `train/*.rec` and `validation/*.rec` (+ `.idx`), e.g. links to
`../shared/data/mxnet-recordio/cifar10-{train,validation}.{rec,idx}`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from trainer.hyperparameters import parse_hyperparameters
from trainer.models import build_model
from trainer.optim import build_optimizer
from trainer.precision import cpu_capability, cpu_has_native_bf16, resolve_precision

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_MXNET_PYTHON = Path("/work/mxnet-venv/bin/python")
_EPOCH = re.compile(r"^epoch (\d+)/\d+ .*img/s=([0-9.]+) time=([0-9.]+)s")
_MX_EPOCH = re.compile(r"^mxnet epoch (\d+) train_seconds=([0-9.]+) images_per_second=([0-9.]+)")


@dataclass
class Run:
    """One measured process: its output lines with arrival times, wall time and peak RSS."""

    lines: list[tuple[float, str]] = field(default_factory=list)
    seconds: float = 0.0
    peak_rss: int = 0
    returncode: int = 0

    def first(self, pattern: str) -> float | None:
        return next((t for t, line in self.lines if re.search(pattern, line)), None)


def _tree_rss(root: int) -> int:
    """Resident bytes of process `root` and all its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = {root}, [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        frontier = [pid for pid in children if pid not in tree]
        tree.update(frontier)
    total = 0
    for pid in tree:
        with contextlib.suppress(OSError, ValueError, IndexError):
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(status.split("VmRSS:")[1].split()[0]) * 1024
    return total


def _measure(command: list[str], env: dict[str, str] | None = None) -> Run:
    """Run `command`, timestamping each output line and sampling the process tree's RSS."""
    run = Run()
    start = time.perf_counter()
    popen = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            run.peak_rss = max(run.peak_rss, _tree_rss(popen.pid))
            done.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert popen.stdout is not None
    for line in popen.stdout:
        run.lines.append((time.perf_counter() - start, line.rstrip("\n")))
    run.returncode = popen.wait()
    run.seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if run.returncode != 0:
        tail = "\n".join(line for _, line in run.lines[-20:])
        raise SystemExit(f"{command[0]} failed (exit {run.returncode}):\n{tail}")
    return run


def _ours(
    data: Path, epochs: int, precision: str, extra: tuple[str, ...] = ()
) -> tuple[Run, list[float]]:
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as out:
        command = [
            str(Path(sys.executable).with_name("tune")),
            "train",
            "--data",
            str(data),
            "--output",
            out,
            *extra,
            *[
                f"--hp={k}={v}"
                for k, v in {
                    "num_classes": 10,
                    "num_training_samples": 45000,
                    "image_shape": "3,28,28",
                    "num_layers": 20,
                    "augmentation_type": "crop",
                    "mini_batch_size": 128,
                    "learning_rate": 0.1,
                    "epochs": epochs,
                    "precision_dtype": precision,
                }.items()
            ],
        ]
        run = _measure(command)
    rates = [float(m.group(2)) for _, line in run.lines if (m := _EPOCH.match(line))]
    return run, rates


def _mxnet(python: Path, data: Path, epochs: int) -> tuple[Run, list[float], float | None]:
    train = next((data / "train").glob("*.rec"))
    val = next((data / "validation").glob("*.rec"))
    command = [
        str(python),
        str(HERE / "mxnet_reference.py"),
        "--train",
        str(train),
        "--val",
        str(val),
        "--num-epochs",
        str(epochs),
        "--num-examples",
        "45000",
    ]
    run = _measure(command)
    rates = [float(m.group(3)) for _, line in run.lines if (m := _MX_EPOCH.match(line))]
    first = next(
        (float(line.split("=")[1]) for _, line in run.lines if "first_batch_seconds=" in line), None
    )
    return run, rates, first


def _model_only(precision: str, batches: int, repeats: int) -> float:
    """img/s of the bare loop: our model, batch 128 of in-memory 28x28 uint8 images, SGD."""
    hp = parse_hyperparameters(
        {
            "num_classes": 10,
            "num_training_samples": 45000,
            "image_shape": "3,28,28",
            "num_layers": 20,
            "mini_batch_size": 128,
            "precision_dtype": precision,
        }
    )
    device = torch.device("cpu")
    amp = resolve_precision(precision, device)
    torch.manual_seed(0)
    model = build_model(hp).to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, hp)
    loss_fn = torch.nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batches, 128, 3, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (batches, 128), generator=g)
    rates = []
    model.train()
    for _ in range(repeats + 1):  # the first pass warms up
        start = time.perf_counter()
        for x, y in zip(images, labels, strict=True):
            with amp.autocast():
                loss = loss_fn(model(x.contiguous(memory_format=torch.channels_last)), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        rates.append(batches * 128 / (time.perf_counter() - start))
    return statistics.median(rates[1:])


def _accuracies(run: Run, pattern: str) -> list[float]:
    found = (re.search(pattern, line) for _, line in run.lines if line.startswith(("epoch", "mx")))
    return [round(float(m.group(1)), 4) for m in found if m and "[" not in m.string]


def _ratio(ours: float, theirs: float, target: float) -> str:
    ratio = ours / theirs
    return f"{ratio:.2f}x   [target >= {target}: {'met' if ratio >= target else 'NOT met'}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="train/*.rec, validation/*.rec")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each run (>= 2)")
    parser.add_argument("--precision", default="float32", choices=["float32", "float16"])
    parser.add_argument("--mxnet-python", type=Path, default=DEFAULT_MXNET_PYTHON)
    parser.add_argument("--model-only-batches", type=int, default=60)
    parser.add_argument(
        "--streamed-epochs", type=int, default=1, help="epochs of a streamed run (0: none)"
    )
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch and the later ones)")
    bf16 = cpu_has_native_bf16()
    print(
        f"cpu: {cpu_capability()}, native bf16: {'yes' if bf16 else 'no'}, "
        f"cores: {len(os.sched_getaffinity(0))}, torch {torch.__version__}, "
        f"open-file limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}"
    )
    if args.precision == "float16" and not bf16:
        print("notice: no native bf16 on this CPU: --precision float16 trains in float32 here")

    run, rates = _ours(args.data, args.epochs, args.precision)
    startup = run.first(r"^device: ")
    print(
        f"ours: start-up {startup:.1f} s to the first batch; epoch 1 {rates[0]:.0f} img/s, "
        f"later epochs {statistics.median(rates[1:]):.0f} img/s; whole process "
        f"{run.seconds:.1f} s; peak RSS {run.peak_rss / 2**20:,.0f} MiB"
    )
    for _, line in run.lines:
        if line.startswith(("data:", "  train:", "  validation:", "device:")):
            print(f"  | {line}")

    if args.streamed_epochs:
        streamed, streamed_rates = _ours(
            args.data, args.streamed_epochs, args.precision, ("--cache-mib", "0")
        )
        print(
            f"ours streamed (--cache-mib 0: decoded every epoch by DataLoader workers): "
            f"start-up {streamed.first(r'^device: '):.1f} s; epoch 1 {streamed_rates[0]:.0f} "
            f"img/s ({streamed_rates[0] / rates[0]:.2f}x the cached epoch 1); peak RSS "
            f"{streamed.peak_rss / 2**20:,.0f} MiB"
        )

    bare = _model_only(args.precision, args.model_only_batches, repeats=3)
    later = statistics.median(rates[1:])
    print(f"model-only loop: {bare:.0f} img/s; ours (later epochs) over it: {later / bare:.2f}x")

    if not args.mxnet_python.is_file():
        print(
            f"mxnet: skipped ({args.mxnet_python} not found: python3 -m venv /work/mxnet-venv && "
            "/work/mxnet-venv/bin/pip install mxnet==1.9.1 'numpy<1.24')"
        )
        return
    mx, mx_rates, mx_first = _mxnet(args.mxnet_python, args.data, args.epochs)
    mx_later = statistics.median(mx_rates[1:])
    print(
        f"mxnet 1.9.1: start-up {mx_first:.1f} s to the first batch (finished); epoch 1 "
        f"{mx_rates[0]:.0f} img/s, later epochs {mx_later:.0f} img/s; whole process "
        f"{mx.seconds:.1f} s; peak RSS {mx.peak_rss / 2**20:,.0f} MiB"
    )
    target = 1.5 if args.precision == "float16" and bf16 else 1.0
    ours_acc = _accuracies(run, r"validation:accuracy=([0-9.]+)")
    mx_acc = _accuracies(mx, r"^mxnet epoch .*validation_accuracy=([0-9.]+)")
    print(f"validation:accuracy per epoch (same split): ours {ours_acc}, mxnet {mx_acc}")
    print(f"ours over mxnet, epoch 1: {_ratio(rates[0], mx_rates[0], target)}")
    print(f"ours over mxnet, later epochs: {_ratio(later, mx_later, target)}")
    whole = 1.5 if target == 1.5 else 0.95
    print(
        f"ours over mxnet, whole process (time ratio theirs/ours): "
        f"{_ratio(mx.seconds, run.seconds, whole)}"
    )


if __name__ == "__main__":
    main()
