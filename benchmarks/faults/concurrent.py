"""Two studies at once on one sqlite MLflow store, and one study against a real `mlflow server`.

Two `tune run` processes, each with 2 trials in parallel, record into the same default store
(`studies/mlflow.db`). Every run and every per-epoch metric the study folders say was trained is
then looked up in MLflow: runs and metric points expected vs found, and whether a
`database is locked` (or any traceback) reached the user's terminal.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from benchmarks.faults.common import TUNE, study_runs, study_space

# what the trainer reports every epoch; each must reach MLflow once per epoch trained
EPOCH_METRICS = ("validation:accuracy", "validation:loss", "train:accuracy", "train:loss")


def _space(name: str, tracking: str, seed: int) -> str:
    return study_space(
        name,
        epochs=3,
        seed=seed,
        body=f"""\
search:
  learning_rate: {{type: continuous, low: 1.0e-3, high: 0.3, scaling: log}}
  optimizer: {{type: categorical, values: [sgd, adam]}}
sampler: {{name: random}}
pruner: {{name: asha, grace_period: 1, reduction_factor: 2}}
limits: {{max_trials: 6, max_parallel: 2}}
tracking: {{{tracking}}}
""",
    )


def _count(work: Path, name: str, uri: str) -> dict[str, int]:
    import mlflow

    from tuner.study import load_trials

    trials = load_trials(work / "studies" / name, "validation:accuracy", "max")
    client = mlflow.MlflowClient(uri)
    _, _, runs = study_runs(uri, name)
    by_trial = {r.data.tags["ray.trial_id"]: r for r in runs if "ray.trial_id" in r.data.tags}
    expected = found = 0
    for trial in trials:
        epochs = {int(h["epoch"]) for h in trial.history}
        expected += len(epochs) * len(EPOCH_METRICS)
        run = by_trial.get(trial.trial_id)
        if run is None:
            continue
        for key in EPOCH_METRICS:
            steps = {m.step for m in client.get_metric_history(run.info.run_id, key)}
            found += len(steps & epochs)
    return {
        "trials": len(trials),
        "runs expected": len(trials) + 1,
        "runs found": len(runs),
        "metric points expected": expected,
        "metric points found": found,
    }


def _problems(text: str) -> int:
    return sum(text.count(s) for s in ("database is locked", "Traceback", "OperationalError"))


def two_studies_one_store(work: Path) -> dict[str, Any]:
    """Two studies at once, both recording into `work/studies/mlflow.db`."""
    work.mkdir(parents=True, exist_ok=True)
    procs = []
    for i, name in enumerate(("left", "right")):
        path = work / f"{name}.yaml"
        path.write_text(_space(name, "enabled: true", seed=i))
        log = (work / f"{name}.log").open("w")
        procs.append(
            (
                name,
                log,
                subprocess.Popen(
                    [TUNE, "run", str(path)], cwd=work, stdout=log, stderr=subprocess.STDOUT
                ),
            )
        )
    codes = {}
    for name, log, proc in procs:
        codes[name] = proc.wait(timeout=3600)
        log.close()
    uri = f"sqlite:///{work / 'studies' / 'mlflow.db'}"
    out: dict[str, Any] = {}
    for name, _, _ in procs:
        counts = _count(work, name, uri)
        out.update({f"{name}: {k}": v for k, v in counts.items()})
        out[f"{name}: exit status"] = codes[name]
        out[f"{name}: 'database is locked' or tracebacks shown"] = _problems(
            (work / f"{name}.log").read_text()
        )
    return out


def one_study_on_a_server(work: Path) -> dict[str, Any]:
    """One study recording into a real `mlflow server` on 127.0.0.1."""
    from tuner.tracking.server import (
        free_port,
        start_mlflow_server,
        stop_server,
        wait_until_healthy,
    )

    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = start_mlflow_server(
        f"sqlite:///{work / 'server.db'}",
        port=port,
        artifacts_destination=work / "artifacts",
        log_file=work / "server.log",
    )
    try:
        uri = f"http://127.0.0.1:{port}"
        wait_until_healthy(uri, server)
        path = work / "served.yaml"
        path.write_text(_space("served", f"enabled: true, tracking_uri: '{uri}'", seed=2))
        run = subprocess.run(
            [TUNE, "run", str(path)], cwd=work, capture_output=True, text=True, timeout=3600
        )
        (work / "served.log").write_text(run.stdout + run.stderr)
        counts = _count(work, "served", uri)
    finally:
        stop_server(server)
    return {
        **{f"served: {k}": v for k, v in counts.items()},
        "served: exit status": run.returncode,
        "served: tracebacks shown": _problems(run.stdout + run.stderr),
    }
