"""MLflow tracking overhead: a study's wall time with tracking over without (target <= 1.05).

The same study (quickstart data: 2,000 CIFAR-10 images; same seed, space and trials) runs with
`tracking: {enabled: false}` and with tracking (sqlite, or a real `mlflow server` with `--server`),
alternating which goes first over `--repeats` rounds, in one Ray session; the medians are compared.
Also printed: the seconds `finish_study` spends at the end (plots, leaderboard, logging and
registering the best model: a fixed cost per study, mostly importing torch in the driver), the
driver time spent in the Ray callback (what tracking takes from the trials' loop: the MLflow calls
themselves run on a background thread), and the ratio without the end-of-study cost.

    python -m benchmarks.bench_tracking [--trials 6] [--epochs 3] [--repeats 1] [--data DIR]
                                        [--server]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _space(
    folder: Path, name: str, data: Path, trials: int, epochs: int, tracking_uri: str | None
) -> Path:
    tracking = (
        f"{{enabled: true, tracking_uri: '{tracking_uri}', registered_model_name: bench-{name}}}"
        if tracking_uri
        else "{enabled: false}"
    )
    text = f"""\
study: {{name: {name}, directory: studies, seed: 0}}
data: {{path: {data}}}
tracking: {tracking}
fixed:
  num_classes: 10
  num_training_samples: {_count(data)}
  num_layers: 20
  image_shape: 3,32,32
  mini_batch_size: 64
  epochs: {epochs}
search:
  learning_rate: {{type: continuous, low: 1.0e-3, high: 0.3, scaling: log}}
  optimizer: {{type: categorical, values: [sgd, adam]}}
sampler: {{name: tpe, options: {{n_startup_trials: 3}}}}
pruner: {{name: none}}
limits: {{max_trials: {trials}, max_parallel: 2}}
resources: {{cpu: 1}}
"""
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def _count(data: Path) -> int:
    """Training images in `data` (its train .lst or .idx: one line per image)."""
    index = next(data.glob("*train*.lst"), None) or next((data / "train").glob("*.idx"), None)
    if index is None:
        index = next((data / "train_lst").glob("*.lst"))
    return sum(1 for line in index.read_text().splitlines() if line.strip())


class _Timed:
    """Adds up the seconds spent in one `StudyTracker` method (and counts the calls)."""

    def __init__(self, name: str) -> None:
        from tuner.tracking import StudyTracker

        self.seconds, self.calls = 0.0, 0
        original = getattr(StudyTracker, name)

        def timed(tracker: Any, *args: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(tracker, *args)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1

        setattr(StudyTracker, name, timed)

    def reset(self) -> None:
        self.seconds, self.calls = 0.0, 0


@contextlib.contextmanager
def _store(folder: Path, server: bool) -> Iterator[str]:
    """A sqlite store in `folder`, or a real `mlflow server` on a free 127.0.0.1 port."""
    if not server:
        yield f"sqlite:///{folder / 'mlflow.db'}"
        return
    from tuner.tracking.server import (
        free_port,
        start_mlflow_server,
        stop_server,
        wait_until_healthy,
    )

    port = free_port()
    process = start_mlflow_server(
        f"sqlite:///{folder / 'server.db'}", port=port, artifacts_destination=folder / "artifacts"
    )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(process)


def _run(path: Path) -> float:
    from tuner.space import load_space
    from tuner.study import run_study

    start = time.perf_counter()
    run_study(load_space(path), log=lambda _line: None)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "quickstart")
    parser.add_argument(
        "--server", action="store_true", help="track to a real `mlflow server` (else sqlite)"
    )
    args = parser.parse_args()
    args.data = args.data.resolve()  # the YAML is written elsewhere: relative paths would move

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    finish_timer, event_timer = _Timed("finish_study"), _Timed("handle_event")
    walls: dict[bool, list[float]] = {False: [], True: []}
    finish: list[float] = []
    events: list[tuple[float, int]] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp,
        _store(Path(tmp), args.server) as uri,
    ):
        for repeat in range(args.repeats):
            order = (False, True) if repeat % 2 == 0 else (True, False)
            for tracked in order:
                name = f"{'on' if tracked else 'off'}{repeat}"
                path = _space(
                    Path(tmp), name, args.data, args.trials, args.epochs, uri if tracked else None
                )
                finish_timer.reset()
                event_timer.reset()
                walls[tracked].append(_run(path))
                if tracked:
                    finish.append(finish_timer.seconds)
                    events.append((event_timer.seconds, event_timer.calls))
                print(
                    f"round {repeat + 1}: tracking {'on ' if tracked else 'off'} "
                    f"{walls[tracked][-1]:.1f} s",
                    flush=True,
                )
    ray.shutdown()
    off, on = statistics.median(walls[False]), statistics.median(walls[True])
    end = statistics.median(finish)
    print(
        f"study: {args.trials} trials x {args.epochs} epochs, 2 at a time, {args.repeats} round(s)"
    )
    store = "a real mlflow server" if args.server else "sqlite"
    print(f"wall time without tracking: {off:.1f} s; with tracking ({store}): {on:.1f} s")
    print(f"finish_study (plots, leaderboard, best model logged + registered): {end:.1f} s")
    event_seconds, event_calls = events[len(events) // 2]
    print(
        f"driver time in the tracking callback: {event_seconds * 1000:.1f} ms over "
        f"{event_calls} trial events ({event_seconds / on:.5f} of the study)"
    )
    print(f"tracking overhead ratio (with / without): {on / off:.3f}  (target <= 1.05)")
    print(f"ratio without the end-of-study records: {(on - end) / off:.3f}")


if __name__ == "__main__":
    main()
