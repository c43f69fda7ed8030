"""Search efficiency on a recorded learning-curve table: hundreds of simulated studies per method.

    .venv/bin/python -m benchmarks.bench_search                       # the quickstart table
    .venv/bin/python -m benchmarks.bench_search --studies 50 --budget 300
    .venv/bin/python -m benchmarks.bench_search --settings 100        # also try other settings
    .venv/bin/python -m benchmarks.bench_search --max-trials 12 --budget 108  # quickstart's size

Each method is a sampler (random, TPE with the space's options, QMC) with or without ASHA (the
space's grace period and reduction factor), replayed by `benchmarks.blackbox.simulate` until
`--budget` epochs have been trained, with the space's `max_parallel` workers. A study is scored by
the configuration it would pick (its best finished trial) at its seed-averaged final accuracy in the
table, so training luck does not decide the comparison. Printed:

- epochs until the chosen configuration is in the table's top 10%, 5% and 1%: median over studies
  with a 95% bootstrap interval, and the ratio of medians over random search's (interval too);
- regret (table best minus chosen) at 1/4, 1/2 and the whole budget;
- the targets: TPE+ASHA at the top-5% level needs <= 1/3 of random's epochs (interval below 1/2),
  and its mean best-so-far is at or above random's at every budget.

The plot (`--plot`, PNG) draws the mean best-so-far against cumulative epochs with 95% bands.
How to record a table for another space: docs/search-benchmark.md.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.blackbox.simulate import Method, Table, Trace, simulate

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "search_spaces" / "quickstart.yaml"
TABLE = ROOT / "benchmarks" / "blackbox" / "tables" / "quickstart.csv"
LEVELS = (0.10, 0.05, 0.01)
__all__ = ["methods_for", "report", "report_settings", "run_studies", "setting_variants"]
_state: dict[str, Any] = {}


def methods_for(space: Any) -> list[Method]:
    """The compared methods, with the space's own sampler options and ASHA settings."""
    asha = (space.pruner.grace_period, space.pruner.reduction_factor)
    tpe = dict(space.sampler.options) if space.sampler.name == "tpe" else {}
    return [
        Method("random", "random"),
        Method("random+ASHA", "random", asha=asha),
        Method("TPE", "tpe", tpe),
        Method("TPE+ASHA", "tpe", tpe, asha=asha),
        Method("QMC+ASHA", "qmc", {"qmc_type": "sobol"}, asha=asha),
    ]


def setting_variants(space: Any) -> list[Method]:
    """TPE+ASHA as the space sets it, and with one setting changed at a time."""
    grace, factor = space.pruner.grace_period, space.pruner.reduction_factor
    options = dict(space.sampler.options) if space.sampler.name == "tpe" else {}
    startup = options.get("n_startup_trials", 10)
    base = Method(
        f"as set (startup {startup}, grace {grace}, rf {factor:g})",
        "tpe",
        options,
        asha=(grace, factor),
    )
    variants = [base]
    for n in (5, 10, 20):
        if n != startup:
            variants.append(
                Method(
                    f"n_startup_trials {n}",
                    "tpe",
                    {**options, "n_startup_trials": n},
                    asha=(grace, factor),
                )
            )
    variants.append(
        Method(
            "independent TPE",
            "tpe",
            {**options, "multivariate": False, "group": False},
            asha=(grace, factor),
        )
    )
    for g, f in ((1, 2), (1, 3), (1, 4), (2, 3), (3, 3)):
        if (g, f) != (grace, factor):
            variants.append(Method(f"ASHA grace {g}, rf {f}", "tpe", options, asha=(g, f)))
    return variants


def report_settings(table: Table, results: dict[str, list[Trace]], budget: int) -> str:
    """One line per setting: epochs to the top 5% (median [CI]) and mean regret; the best name."""
    rng = np.random.default_rng(1)
    floor = table.worst
    marks = np.array([budget // 2, budget])
    level = table.level(0.05)
    print(
        f"\nsettings of TPE+ASHA ({len(next(iter(results.values())))} studies each): "
        "epochs to the top 5% (median [95% CI]), mean regret at 1/2 and the whole budget"
    )
    scored = []
    for name, traces in results.items():
        needed = np.array([t.epochs_to(level, table.sign) for t in traces])
        med, lo, hi = _median_ci(needed, rng)
        regret = table.best - np.stack([t.best_at(marks, floor) for t in traces]).mean(axis=0)
        scored.append((med, regret[0], name))
        print(
            f"  {name:<40} {_fmt(med):>5} [{_fmt(lo)}-{_fmt(hi)}]   "
            f"{regret[0]:.4f}  {regret[1]:.4f}"
        )
    best = min(scored)[2]
    print(f"best setting: {best}")
    return best


def _init(space_path: str, table_path: str) -> None:
    import optuna

    from tuner.space import load_space

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = load_space(space_path)
    _state.update(space=space, table=Table.load(table_path, space))


def _run(task: tuple[Method, int, int, int, int | None]) -> Trace:
    method, seed, budget, parallel, max_trials = task
    return simulate(
        _state["space"],
        _state["table"],
        method,
        budget=budget,
        max_parallel=parallel,
        seed=seed,
        max_trials=max_trials,
    )


def run_studies(
    space_path: Path,
    table_path: Path,
    methods: Sequence[Method],
    *,
    studies: int,
    budget: int,
    parallel: int,
    jobs: int,
    max_trials: int | None = None,
) -> dict[str, list[Trace]]:
    """`studies` simulated studies of each method (study seeds 0..studies-1), on `jobs` cores;
    a study ends at `budget` epochs or after `max_trials` trials."""
    tasks = [(m, s, budget, parallel, max_trials) for m in methods for s in range(studies)]
    if jobs <= 1:
        _init(str(space_path), str(table_path))
        traces = [_run(t) for t in tasks]
    else:
        with ProcessPoolExecutor(
            jobs,
            mp_context=get_context("spawn"),
            initializer=_init,
            initargs=(str(space_path), str(table_path)),
        ) as pool:
            traces = list(pool.map(_run, tasks, chunksize=8))
    out: dict[str, list[Trace]] = {m.name: [] for m in methods}
    for (method, *_), trace in zip(tasks, traces, strict=True):
        out[method.name].append(trace)
    return out


def _median_ci(values: np.ndarray, rng: np.random.Generator, n: int = 2000) -> tuple[float, ...]:
    samples = rng.choice(values, size=(n, len(values)), replace=True)
    medians = np.median(samples, axis=1)
    # inverted_cdf picks observed values: no interpolation between a finite count and "never"
    return float(np.median(values)), *np.percentile(medians, [2.5, 97.5], method="inverted_cdf")


def _ratio_ci(
    ours: np.ndarray, base: np.ndarray, rng: np.random.Generator, n: int = 2000
) -> tuple[float, ...]:
    a = np.median(rng.choice(ours, size=(n, len(ours))), axis=1)
    b = np.median(rng.choice(base, size=(n, len(base))), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = a / b  # never / never is nan: left out of the interval
        point = float(np.median(ours) / np.median(base))
    if np.isnan(ratios).all():
        return point, math.nan, math.nan
    return point, *np.nanpercentile(ratios, [2.5, 97.5], method="inverted_cdf")


def _mean_ci(matrix: np.ndarray, rng: np.random.Generator, n: int = 1000) -> tuple[np.ndarray, ...]:
    idx = rng.integers(0, len(matrix), size=(n, len(matrix)))
    means = matrix[idx].mean(axis=1)
    return matrix.mean(axis=0), *np.percentile(means, [2.5, 97.5], axis=0)


def _fmt(x: float) -> str:
    return "never" if not math.isfinite(x) else f"{x:.0f}"


def report(
    table: Table, results: dict[str, list[Trace]], budget: int, plot: Path | None
) -> list[str]:
    """The printed comparison (and the plot); returns the lines of the target checks."""
    rng = np.random.default_rng(0)
    floor = table.worst
    budgets = np.arange(1, budget + 1)
    curves = {
        name: np.stack([t.best_at(budgets, floor) for t in traces])
        for name, traces in results.items()
    }
    names = list(results)
    studies = len(results[names[0]])
    print(
        f"table: {len(table.configs)} configurations x >= {table.seeds} seeds x {table.epochs} "
        f"epochs; best {table.best:.4f}; levels "
        + ", ".join(f"top {top:.0%} >= {table.level(top):.4f}" for top in LEVELS)
    )
    print(f"{studies} simulated studies per method, budget {budget} epochs\n")
    print("epochs until the chosen configuration is in the table's top k (median [95% CI]),")
    print("and the ratio of medians over random search's:")
    header = f"{'method':<14}" + "".join(f"{f'top {top:.0%}':>36}" for top in LEVELS)
    print(header)
    needed = {
        name: {
            top: np.array([t.epochs_to(table.level(top), table.sign) for t in traces])
            for top in LEVELS
        }
        for name, traces in results.items()
    }
    ratios: dict[str, dict[float, tuple[float, ...]]] = {}
    for name in names:
        cells = []
        ratios[name] = {}
        for top in LEVELS:
            med, lo, hi = _median_ci(needed[name][top], rng)
            r = _ratio_ci(needed[name][top], needed["random"][top], rng)
            ratios[name][top] = r
            cells.append(
                f"{_fmt(med):>5} [{_fmt(lo)}-{_fmt(hi)}] x{r[0]:.2f} [{r[1]:.2f}-{r[2]:.2f}]"
            )
        print(f"{name:<14}" + "".join(f"{c:>36}" for c in cells))
    print("\nregret (table best - chosen), mean [95% CI]:")
    marks = [budget // 4, budget // 2, budget]
    print(f"{'method':<14}" + "".join(f"{f'{b} epochs':>26}" for b in marks))
    for name in names:
        mean, lo, hi = _mean_ci(table.best - curves[name], rng)
        print(
            f"{name:<14}"
            + "".join(f"{mean[b - 1]:>10.4f} [{lo[b - 1]:.4f}-{hi[b - 1]:.4f}]" for b in marks)
        )
    checks = []
    if "TPE+ASHA" in ratios and "random" in ratios:
        r, lo, hi = ratios["TPE+ASHA"][0.05]
        ok = r <= 1 / 3 and hi < 0.5
        checks.append(
            f"target top-5% epochs TPE+ASHA/random <= 1/3 (CI below 1/2): {r:.2f} "
            f"[{lo:.2f}-{hi:.2f}] {'PASS' if ok else 'FAIL'}"
        )
        diff = curves["TPE+ASHA"].mean(axis=0) - curves["random"].mean(axis=0)
        below = budgets[diff < 0]
        checks.append(
            "target TPE+ASHA mean best-so-far >= random at every budget: "
            + (
                "PASS"
                if len(below) == 0
                else f"FAIL at {len(below)} budgets ({below[0]}-{below[-1]} epochs, "
                f"worst {diff.min():+.4f})"
            )
        )
    print()
    for line in checks:
        print(line)
    if plot is not None:
        _plot(curves, budgets, table, plot, rng)
        print(f"plot: {plot}")
    return checks


def _plot(
    curves: dict[str, np.ndarray],
    budgets: np.ndarray,
    table: Table,
    path: Path,
    rng: np.random.Generator,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for name, matrix in curves.items():
        mean, lo, hi = _mean_ci(matrix, rng)
        (line,) = ax.plot(budgets, mean, label=name, lw=1.6)
        ax.fill_between(budgets, lo, hi, color=line.get_color(), alpha=0.18, lw=0)
    for top in LEVELS:
        ax.axhline(table.level(top), color="grey", lw=0.7, ls=":")
        ax.annotate(
            f"top {top:.0%}",
            (budgets[-1], table.level(top)),
            fontsize=7,
            ha="right",
            va="bottom",
            color="grey",
        )
    low = float(np.percentile(np.concatenate([m[:, -1] for m in curves.values()]), 1))
    ax.set_ylim(max(low - 0.05, float(table.quality.min())), table.best + 0.01)
    ax.set_xlabel("cumulative epochs trained (all trials)")
    ax.set_ylabel("seed-averaged accuracy of the chosen configuration")
    ax.set_title(
        f"{len(next(iter(curves.values())))} simulated studies per method, mean and 95% CI"
    )
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    from trainer.errors import UserError
    from tuner.space import load_space

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", type=Path, default=SPACE)
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--studies", type=int, default=200, help="simulated studies per method")
    parser.add_argument("--budget", type=int, default=None, help="epochs (default 50 full trials)")
    parser.add_argument("--parallel", type=int, default=None, help="workers (default the space's)")
    parser.add_argument(
        "--max-trials",
        type=int,
        default=None,
        help="a study also ends after this many trials (e.g. the space's limits.max_trials)",
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "results" / "search.png")
    parser.add_argument("--methods", default=None, help="comma-separated names to run")
    parser.add_argument(
        "--settings",
        type=int,
        default=0,
        metavar="N",
        help="also replay TPE+ASHA with one setting changed at a time, N studies each",
    )
    args = parser.parse_args(argv)
    if not args.table.is_file():
        print(
            f"error: no table at {args.table}; record one with "
            f"`python -m benchmarks.blackbox.record {args.space}`",
            file=sys.stderr,
        )
        return 2
    try:
        space = load_space(args.space)
        table = Table.load(args.table, space)
    except (UserError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    budget = args.budget or 50 * table.epochs
    parallel = args.parallel or space.limits.max_parallel
    methods = methods_for(space)
    if args.methods:
        wanted = set(args.methods.split(","))
        methods = [m for m in methods if m.name in wanted or m.name == "random"]
    start = time.perf_counter()
    results = run_studies(
        args.space,
        args.table,
        methods,
        studies=args.studies,
        budget=budget,
        parallel=parallel,
        jobs=args.jobs,
        max_trials=args.max_trials,
    )
    print(
        f"simulated {args.studies * len(methods)} studies in {time.perf_counter() - start:.0f} s "
        f"({parallel} workers each)"
    )
    report(table, results, budget, args.plot)
    if args.settings:
        variants = setting_variants(space)
        swept = run_studies(
            args.space,
            args.table,
            variants,
            studies=args.settings,
            budget=budget,
            parallel=parallel,
            jobs=args.jobs,
            max_trials=args.max_trials,
        )
        report_settings(table, swept, budget)
    return 0


if __name__ == "__main__":
    sys.exit(main())
