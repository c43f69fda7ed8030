"""The tuner's two measured claims, in one run.

1. Orchestration overhead per trial: a study of small real trials run one at a time; overhead =
   (study wall time - sum of the trials' time inside `fit`) / trials, in seconds and as a ratio to
   the mean trial time. Target: <= 0.5 s per trial.
2. Search efficiency on the quickstart space: TPE + ASHA against random search without pruning,
   several seeds; for each seed, the epochs each needs (trials in start order, all of a trial's
   epochs counted) until a trial reaches the best validation accuracy both reach. Target: TPE + ASHA
   needs <= 1/3 of the epochs random search needs.

    .venv/bin/python -m benchmarks.bench_tuner                  # both parts, 3 seeds
    .venv/bin/python -m benchmarks.bench_tuner --part overhead
    .venv/bin/python -m benchmarks.bench_tuner --seeds 2 --trials 12
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "search_spaces" / "quickstart.yaml"


def _space(mapping: dict[str, Any], base_dir: Path) -> Any:
    from tuner.space import space_from_mapping

    return space_from_mapping(mapping, text=yaml.safe_dump(mapping), source=None, base_dir=base_dir)


def _quickstart(study_dir: Path, name: str, **changes: Any) -> dict[str, Any]:
    mapping = copy.deepcopy(yaml.safe_load(QUICKSTART.read_text()))
    mapping["study"] = {"name": name, "directory": str(study_dir), "seed": changes.pop("seed", 0)}
    mapping["data"]["path"] = str((QUICKSTART.parent / mapping["data"]["path"]).resolve())
    mapping["tracking"] = {"enabled": False}
    for section, values in changes.items():
        old = mapping.get(section, {})
        if section == "sampler" and values.get("name") != old.get("name"):
            old = {}  # another sampler: the quickstart's TPE options do not apply
        mapping[section] = {**old, **values}
    return mapping


def _trial_rows(study_dir: Path) -> list[dict[str, Any]]:
    """Each trial: first-result time, epochs run, best validation accuracy, fit seconds."""
    rows = []
    for trial in study_dir.glob("trial_*"):
        results = [
            json.loads(line)
            for line in (trial / "result.json").read_text().splitlines()
            if line.strip()
        ]
        results = [r for r in results if "epoch" in r]
        if not results:
            continue
        outcome = trial / "outcome.json"
        rows.append(
            {
                "start": min(r["timestamp"] - r.get("time_total_s", 0) for r in results),
                "epochs": len({r["epoch"] for r in results}),
                "best": max(r["validation:accuracy"] for r in results),
                "epoch_seconds": sum(r["epoch_seconds"] for r in results),
                "fit_seconds": json.loads(outcome.read_text())["fit_seconds"]
                if outcome.is_file()
                else None,
            }
        )
    return sorted(rows, key=lambda r: r["start"])


def _overhead_study(trials: int) -> tuple[float, list[float], float]:
    """One study of `trials` small trials one at a time: (wall s, each fit's s, epochs' s)."""
    from tuner.study import run_study

    with tempfile.TemporaryDirectory() as tmp:
        mapping = _quickstart(
            Path(tmp),
            "overhead",
            seed=0,
            sampler={"name": "random"},
            pruner={"name": "none"},
            limits={"max_trials": trials, "max_parallel": 1},
        )
        mapping["data"]["path"] = str(ROOT / "tests" / "assets" / "recordio" / "cifar10")
        mapping["fixed"].update(num_training_samples=200, epochs=2)
        mapping["search"]["mini_batch_size"] = {"type": "categorical", "values": [64]}
        space = _space(mapping, ROOT)
        start = time.perf_counter()
        run_study(space, log=lambda line: None)
        wall = time.perf_counter() - start
        rows = _trial_rows(space.study_dir)
    fit = [r["fit_seconds"] for r in rows if r["fit_seconds"] is not None]
    return wall, fit, sum(r["epoch_seconds"] for r in rows)


def overhead(trials: int) -> None:
    """Part 1: seconds of orchestration per trial beyond the time spent inside `fit`.

    Printed twice: over one study of `trials` trials (the study's fixed start and end costs
    spread over its trials), and per added trial, from a study of twice as many (the marginal
    cost of one more trial, which is what a long study pays)."""
    runs = {n: _overhead_study(n) for n in (trials, 2 * trials)}
    for wall, fit, epochs in runs.values():
        per_trial = (wall - sum(fit)) / len(fit)
        print(
            f"overhead: {len(fit)} trials one at a time, study wall {wall:.1f} s, sum of fit "
            f"times {sum(fit):.1f} s (of which epochs {epochs:.1f} s): {per_trial:.2f} s per "
            f"trial = {per_trial / statistics.mean(fit):.2f} x the mean trial time "
            f"({statistics.mean(fit):.1f} s)"
        )
    (wall_a, fit_a, _), (wall_b, fit_b, _) = runs.values()
    added = len(fit_b) - len(fit_a)
    marginal = ((wall_b - sum(fit_b)) - (wall_a - sum(fit_a))) / added
    fixed = (wall_a - sum(fit_a)) - marginal * len(fit_a)
    print(
        f"overhead: {marginal:.2f} s per added trial = "
        f"{marginal / statistics.mean(fit_b):.2f} x the mean trial time; fixed per study "
        f"{fixed:.1f} s   [target <= 0.5 s per trial]"
    )


def _epochs_to_reach(rows: list[dict[str, Any]], target: float) -> int | None:
    total = 0
    for row in rows:
        total += row["epochs"]
        if row["best"] >= target - 1e-9:
            return total
    return None


def efficiency(seeds: int, trials: int) -> None:
    """Part 2: epochs TPE + ASHA vs random without pruning need to reach the same accuracy."""
    from tuner.study import run_study

    ratios = []
    for seed in range(seeds):
        with tempfile.TemporaryDirectory() as tmp:
            runs = {}
            for label, sampler, pruner in (
                ("tpe+asha", "tpe", "asha"),
                ("random", "random", "none"),
            ):
                mapping = _quickstart(
                    Path(tmp),
                    label.replace("+", "-"),
                    seed=seed,
                    sampler={"name": sampler},
                    pruner={"name": pruner},
                    limits={"max_trials": trials, "max_parallel": 2},
                )
                space = _space(mapping, ROOT)
                start = time.perf_counter()
                run_study(space, log=lambda line: None)
                rows = _trial_rows(space.study_dir)
                runs[label] = rows
                print(
                    f"seed {seed} {label:9s}: {len(rows)} trials, "
                    f"{sum(r['epochs'] for r in rows)} epochs, best "
                    f"{max(r['best'] for r in rows):.4f}, {time.perf_counter() - start:.0f} s"
                )
        target = min(max(r["best"] for r in rows) for rows in runs.values())
        need = {label: _epochs_to_reach(rows, target) for label, rows in runs.items()}
        ratio = need["tpe+asha"] / need["random"]  # type: ignore[operator]
        ratios.append(ratio)
        print(
            f"seed {seed}: to reach validation:accuracy {target:.4f}: tpe+asha "
            f"{need['tpe+asha']} epochs, random {need['random']} epochs, ratio {ratio:.2f}"
        )
    print(
        f"efficiency: mean epochs ratio tpe+asha / random over {seeds} seeds = "
        f"{statistics.mean(ratios):.2f} (each: {', '.join(f'{r:.2f}' for r in ratios)})"
        "   [target <= 0.33]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("overhead", "efficiency", "both"), default="both")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=12, help="trials per efficiency study")
    parser.add_argument("--overhead-trials", type=int, default=8)
    args = parser.parse_args()
    import logging

    import ray

    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
    )
    if args.part in ("overhead", "both"):
        overhead(args.overhead_trials)
    if args.part in ("efficiency", "both"):
        efficiency(args.seeds, args.trials)


if __name__ == "__main__":
    main()
