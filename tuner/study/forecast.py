"""`tune run --dry-run`: what a study would cost on this machine, before it starts.

`forecast_study(space)` validates what a real run validates (the study folder, the resources, the
data and hyperparameters, through a calibration trial in a subprocess: `calibration.py`), then
simulates the study: trials start `parallel` at a time, each spends its setup and then one epoch
after another at a seconds-per-epoch drawn between those measured at the smallest and the largest
`mini_batch_size` the space samples, and Ray's own `ASHAScheduler` decides after each epoch whether
it goes on (`asha_simulation.py`).
Nothing is written into the study folder and Ray is not started.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tuner.errors import SearchSpaceError
from tuner.space import SearchSpace
from tuner.study.asha_simulation import (
    Simulation,
    asha_settings,
    rungs,
    simulate_asha,
    trial_epochs,
)
from tuner.study.calibration import BatchTiming, Calibration, calibrate
from tuner.study.progress import format_duration

__all__ = ["RAY_START_SECONDS", "TRIAL_START_SECONDS", "Forecast", "forecast_study"]

# ray.init + ray.shutdown of a study, measured on this project's 2-core machine under load ~3
# (7.6 s + 1.4 s; Ray 2.x, no dashboard).
RAY_START_SECONDS = 9.0
# Ray's own cost to start and end one trial (actor, result and checkpoint handling): what
# benchmarks/bench_tuner.py's overhead part holds it to.
TRIAL_START_SECONDS = 0.5


@dataclass(frozen=True)
class Forecast:
    """A study's forecast on this machine."""

    space: SearchSpace
    calibration: Calibration
    trials: int  # still to run
    parallel: int
    cores: int
    simulation: Simulation
    trial_setup_seconds: float
    memory_per_trial: int
    memory_available: int
    memory_total: int
    notices: list[str] = field(default_factory=list)

    def epoch_seconds(self) -> list[tuple[BatchTiming, float]]:
        return [(t, self.calibration.epoch_seconds(t)) for t in self.calibration.timings]

    @property
    def wall_seconds(self) -> float:
        """The expected study wall time, Ray's start and stop included."""
        wall = self.simulation.wall_mean + RAY_START_SECONDS
        limit = self.space.limits.max_wall_seconds
        return min(wall, limit) if limit else wall

    def lines(self) -> list[str]:
        """The forecast table, as printed."""
        cal, space = self.calibration, self.space
        per_epoch = self.epoch_seconds()
        low = min(s for _, s in per_epoch)
        high = max(s for _, s in per_epoch)
        rows = [
            f"calibration on this machine: {cal.device}, {cal.threads} thread"
            f"{'s' if cal.threads != 1 else ''} per trial, {self.parallel} at once "
            f"({self.cores} cores), "
            f"precision {cal.precision}, ResNet-{space.base.get('num_layers', '?')} at "
            f"{space.base.get('image_shape', '?')}",
            f"  {'mini_batch_size':<17}{'train img/s':>12}{'valid img/s':>13}{'s/epoch':>10}",
        ]
        for timing, seconds in per_epoch:
            batch = str(timing.batch)
            if timing.measured_batch != timing.batch:
                batch += f" (ran {timing.measured_batch})"
            rows.append(
                f"  {batch:<17}{1 / timing.train_image_seconds:>12,.0f}"
                f"{1 / timing.validation_image_seconds:>13,.0f}{seconds:>10.1f}"
            )
        sim = self.simulation
        epochs = trial_epochs(space)
        if space.pruner.name == "asha":
            how = (
                f"ASHA rungs at epochs {', '.join(map(str, rungs(space)))} of {space.max_t}, "
                f"reduction factor {space.pruner.reduction_factor:g}; {len(sim.wall_seconds)} "
                "studies simulated "
                "with Ray's ASHAScheduler"
            )
        else:
            how = "no pruner: every trial runs all its epochs"
        span = f"{low:.1f}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f} - {high:.1f}"
        limit = space.limits.max_wall_seconds
        wall = (
            f"{format_duration(self.wall_seconds)} expected "
            f"({format_duration(sim.wall_percentile(0.1))} - "
            f"{format_duration(sim.wall_percentile(0.9))}, 10th-90th percentile; with "
            f"{RAY_START_SECONDS:.0f} s for Ray's start and stop)"
        )
        if limit and sim.wall_mean + RAY_START_SECONDS > limit:
            wall += f"; limits.max_wall_seconds={limit:g} ends it sooner"
        gib = 2**30
        rows += [
            f"forecast for study {space.name}:",
            f"  {'trials':<20}{self.trials}, {self.parallel} at a time",
            f"  {'epochs per trial':<20}{sim.epochs_per_trial:.1f} expected of {epochs} "
            f"({sim.epochs_total:.0f} in all; {how})",
            f"  {'seconds per epoch':<20}{span} (over mini_batch_size "
            f"{', '.join(str(t.batch) for t, _ in per_epoch)})",
            f"  {'per trial, once':<20}{self.trial_setup_seconds + TRIAL_START_SECONDS:.1f} s "
            f"({'decoding the data into memory, ' if cal.cached else ''}building the model, "
            f"writing model.tar.gz, Ray's {TRIAL_START_SECONDS:g} s)",
            f"  {'study wall time':<20}{wall}",
            f"  {'memory per trial':<20}{self.memory_per_trial / gib:.2f} GiB (peak RSS "
            f"{cal.peak_rss_bytes / gib:.2f} GiB"
            + (f" + {cal.decoded_bytes / gib:.2f} GiB of decoded images" if cal.cached else "")
            + f"); {self.parallel} at a time: {self.parallel * self.memory_per_trial / gib:.2f} "
            f"GiB of {self.memory_available / gib:.1f} GiB available "
            f"({self.memory_total / gib:.1f} GiB in all)",
        ]
        return rows


def _memory() -> tuple[int, int]:
    """(available, total) bytes of this machine's memory."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    available = total
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        pass
    return available, total


def _batch_configs(space: SearchSpace) -> list[dict[str, Any]]:
    """One sampled configuration per batch size to calibrate: the smallest and the largest
    mini_batch_size the space samples (the fixed one when it is not searched)."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # its "A new study created" line
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=space.seed))
    finally:
        optuna.logging.set_verbosity(verbosity)
    config = space.suggest(study.ask())
    dim = next((d for d in space.dimensions if d.name == "mini_batch_size"), None)
    if dim is None:
        return [config]
    d: Any = dim.distribution
    values = sorted(d.choices) if hasattr(d, "choices") else [int(d.low), int(d.high)]
    return [{**config, "mini_batch_size": int(b)} for b in dict.fromkeys([values[0], values[-1]])]


def _resources(space: SearchSpace, cores: int, notices: list[str]) -> tuple[int, int]:
    """(threads per trial, trials at a time) as Ray would run them here; what a real run refuses
    is a notice here (the forecast is then for what this machine can do)."""
    import torch

    gpus = torch.cuda.device_count()
    if space.resources.gpu > gpus:
        notices.append(
            f"notice: resources.gpu: a trial asks for {space.resources.gpu:g} GPU(s) and this "
            f"machine has {gpus}; `tune run` stops there; this forecast is for "
            f"{'the CPU' if not gpus else f'{gpus} GPU(s)'}"
        )
    cpu = space.resources.cpu
    if cpu > cores:
        notices.append(
            f"notice: resources.cpu: a trial asks for {cpu:g} CPUs and this machine has {cores}; "
            f"`tune run` stops there; this forecast gives a trial all {cores}"
        )
        cpu = cores
    threads = max(1, math.floor(cpu))
    parallel = min(space.limits.max_parallel, max(1, math.floor(cores / cpu)))
    if gpus and space.resources.gpu:
        parallel = min(parallel, max(1, math.floor(gpus / space.resources.gpu)))
    if parallel < space.limits.max_parallel:
        notices.append(
            f"notice: limits.max_parallel={space.limits.max_parallel} but only {parallel} "
            f"trial{'s' if parallel != 1 else ''} of resources.cpu={space.resources.cpu:g} "
            f"fit on {cores} cores at a time"
        )
    return threads, parallel


def forecast_study(
    space: SearchSpace, *, resume: bool | None = None, log: Callable[[str], None] = print
) -> Forecast:
    """Validate `space` as `tune run` would (`resume` as its `--resume`), calibrate one trial
    here and forecast the study; writes nothing into the study folder and starts no Ray."""
    from trainer.data.decoding import usable_cores
    from tuner.study.results import load_trials
    from tuner.study.running import check_resumable

    existing = check_resumable(space, resume)
    notices: list[str] = []
    trials = space.limits.max_trials
    if existing:
        ended = load_trials(space.study_dir, space.objective, space.mode)
        done = sum(1 for r in ended if r.status != "running")
        trials = max(0, trials - done)
        notices.append(
            f"notice: a study is already at {space.study_dir} with {done} trial"
            f"{'s' if done != 1 else ''} ended; `tune run` continues it: "
            f"{trials} trial{'s' if trials != 1 else ''} to go"
        )
    cores = usable_cores()
    threads, parallel = _resources(space, cores, notices)
    configs = _batch_configs(space)
    batches = ", ".join(
        str(c.get("mini_batch_size", space.base.get("mini_batch_size"))) for c in configs
    )
    log(
        f"calibrating: a few training steps and validation batches of each mini_batch_size "
        f"({batches}) with {threads} thread{'s' if threads != 1 else ''}, {parallel} "
        f"trial{'s' if parallel != 1 else ''} at once ..."
    )
    data = space.data
    calibration = calibrate(
        dict(space.fixed),
        configs,
        {
            "root": data.path,
            "content_type": data.content_type,
            "attribute_names": list(data.attribute_names),
            "label_format": data.label_format,
        },
        seed=space.seed,
        threads=threads,
        copies=parallel,
    )
    cal = calibration
    if not cal.timings:
        raise SearchSpaceError("the calibration measured nothing")
    log(
        f"data: {cal.content_type}, train {cal.num_train:,} images ({cal.train_classes} classes), "
        f"validation {cal.num_validation:,} images ({cal.validation_classes} classes), about "
        f"{cal.decoded_bytes / 2**20:,.0f} MiB decoded: "
        + ("cached in memory by each trial" if cal.cached else "streamed every epoch")
    )
    per_epoch = [cal.epoch_seconds(t) for t in cal.timings]
    setups = [cal.trial_setup_seconds(t, cores) for t in cal.timings]
    low, high = min(per_epoch), max(per_epoch)
    setup = statistics.fmean(setups)
    simulation = simulate_asha(
        trials=trials,
        parallel=parallel,
        epochs=trial_epochs(space),
        asha=asha_settings(space),
        epoch_seconds=lambda rng: rng.uniform(low, high),
        setup_seconds=setup + TRIAL_START_SECONDS,
        seed=space.seed,
    )
    available, total = _memory()
    per_trial = cal.peak_rss_bytes + (cal.decoded_bytes if cal.cached else 0)
    if parallel * per_trial > available:
        notices.append(
            f"notice: {parallel} trials at a time need about "
            f"{parallel * per_trial / 2**30:.1f} GiB and {available / 2**30:.1f} GiB is "
            "available; lower limits.max_parallel or mini_batch_size"
        )
    return Forecast(
        space=space,
        calibration=cal,
        trials=trials,
        parallel=parallel,
        cores=cores,
        simulation=simulation,
        trial_setup_seconds=setup,
        memory_per_trial=per_trial,
        memory_available=available,
        memory_total=total,
        notices=list(dict.fromkeys([*cal.notices, *notices])),
    )
