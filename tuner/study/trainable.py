"""The Ray Tune function trainable: one trial is one `trainer.fit` run.

Every epoch's metrics go to `ray.tune.report` with a checkpoint made from the fit's `state_dir`, so
ASHA sees each epoch and a trial restarted by Ray (retry after a failure, `tune run --resume`)
continues from its last reported epoch instead of starting over. Trials run with their trial
directory as the working directory, so every path handed in here is absolute.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner.layout import Outcome, TrialFiles

__all__ = ["TrialSettings", "train_trial"]


@dataclass(frozen=True)
class TrialSettings:
    """What every trial shares: the fixed hyperparameters, the data and the training seed."""

    study_dir: str
    fixed: dict[str, Any]
    data_root: str
    content_type: str
    attribute_names: tuple[str, str]
    label_format: str
    seed: int
    threads: int


def train_trial(config: dict[str, Any], settings: TrialSettings) -> None:
    """Train one trial with `config` (the sampled hyperparameters) merged over the fixed ones."""
    import ray.tune
    import torch

    from trainer.data import DataConfig
    from trainer.hyperparameters import parse_hyperparameters
    from trainer.loop import fit

    torch.set_num_threads(settings.threads)
    # The study's own trial directory (not Ray's local staging copy, which a killed study loses).
    files = TrialFiles(Path(settings.study_dir), ray.tune.get_context().get_trial_id())
    files.dir.mkdir(parents=True, exist_ok=True)
    if files.has_outcome():
        # fit already ran to its end; the study was killed before Ray recorded that
        return
    state_dir = files.state_dir
    # The state Ray knows about is the last *reported* epoch; a newer one on disk (killed between
    # saving and reporting) would make ASHA miss that epoch, so start from Ray's checkpoint.
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)
    checkpoint = ray.tune.get_checkpoint()
    if checkpoint is not None:
        checkpoint.to_directory(str(state_dir))

    hp = parse_hyperparameters({**settings.fixed, **config})
    data = DataConfig(
        root=Path(settings.data_root),
        content_type=settings.content_type,
        attribute_names=settings.attribute_names,
        label_format=settings.label_format,
    )
    log_path = files.log

    def log(line: str) -> None:
        with log_path.open("a") as f:
            f.write(line + "\n")

    def report(metrics: dict[str, float]) -> None:
        ray.tune.report(
            dict(metrics), checkpoint=ray.tune.Checkpoint.from_directory(str(state_dir))
        )

    start = time.perf_counter()
    result = fit(
        hp,
        data,
        files.output_dir,
        report=report,
        state_dir=state_dir,
        seed=settings.seed,
        log=log,
    )
    files.write_outcome(
        Outcome(
            model_path=str(Path(result.model_path).resolve()),
            best_epoch=result.best_epoch,
            stopped_early=result.stopped_early,
            fit_seconds=time.perf_counter() - start,
            hyperparameters=hp.to_strings(),
        )
    )
