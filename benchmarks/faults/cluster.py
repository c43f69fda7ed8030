"""A real multi-node Ray cluster on one machine: a study across two worker nodes, one of which is
killed mid-trial, and `tune train --workers 2` across both.

`ray.cluster_utils.Cluster` starts a head node (no CPUs, so no trial runs there) and two worker
nodes of one CPU each, each with its own raylet. The study's folder is on the one file system every
node reads, as NFS would be on a real cluster. `tune run` reaches the cluster through
`RAY_ADDRESS`, as any Ray program does.

While trials run on both nodes, one worker node's raylet is killed with SIGKILL. Ray marks the node
dead, and the study's `limits.max_retries` restarts each of its trials from that trial's last
checkpoint on the surviving node. Printed: trials finished, retried and lost; the nodes each trial
ran on; MLflow child runs per trial; and whether `tune train --workers 2 --address` trained across
both nodes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.faults.common import ASSETS, TUNE, study_runs, study_space

EPOCHS = 8
SPACE = study_space(
    "cluster",
    epochs=EPOCHS,
    body="""\
search:
  learning_rate: {type: continuous, low: 1.0e-3, high: 0.3, scaling: log}
sampler: {name: random}
pruner: {name: none}
limits: {max_trials: 4, max_parallel: 2, max_retries: 3}
tracking: {enabled: true}
""",
)


def _parent(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^PPid:\s+(\d+)", status, re.M)
    return int(match.group(1)) if match else None


def _raylet_pid(node: Any) -> int:
    from ray._private import ray_constants

    return int(node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid)


def _running_on(study_dir: Path, raylets: dict[int, str]) -> dict[str, str]:
    """Trial id -> the node ("node 1", "node 2") whose raylet started its worker process."""
    out = {}
    for result in study_dir.glob("trial_*/result.json"):
        lines = result.read_text().strip().splitlines()
        if not lines:
            continue
        pid = json.loads(lines[-1]).get("pid")
        parent = _parent(int(pid)) if pid else None
        if parent in raylets:
            out[result.parent.name.removeprefix("trial_")] = raylets[parent]
    return out


def cluster_study(work: Path) -> dict[str, Any]:
    """The study on a 3-node cluster with a worker node killed mid-trial, then `tune train`."""
    from ray.cluster_utils import Cluster

    from tuner.study import load_trials

    work.mkdir(parents=True, exist_ok=True)
    (work / "cluster.yaml").write_text(SPACE)
    study_dir = work / "studies" / "cluster"
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}
    )
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes(timeout=300)
    raylets = {_raylet_pid(n): f"node {i + 1}" for i, n in enumerate(nodes)}
    env = {**os.environ, "RAY_ADDRESS": cluster.address}
    seen: dict[str, set[str]] = {}
    killed_node, killed_trials = None, []
    try:
        with (work / "study.log").open("w") as log:
            proc = subprocess.Popen(
                [TUNE, "run", str(work / "cluster.yaml")],
                cwd=work,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + 1800
            while proc.poll() is None and time.monotonic() < deadline:
                placed = _running_on(study_dir, raylets)
                for trial, node in placed.items():
                    seen.setdefault(trial, set()).add(node)
                running = (
                    {
                        t.trial_id: t
                        for t in load_trials(study_dir, "validation:accuracy", "max")
                        if t.status == "running" and t.history
                    }
                    if study_dir.is_dir()
                    else {}
                )
                on_nodes = {placed[t] for t in running if t in placed}
                victims = [
                    t
                    for t in running
                    if placed.get(t) == "node 2" and 1 <= len(running[t].history) <= EPOCHS - 3
                ]
                if killed_node is None and len(on_nodes) == 2 and victims:
                    # both nodes busy, node 2's trial well inside its run: kill node 2's raylet
                    killed_node, killed_trials = "node 2", victims
                    os.kill(_raylet_pid(nodes[1]), signal.SIGKILL)
                time.sleep(0.5)
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        trials = load_trials(study_dir, "validation:accuracy", "max")
        logs = {
            t.trial_id: (study_dir / f"trial_{t.trial_id}" / "train.log").read_text()
            for t in trials
            if (study_dir / f"trial_{t.trial_id}" / "train.log").is_file()
        }
        retried = sum("resuming from" in text for text in logs.values())
        started_over = sum(
            text.count("device: ") > 1 and "resuming from" not in text for text in logs.values()
        )
        children, _, _ = study_runs(f"sqlite:///{work / 'studies' / 'mlflow.db'}", "cluster")
        shown = (work / "study.log").read_text()
        result: dict[str, Any] = {
            "study exit status": proc.returncode,
            "node killed": killed_node or "none (both nodes were never busy at once)",
            "trials on the killed node": len(killed_trials),
            "trials finished": sum(t.status == "finished" for t in trials),
            "trials retried from their last epoch": retried,
            "trials retried from scratch (target 0)": started_over,
            "trials lost (target 0)": sum(t.status != "finished" for t in trials),
            "trials per node": dict(Counter(n for nodes_ in seen.values() for n in nodes_)),
            "trials that ran on both nodes": sum(len(n) == 2 for n in seen.values()),
            "trials without exactly 1 MLflow child run (target 0)": sum(
                children.get(t.trial_id, 0) != 1 for t in trials
            ),
            "retry notices shown": len(re.findall(r"^notice: trial \S+ stopped", shown, re.M)),
            "lines of Ray's cluster messages shown (target 0)": len(
                re.findall(r"^\(raylet\)|Raylet is terminated", shown, re.M)
            ),
            "tracebacks shown (target 0)": shown.count("Traceback"),
        }
        # the surviving node and a replacement: tune train with one worker on each
        if killed_node is not None:
            cluster.remove_node(nodes[1], allow_graceful=False)
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes(timeout=300)
        train = subprocess.run(
            [
                TUNE,
                "train",
                "--data",
                str(ASSETS),
                "--output",
                str(work / "ddp"),
                "--workers",
                "2",
                "--address",
                cluster.address,
                "--hp",
                "num_classes=10",
                "--hp",
                "num_training_samples=300",
                "--hp",
                "num_layers=20",
                "--hp",
                "image_shape=3,32,32",
                "--hp",
                "epochs=2",
                "--hp",
                "kv_store=dist_sync",
            ],  # fmt: skip
            capture_output=True,
            text=True,
            timeout=1800,
        )
        (work / "train.log").write_text(train.stdout + train.stderr)
        result["tune train --workers 2 exit status"] = train.returncode
        result["tune train model written"] = (work / "ddp" / "model.tar.gz").is_file()
        return result
    finally:
        cluster.shutdown()
