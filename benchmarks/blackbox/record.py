"""Record a learning-curve table: a Sobol design of a search space, each configuration trained
with several seeds for the space's full epochs by the trainer exactly as a study's trial trains it.

    .venv/bin/python -m benchmarks.blackbox.record search_spaces/quickstart.yaml
    .venv/bin/python -m benchmarks.blackbox.record SPACE.yaml --configs 128 --seeds 3 --jobs 2

Each run is `trainer.fit` with the space's fixed hyperparameters, the sampled ones, the data of its
`data:` section, torch threads from `resources.cpu` and training seed 0, 1, 2... (a study trains
every trial with `study.seed`, so the table's seed-`s` curves are what a study with `seed: s`
gets for that configuration). Every epoch's validation and train metrics are kept, with its wall
seconds and the CPU seconds of the process that trained it (the simulator's epoch cost: it does not
grow when other work shares the machine).

Finished runs are kept one file each in the work folder (`benchmarks/results/blackbox-NAME/`), and
the table (`benchmarks/blackbox/tables/NAME.csv`, with `NAME.json` saying how it was made) is
rewritten after each one, so a killed recording keeps everything it finished and the same command
continues it. Without the work folder (a fresh clone, a new machine) the command continues from the
committed table itself: its runs are taken back into the work folder when the table says it was
recorded from the same space (its data, fixed and search sections) and design. Each run keeps the
CPU it was trained on, and the table's JSON counts runs per CPU, since epoch seconds are only
comparable within one kind of CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TABLES = Path(__file__).resolve().parent / "tables"
METRICS = ("validation:accuracy", "validation:loss", "train:accuracy", "train:loss")


@dataclass(frozen=True)
class Run:
    """One configuration with one training seed, as the pool worker needs it."""

    config_id: int
    seed: int
    config: dict[str, Any]
    fixed: dict[str, Any]
    data_root: str
    content_type: str
    attribute_names: tuple[str, str]
    label_format: str
    threads: int
    log_path: str

    @property
    def key(self) -> str:
        return f"c{self.config_id:03d}-s{self.seed}"


def train_run(run: Run) -> list[dict[str, float]]:
    """Train `run` as a study's trial would and return one row of metrics per epoch."""
    import torch

    from trainer.data import DataConfig
    from trainer.hyperparameters import parse_hyperparameters
    from trainer.loop import fit

    torch.set_num_threads(run.threads)
    hp = parse_hyperparameters({**run.fixed, **run.config})
    data = DataConfig(
        root=Path(run.data_root),
        content_type=run.content_type,
        attribute_names=run.attribute_names,
        label_format=run.label_format,
    )
    rows: list[dict[str, float]] = []
    clock = [time.process_time()]

    def report(metrics: dict[str, float]) -> None:
        now = time.process_time()
        rows.append(
            {
                "epoch": int(metrics["epoch"]),
                **{m: metrics[m] for m in METRICS},
                "epoch_seconds": metrics["epoch_seconds"],
                "cpu_seconds": now - clock[0],
            }
        )
        clock[0] = now

    with tempfile.TemporaryDirectory() as out, open(run.log_path, "w") as log:
        fit(hp, data, out, report=report, seed=run.seed, log=lambda line: print(line, file=log))
    return rows


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _machine() -> dict[str, Any]:
    import torch

    model, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    return {
        "cpu": model,
        "cpu_flags": [f for f in wanted if f in flags],
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    return head + ("+dirty" if git("status", "--porcelain", "trainer") else "")


def write_table(space: Any, design: list[dict[str, Any]], work: Path, out: Path, meta: dict) -> int:
    """Rebuild the table from the finished runs in `work`; returns how many runs it holds."""
    import pandas as pd

    names = [d.name for d in space.dimensions]
    rows = []
    cpus: dict[str, int] = {}
    runs = sorted((work / "runs").glob("c*-s*.json"))
    for path in runs:
        run = json.loads(path.read_text())
        cpus[run.get("cpu", "unknown")] = cpus.get(run.get("cpu", "unknown"), 0) + 1
        config = design[run["config_id"]]
        for epoch in run["epochs"]:
            rows.append(
                {
                    "config": run["config_id"],
                    "seed": run["seed"],
                    **{n: config.get(n) for n in names},
                    **epoch,
                }
            )
    table = pd.DataFrame(rows).sort_values(["config", "seed", "epoch"])
    _write_atomic(out, table.to_csv(index=False))
    kept = {**meta, "runs": len(runs), "runs_per_cpu": cpus}
    _write_atomic(out.with_suffix(".json"), json.dumps(kept, indent=1))
    return len(runs)


def take_back_from_table(out: Path, identity: dict[str, Any], work: Path) -> int:
    """Write the runs the committed table at `out` holds, and `work` lacks, back into `work`.

    Only a table recorded from the same space and design (its JSON's identity) is taken; its runs
    keep the CPU the table says they were trained on. Returns how many runs were taken back.
    """
    import pandas as pd

    meta_path = out.with_suffix(".json")
    if not (out.is_file() and meta_path.is_file()):
        return 0
    meta = json.loads(meta_path.read_text())
    if any(meta.get(k) != v for k, v in identity.items()):
        return 0
    cpus = meta.get("runs_per_cpu") or {meta.get("machine", {}).get("cpu", "unknown"): 0}
    cpu = next(iter(cpus)) if len(cpus) == 1 else "unknown"
    table = pd.read_csv(out)
    columns = ["epoch", *METRICS, "epoch_seconds", "cpu_seconds"]
    taken = 0
    for (config_id, seed), rows in table.groupby(["config", "seed"]):
        path = work / "runs" / f"c{int(config_id):03d}-s{int(seed)}.json"
        if path.is_file():
            continue
        epochs = rows.sort_values("epoch")[columns].to_dict("records")
        for epoch in epochs:
            epoch["epoch"] = int(epoch["epoch"])
        run = {"config_id": int(config_id), "seed": int(seed), "cpu": cpu, "epochs": epochs}
        _write_atomic(path, json.dumps(run))
        taken += 1
    return taken


def recorded_sha256(space_text: str) -> str:
    """SHA-256 of what a recording depends on: the space's `data`, `fixed` and `search` sections.

    Its sampler, pruner, limits and comments may change without making the table another one.
    """
    raw = yaml.safe_load(space_text) or {}
    recorded = {k: raw.get(k) for k in ("data", "fixed", "search")}
    return hashlib.sha256(json.dumps(recorded, sort_keys=True).encode()).hexdigest()


def _describe(config: dict[str, Any]) -> str:
    def short(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    return " ".join(f"{k}={short(v)}" for k, v in config.items())


def main(argv: list[str] | None = None) -> int:
    from benchmarks.blackbox.design import sobol_design
    from trainer.errors import UserError
    from tuner.space import load_space

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("space", type=Path, help="search-space YAML (its data, fixed and search)")
    parser.add_argument("--configs", type=int, default=64, help="configurations (Sobol points)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per configuration")
    parser.add_argument("--jobs", type=int, default=None, help="runs at once (default: cores)")
    parser.add_argument("--design-seed", type=int, default=0, help="scrambles the Sobol points")
    parser.add_argument("--out", type=Path, default=None, help="table (tables/NAME.csv)")
    parser.add_argument("--work", type=Path, default=None, help="finished runs (resumable)")
    args = parser.parse_args(argv)

    try:
        space = load_space(args.space)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = args.out or TABLES / f"{space.name}.csv"
    work = args.work or ROOT / "benchmarks" / "results" / f"blackbox-{space.name}"
    threads = max(1, int(space.resources.cpu))
    jobs = args.jobs or max(1, (os.cpu_count() or 1) // threads)
    design = sobol_design(space.dimensions, space.base, args.configs, seed=args.design_seed)
    identity = {
        "space": str(args.space),
        "recorded_sha256": recorded_sha256(space.text),
        "design": f"scrambled Sobol, seed {args.design_seed}",
        "configs": args.configs,
        "seeds": args.seeds,
    }
    (work / "runs").mkdir(parents=True, exist_ok=True)
    (work / "logs").mkdir(exist_ok=True)
    identity_file = work / "design.json"
    if identity_file.is_file():
        kept = json.loads(identity_file.read_text())
        if kept != {**identity, "design_points": design}:
            print(
                f"error: {work} holds runs of another design or space (its design.json differs); "
                "delete that folder or give --work another one",
                file=sys.stderr,
            )
            return 2
    else:
        _write_atomic(identity_file, json.dumps({**identity, "design_points": design}, indent=1))
    taken = take_back_from_table(out, identity, work)
    if taken:
        print(f"{taken} finished runs taken back from {out}")

    meta = {
        **identity,
        "command": "python -m benchmarks.blackbox.record " + " ".join(sys.argv[1:]),
        "commit": _commit(),
        "machine": _machine(),
        "threads_per_run": threads,
        "jobs": jobs,
        "epochs": space.epochs,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    todo = [
        Run(
            config_id=c,
            seed=s,
            config=design[c],
            fixed=dict(space.fixed),
            data_root=space.data.path,
            content_type=space.data.content_type,
            attribute_names=space.data.attribute_names,
            label_format=space.data.label_format,
            threads=threads,
            log_path=str(work / "logs" / f"c{c:03d}-s{s}.log"),
        )
        for s in range(args.seeds)  # seed-major: a partial table covers the whole design first
        for c in range(args.configs)
        if not (work / "runs" / f"c{c:03d}-s{s}.json").is_file()
    ]
    total = args.configs * args.seeds
    done = total - len(todo)
    print(
        f"{space.name}: {args.configs} configurations x {args.seeds} seeds x {space.epochs} epochs "
        f"({done} runs already finished in {work}), {jobs} at a time with {threads} thread(s) each"
    )
    started, finished_now = time.monotonic(), 0
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        pending: dict[Future[list[dict[str, float]]], Run] = {}
        queue = list(todo)
        while queue or pending:
            while queue and len(pending) < jobs:
                run = queue.pop(0)
                pending[pool.submit(train_run, run)] = run
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                run = pending.pop(future)
                epochs = future.result()
                result = {**asdict(run), "cpu": meta["machine"]["cpu"], "epochs": epochs}
                _write_atomic(work / "runs" / f"{run.key}.json", json.dumps(result))
                done, finished_now = done + 1, finished_now + 1
                write_table(space, design, work, out, meta)
                per_run = (time.monotonic() - started) / finished_now
                eta = per_run * (total - done)
                print(
                    f"[{done}/{total}] {run.key} {_describe(run.config)}: validation:accuracy "
                    f"{epochs[-1]['validation:accuracy']:.4f} after {len(epochs)} epochs, "
                    f"{sum(e['cpu_seconds'] for e in epochs):.0f} cpu s; "
                    f"about {eta / 60:.0f} min left",
                    flush=True,
                )
    print(f"table: {out} ({done} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
