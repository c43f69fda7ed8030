"""SIGKILL at seeded random moments, repeated: what a killed `tune run` or `tune train` loses.

The study part starts `tune run SPACE` on a short real study (ResNet-20 on the committed CIFAR-10
sample, ASHA, MLflow tracking into the default `studies/mlflow.db`), kills its whole process group
with SIGKILL at a seeded random moment, and runs the same command again, `--kills` times. A last run
is let finish. Counted against what each kill left on disk:

- finished trials lost: a trial finished before a kill that is not finished, with the same value,
  at the end (target 0);
- trials duplicated: trials beyond `max_trials`, or two trials with the same configuration (0);
- MLflow child runs per trial (exactly 1) and parent runs per study (exactly 1);
- epochs trained again after a resume, per trial that was running at a kill (target <= 1).

The train part does the same to `tune train --checkpoint-dir`: each rerun must continue after the
last finished epoch, no kill may leave a partial `model.tar.gz`, and the final metrics must be those
of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.faults.common import ASSETS, TUNE, study_runs, study_space

EPOCHS = 4
# trials per planned kill: under ASHA (rungs 1, 2, 4) a trial trains about 2 epochs, and a killed
# run trains up to about a dozen before its kill, so the study outlasts every kill
TRIALS_PER_KILL = 8


def kills_space(max_trials: int) -> str:
    """The killed study: `max_trials` trials of up to `EPOCHS` epochs, ASHA, tracking on."""
    return study_space(
        "kills",
        epochs=EPOCHS,
        body=f"""\
search:
  learning_rate: {{type: continuous, low: 1.0e-3, high: 0.3, scaling: log}}
  optimizer: {{type: categorical, values: [sgd, adam]}}
sampler: {{name: tpe, options: {{n_startup_trials: 3}}}}
pruner: {{name: asha, grace_period: 1, reduction_factor: 2}}
limits: {{max_trials: {max_trials}, max_parallel: 2}}
tracking: {{enabled: true}}
""",
    )


_EPOCH_LINE = re.compile(r"^epoch (\d+)/\d+ train:", re.M)


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("w") as sink:
        return subprocess.Popen(
            argv, cwd=log.parent, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def _wait(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    """Whether `proc` ended within `seconds`."""
    try:
        proc.wait(timeout=seconds)
        return True
    except subprocess.TimeoutExpired:
        return False


def _trials(study_dir: Path) -> dict[str, Any]:
    from tuner.study import load_trials

    if not study_dir.is_dir():
        return {}
    return {t.trial_id: t for t in load_trials(study_dir, "validation:accuracy", "max")}


def _epochs_trained(study_dir: Path) -> int:
    return sum(
        len(_EPOCH_LINE.findall(log.read_text())) for log in study_dir.glob("trial_*/train.log")
    )


def study_kills(work: Path, kills: int, seed: int, within: float) -> dict[str, Any]:
    """Kill `tune run` `kills` times, each at a random moment within `within` seconds after that
    run has trained its first epoch (so every run gets somewhere, however slow its start)."""
    work.mkdir(parents=True, exist_ok=True)
    space = work / "kills.yaml"
    max_trials = max(10, TRIALS_PER_KILL * kills)
    space.write_text(kills_space(max_trials))
    study_dir = work / "studies" / "kills"
    rng = random.Random(seed)
    finished: dict[str, float | None] = {}
    running_at_kill: Counter[str] = Counter()
    done_kills, ended_early = 0, False
    for k in range(kills):
        proc = _start([TUNE, "run", str(space)], work / f"run-{k}.log")
        before = _epochs_trained(study_dir)
        deadline = time.monotonic() + 900
        while proc.poll() is None and time.monotonic() < deadline:
            if _epochs_trained(study_dir) > before:
                break
            time.sleep(0.2)
        delay = rng.uniform(0.0, within)
        if proc.poll() is not None or _wait(proc, delay):
            ended_early = True  # the study finished before this kill
            break
        for trial in _trials(study_dir).values():
            if trial.status == "finished":
                finished.setdefault(trial.trial_id, trial.value)
            elif trial.status == "running":
                running_at_kill[trial.trial_id] += 1
        _kill(proc)
        done_kills += 1
        print(
            f"  kill {k + 1}/{kills}, {delay:.1f} s after this run's first epoch: "
            f"{len(finished)} trials finished, {_epochs_trained(study_dir)} epochs trained so far"
        )
    final = subprocess.run(
        [TUNE, "run", str(space)], cwd=work, capture_output=True, text=True, timeout=1800
    )
    (work / "final.log").write_text(final.stdout + final.stderr)
    trials = _trials(study_dir)
    lost = [
        t
        for t, value in finished.items()
        if t not in trials or trials[t].status != "finished" or trials[t].value != value
    ]
    configs = Counter(tuple(sorted(t.config.items())) for t in trials.values())
    duplicated = max(0, len(trials) - max_trials) + sum(n - 1 for n in configs.values() if n > 1)
    retrained = {}
    for trial_id in trials:
        log = study_dir / f"trial_{trial_id}" / "train.log"
        epochs = [int(e) for e in _EPOCH_LINE.findall(log.read_text())] if log.is_file() else []
        retrained[trial_id] = len(epochs) - len(set(epochs))
    worst = max(
        (retrained[t] / n for t, n in running_at_kill.items() if t in retrained), default=0.0
    )
    children, parents, _ = study_runs(f"sqlite:///{work / 'studies' / 'mlflow.db'}", "kills")
    return {
        "kills": done_kills,
        "trials in the study": max_trials,
        "study ended before a kill": ended_early,
        "final run exit status": final.returncode,
        "trials at the end": len(trials),
        "finished at the end": sum(t.status == "finished" for t in trials.values()),
        "pruned at the end": sum(t.status == "pruned" for t in trials.values()),
        "finished trials lost (target 0)": len(lost),
        "trials duplicated (target 0)": duplicated,
        "MLflow parent runs (target 1)": parents,
        "trials without exactly 1 MLflow child run (target 0)": sum(
            children.get(t, 0) != 1 for t in trials
        )
        + sum(1 for t in children if t not in trials),
        "epochs trained again, total": sum(retrained.values()),
        "trials running at a kill": len(running_at_kill),
        "most epochs trained again per trial per kill (target <= 1)": round(worst, 2),
        "tracebacks in the output": sum("Traceback" in p.read_text() for p in work.glob("*.log")),
    }


def train_kills(work: Path, kills: int, seed: int) -> dict[str, Any]:
    """Kill `tune train --checkpoint-dir` mid-epoch `kills` times, then compare the end."""
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    hp = [
        "--hp", "num_classes=10", "--hp", "num_training_samples=300", "--hp", "num_layers=20",
        "--hp", "image_shape=3,32,32", "--hp", "epochs=6", "--hp", "mini_batch_size=32",
    ]  # fmt: skip

    def argv(name: str) -> list[str]:
        return [
            TUNE, "train", "--data", str(ASSETS), "--output", str(work / name),
            "--checkpoint-dir", str(work / f"{name}-checkpoints"), *hp,
        ]  # fmt: skip

    partial, not_continued = 0, 0
    last_epoch = 0
    for k in range(kills):
        log = work / f"train-{k}.log"
        proc = _start(argv("killed"), log)
        # a moment inside the epoch after the next one starts
        target = last_epoch + 1
        while proc.poll() is None and not re.search(
            rf"^epoch {target}/6 train:", log.read_text(), re.M
        ):
            time.sleep(0.05)
        if proc.poll() is not None:
            break
        time.sleep(rng.uniform(0.0, 1.5))
        _kill(proc)
        text = log.read_text()
        resumed = re.search(r"resuming from .* after epoch (\d+)", text)
        if k and (not resumed or int(resumed.group(1)) < last_epoch):
            not_continued += 1
        seen = [int(e) for e in _EPOCH_LINE.findall(text)]
        last_epoch = max(seen, default=last_epoch)
        out = work / "killed"
        partial += sum(1 for p in out.rglob("*") if p.is_file()) if out.is_dir() else 0
        print(f"  train kill {k + 1}/{kills}: after epoch {last_epoch}")
    rerun = subprocess.run(argv("killed"), capture_output=True, text=True, timeout=1800)
    whole = subprocess.run(argv("whole"), capture_output=True, text=True, timeout=1800)
    (work / "rerun.log").write_text(rerun.stdout + rerun.stderr)
    (work / "whole.log").write_text(whole.stdout + whole.stderr)
    strip = re.compile(r" img/s=\d+| time=\S+")
    last = re.compile(r"^epoch 6/6 .*$", re.M)
    a, b = last.search(rerun.stdout), last.search(whole.stdout)
    resumed = strip.sub("", a.group(0)) if a else "(no last epoch line in rerun.log)"
    uninterrupted = strip.sub("", b.group(0)) if b else "(no last epoch line in whole.log)"
    counts: dict[str, Any] = {
        "train kills": kills,
        "rerun exit status": rerun.returncode,
        "reruns that did not continue from the last epoch (target 0)": not_continued,
        "files left in the output after a kill (target 0)": partial,
        "final metrics equal an uninterrupted run's": resumed == uninterrupted,
    }
    if resumed != uninterrupted:
        counts.update({"last epoch, resumed": resumed, "last epoch, uninterrupted": uninterrupted})
    return counts
