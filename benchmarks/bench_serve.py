"""The endpoint against `tune predict`: images/s with 8 concurrent clients sending single JPEGs over
`tune predict`'s batched images/s on the same images and model (target >= 0.8), p50/p99 latency,
and a bounded load run: errors (target 0) and the server's RSS growth (target < 5%).

Two models (`--case`, default both), each trained here for one epoch on committed samples, or
given with `--model`:

- `quickstart`: CIFAR ResNet-20 at 3x32x32 (41 MFLOPs an image). Its forward pass costs about as
  much as the HTTP request around it, so this case measures the server's own overhead, on the cores
  the 8 clients share: the hard case for the ratio.
- `resnet50`: ResNet-50 at 3x224x224 (4 GFLOPs an image), the algorithm's usual input: the model
  dominates, as on a real endpoint. Fewer requests per round (`--requests-resnet50`).

The images are the 400 real CIFAR-10 JPEGs in `tests/assets/cifar10` (resized to the model's
input, as `tune predict` and the endpoint both do).

- `tune predict`: its code path in this process (`Predictor.prepare` each file's bytes, then
  `Predictor.predict` in its batches: 64 images at 32x32, 8 at 224x224 on a CPU) on the 400
  images twice per round, start-up excluded.
- The endpoint: `tune serve MODEL --workers N` as a subprocess (default 1, default batching),
  clients in threads of this process over keep-alive HTTP connections (`http.client`), each
  sending one image per request and waiting for the answer (closed loop); images/s is requests
  answered per second of wall time, after a warm-up of 200 requests. Clients and server share
  this machine's cores.
- The two are measured in alternating rounds (`--rounds`), medians compared, so that load from
  other processes on a shared machine falls on both.
- Load: `--load` requests by the same clients; errors are non-200 answers or failed connections;
  RSS is the server's `VmRSS` (summed over its worker processes) after the warm-up and after the
  load run.

`--threads N` gives torch N threads in both (`OMP_NUM_THREADS` for the server): on cores that
other processes keep busy, two OpenMP threads that wait on each other's barrier run a small model
many times slower than one (measured 10-20x here, with a niced background job on both cores).

    python -m benchmarks.bench_serve [--case quickstart|resnet50] [--model model.tar.gz]
                                     [--clients 8] [--rounds 5] [--requests 800] [--load 5000]
                                     [--threads N] [--workers N]
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "tests" / "assets" / "cifar10"


# case -> (the data it is trained on for one epoch, its hyperparameters)
CASES: dict[str, tuple[Path, dict[str, object]]] = {
    "quickstart": (
        IMAGES,
        {
            "num_classes": 10,
            "num_training_samples": 300,
            "num_layers": 20,
            "image_shape": "3,32,32",
        },
    ),
    "resnet50": (
        ROOT / "tests" / "assets" / "recordio" / "cifar10-224",
        {
            "num_classes": 4,
            "num_training_samples": 32,
            "num_layers": 50,
            "image_shape": "3,224,224",
        },
    ),
}


def _train_model(case: str, folder: Path) -> Path:
    """One epoch of the case's model on its committed samples."""
    from trainer.data import DataConfig
    from trainer.hyperparameters import parse_hyperparameters
    from trainer.loop import fit

    data, values = CASES[case]
    hp = parse_hyperparameters({**values, "mini_batch_size": 16, "epochs": 1})
    return Path(fit(hp, DataConfig(data), folder / case, seed=0, log=lambda _l: None).model_path)


def _predict_rate(predictor: Any, files: list[Path]) -> float:
    """`tune predict`'s work on `files` (read, prepare, predict in its batches): images/s."""
    start = time.perf_counter()
    arrays = [predictor.prepare(file, i) for i, file in enumerate(files)]
    probabilities = predictor.predict(arrays)
    seconds = time.perf_counter() - start
    assert probabilities.shape[0] == len(files)
    return len(files) / seconds


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _rss_kib(group: int) -> int:
    """The summed `VmRSS` of process group `group` (the server and its `--workers` processes)."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != group:  # pgrp
                continue
            lines = (status.parent / "status").read_text().splitlines()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        total += next((int(x.split()[1]) for x in lines if x.startswith("VmRSS:")), 0)
    if not total:
        raise RuntimeError(f"no process in group {group}")
    return total


def _start_server(
    model: Path, port: int, log: Path, threads: int | None, workers: int
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [str(Path(sys.executable).parent / "tune"), "serve", str(model), "--port", str(port)]
    command += ["--workers", str(workers)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"tune serve exited:\n{log.read_text()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/ping")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"tune serve did not answer /ping within 120 s:\n{log.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def _drive(
    port: int, bodies: list[bytes], clients: int, requests: int
) -> tuple[float, list[float], int]:
    """`requests` single-image POSTs from `clients` closed-loop clients: (wall seconds, latencies
    in seconds, errors)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    share = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine: list[float] = []
        failed = 0
        barrier.wait()
        for n in range(share[index]):
            body = bodies[(index * 7919 + n) % len(bodies)]
            start = time.perf_counter()
            try:
                connection.request(
                    "POST", "/invocations", body=body, headers={"Content-Type": "image/jpeg"}
                )
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    failed += 1
            except (OSError, http.client.HTTPException):
                failed += 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            mine.append(time.perf_counter() - start)
        connection.close()
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, latencies, errors[0]


def run_case(case: str, model: Path, args: argparse.Namespace, tmp: Path) -> float:
    """Measure one model as the module docstring says; prints the figures, returns the ratio."""
    from trainer.predict import Predictor

    requests = args.requests if case == "quickstart" else args.requests_resnet50
    files = sorted(IMAGES.rglob("*.jpg"))
    if case != "quickstart":
        files = files[: max(64, requests // 2)]
    bodies = [file.read_bytes() for file in files]
    print(f"\n{case}: model {model}; {len(files)} CIFAR-10 JPEGs from {IMAGES.relative_to(ROOT)}")
    predictor = Predictor.from_archive(model)
    _predict_rate(predictor, files[:16])  # warm-up
    port = _free_port()
    server = _start_server(model, port, tmp / f"serve-{case}.log", args.threads, args.workers)
    try:
        _drive(port, bodies, args.clients, max(args.clients * 2, requests // 4))  # warm-up
        rss_before = _rss_kib(server.pid)
        predict_rates, serve_rates, latencies, errors = [], [], [], 0
        for _ in range(args.rounds):  # alternating, so load from elsewhere hits both sides
            predict_rates.append(
                _predict_rate(predictor, files if case != "quickstart" else files * 2)
            )
            seconds, took, failed = _drive(port, bodies, args.clients, requests)
            serve_rates.append(requests / seconds)
            latencies += took
            errors += failed
        predict_rate = statistics.median(predict_rates)
        rate = statistics.median(serve_rates)
        quantiles = statistics.quantiles(latencies, n=100)
        print(
            f"  tune predict (batches of {predictor.batch_size}): {predict_rate:,.1f} images/s "
            f"(median of {args.rounds}: {', '.join(f'{r:.1f}' for r in predict_rates)})"
        )
        print(
            f"  tune serve, {args.clients} clients, one JPEG per request: {rate:,.1f} images/s "
            f"(median of {args.rounds}: {', '.join(f'{r:.1f}' for r in serve_rates)}; "
            f"{len(latencies)} requests, {errors} errors); latency p50 "
            f"{quantiles[49] * 1000:.1f} ms, p99 {quantiles[98] * 1000:.1f} ms"
        )
        ratios = ", ".join(f"{a / b:.2f}" for a, b in zip(serve_rates, predict_rates, strict=True))
        ratio = rate / predict_rate
        print(f"  ratio endpoint / tune predict: {ratio:.2f} (target >= 0.8; per round: {ratios})")
        if case == "quickstart" and args.load:
            seconds, _took, errors = _drive(port, bodies, args.clients, args.load)
            rss_after = _rss_kib(server.pid)
            growth = (rss_after - rss_before) / rss_before
            print(
                f"  load: {args.load} requests in {seconds:.1f} s ({args.load / seconds:,.0f}/s), "
                f"{errors} errors (target 0); server RSS {rss_before / 1024:.1f} MiB after the "
                f"warm-up -> {rss_after / 1024:.1f} MiB after the load run, growth "
                f"{growth:+.1%} (target < 5%)"
            )
        return ratio
    finally:
        _stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--case", action="append", choices=sorted(CASES), help="model(s) (default: both)"
    )
    parser.add_argument("--model", type=Path, default=None, help="the case's model.tar.gz")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5, help="alternating measurements")
    parser.add_argument("--requests", type=int, default=800, help="quickstart requests per round")
    parser.add_argument(
        "--requests-resnet50", type=int, default=96, help="resnet50 requests per round"
    )
    parser.add_argument("--load", type=int, default=5000, help="bounded load run (quickstart)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (both sides)")
    parser.add_argument("--workers", type=int, default=1, help="tune serve --workers")
    args = parser.parse_args()
    cases = args.case or list(CASES)
    if args.model and len(cases) != 1:
        parser.error("--model needs one --case")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}; {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        for case in cases:
            model = args.model or _train_model(case, Path(tmp))
            run_case(case, model, args, Path(tmp))


if __name__ == "__main__":
    main()
