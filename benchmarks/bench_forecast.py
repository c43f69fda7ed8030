"""The forecast against the study: `tune run --dry-run`'s predicted wall time, then the study's.

Target: predicted / actual within 0.75 .. 1.25 on 2 cores, for the quickstart and for a converted
SageMaker tuning job that searches mini_batch_size. Each case runs in a temporary folder (its study
and MLflow store), its data is data/quickstart; the actual time runs from `run_study`'s call to
`ray.shutdown()`'s return, which is what the forecast covers (Ray's start and stop included). The
load average is printed before and after: the machine is shared, and both figures move with it.

The forecast is an expectation: which trials ASHA stops depends on the configurations the sampler
draws, so one 12-trial study's epoch count moves by about a third either way (the dry run prints
that range). `--repeats N` runs N studies per case with study seeds 0 .. N-1 and compares the mean
predicted time with the mean actual time, as well as each study on its own.

    .venv/bin/python -m benchmarks.bench_forecast                      # both cases
    .venv/bin/python -m benchmarks.bench_forecast --case quickstart --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "search_spaces" / "quickstart.yaml"
DATA = ROOT / "data" / "quickstart"

# The quickstart as a SageMaker CreateHyperParameterTuningJob request, searching mini_batch_size.
SAGEMAKER_JOB: dict[str, Any] = {
    "HyperParameterTuningJobName": "forecast-bench",
    "HyperParameterTuningJobConfig": {
        "Strategy": "Bayesian",
        "HyperParameterTuningJobObjective": {
            "MetricName": "validation:accuracy",
            "Type": "Maximize",
        },
        "ResourceLimits": {"MaxNumberOfTrainingJobs": 12, "MaxParallelTrainingJobs": 2},
        "ParameterRanges": {
            "ContinuousParameterRanges": [
                {
                    "Name": "learning_rate",
                    "MinValue": "0.001",
                    "MaxValue": "0.5",
                    "ScalingType": "Logarithmic",
                }
            ],
            "IntegerParameterRanges": [
                {
                    "Name": "mini_batch_size",
                    "MinValue": "32",
                    "MaxValue": "256",
                    "ScalingType": "Auto",
                }
            ],
            "CategoricalParameterRanges": [
                {"Name": "optimizer", "Values": ["sgd", "adam"]},
            ],
        },
        "TrainingJobEarlyStoppingType": "Auto",
        "RandomSeed": 0,
    },
    "TrainingJobDefinition": {
        "StaticHyperParameters": {
            "num_classes": "10",
            "num_training_samples": "2000",
            "num_layers": "20",
            "image_shape": "3,32,32",
            "epochs": "9",
            "augmentation_type": "crop",
        },
        "AlgorithmSpecification": {
            "TrainingImage": "image-classification",
            "TrainingInputMode": "File",
        },
        "InputDataConfig": [
            {"ChannelName": "train", "ContentType": "application/x-recordio"},
            {"ChannelName": "validation", "ContentType": "application/x-recordio"},
        ],
        "ResourceConfig": {"InstanceType": "ml.c5.xlarge", "InstanceCount": 1},
    },
}


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _space(case: str, work: Path, seed: int) -> tuple[Any, list[str]]:
    """The case's space with study seed `seed` (its study and MLflow store under `work`) and its
    `tune run` arguments."""
    from tuner.commands.run import load_study_definition

    if case == "quickstart":
        mapping = yaml.safe_load(QUICKSTART.read_text())
        mapping["data"]["path"] = str(DATA)
        mapping["study"]["directory"] = str(work / "studies")
        mapping["study"]["seed"] = seed
        path = work / "quickstart.yaml"
        path.write_text(yaml.safe_dump(mapping))
        return load_study_definition(path, None, log=lambda line: None), [str(path)]
    job = json.loads(json.dumps(SAGEMAKER_JOB))
    job["HyperParameterTuningJobConfig"]["RandomSeed"] = seed
    path = work / "job.json"
    path.write_text(json.dumps(job))
    os.chdir(work)  # a SageMaker job's study folder is under the working directory
    space = load_study_definition(path, DATA, log=lambda line: None)
    return space, [str(path), "--data", str(DATA)]


def _seconds(text: str) -> float:
    """`1h 02m`, `4m 07s` or `12s` in seconds."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    return float(sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([dhms])", text)))


def bench(case: str, seed: int) -> tuple[float, float]:
    """(predicted, actual) study wall seconds of `case` with study seed `seed`: `tune run ...
    --dry-run` as a user runs it, then the study itself."""
    import ray

    from tuner.study import load_trials, run_study

    with tempfile.TemporaryDirectory(prefix=f"bench-forecast-{case}-") as tmp:
        space, args = _space(case, Path(tmp), seed)
        print(f"--- {case}, study seed {seed}: load average {_load()}")
        print(f"$ tune run {' '.join(args)} --dry-run")
        dry = subprocess.run(
            [str(Path(sys.executable).parent / "tune"), "run", *args, "--dry-run"],
            capture_output=True,
            text=True,
            cwd=tmp,
            check=True,
        )
        print(dry.stdout, end="")
        found = re.search(r"study wall time\s+(.+?) expected", dry.stdout)
        epochs = re.search(r"\((\d+) in all;", dry.stdout)
        assert found and epochs, dry.stdout + dry.stderr
        predicted = _seconds(found.group(1))
        print(f"--- {case}: the study; load average {_load()}")
        start = time.perf_counter()
        summary = run_study(space, log=print)
        ray.shutdown()
        actual = time.perf_counter() - start
        os.chdir(ROOT)
        trials = load_trials(space.study_dir, space.objective, space.mode)
        ran = sum(len(t.history) for t in trials)
        print(
            f"--- {case}: load average {_load()}; {len(trials)} trials, {ran} epochs "
            f"(forecast {epochs.group(1)}); best {summary.best_value}"
        )
    return predicted, actual


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=["quickstart", "sagemaker", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=1, help="studies per case (seeds 0..N-1)")
    args = parser.parse_args()
    cases = ["quickstart", "sagemaker"] if args.case == "both" else [args.case]
    results = {case: [bench(case, seed) for seed in range(args.repeats)] for case in cases}
    print("\ncase        seed  predicted    actual   predicted/actual  (target 0.75 .. 1.25)")
    for case, runs in results.items():
        for seed, (predicted, actual) in enumerate(runs):
            print(
                f"{case:<12}{seed:>4}{predicted:>9.0f} s{actual:>8.0f} s{predicted / actual:>12.2f}"
            )
        if len(runs) > 1:
            predicted = statistics.mean(p for p, _ in runs)
            actual = statistics.mean(a for _, a in runs)
            print(f"{case:<12}mean{predicted:>9.0f} s{actual:>8.0f} s{predicted / actual:>12.2f}")


if __name__ == "__main__":
    main()
