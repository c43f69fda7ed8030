"""A calibration of one trial on this machine, for `tune run --dry-run`'s forecast.

`calibrate(...)` runs `python -m tuner.study.calibration` in a subprocess (so that its peak RSS
is one trial's and the caller stays small) with the threads one trial gets, as many copies at once
as trials will run at once (they share the cores, caches and memory bandwidth as trials do). The
subprocess reads both channels the way a trial does (every check the trainer makes before
training, nothing decoded but a few batches), then for each batch size: a warm-up step and a few
timed training steps, and a timed validation pass over a few batches, of the space's model at its
image size and precision. It also times what a trial does once (building the model, writing
`model.tar.gz`) and every epoch (saving its state). Nothing is written outside a temporary folder.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BatchTiming", "Calibration", "calibrate"]

_TIMED_STEPS = 3  # after one warm-up step; fewer when they take over _TIMED_BUDGET seconds
_TIMED_BUDGET = 10.0
_VALIDATION_BATCHES = 2


@dataclass(frozen=True)
class BatchTiming:
    """One batch size's measurement: seconds per training step and per validated image."""

    batch: int  # the space's mini_batch_size
    measured_batch: int  # the batch that ran (smaller when the data holds fewer images)
    train_step_seconds: float
    validation_image_seconds: float
    decode_image_seconds: float  # reading + decoding one image (one process)

    @property
    def train_image_seconds(self) -> float:
        return self.train_step_seconds / self.measured_batch


@dataclass(frozen=True)
class Calibration:
    """What the calibration subprocess measured and found in the data."""

    device: str
    precision: str
    threads: int
    num_train: int
    num_validation: int
    train_classes: int
    validation_classes: int
    content_type: str
    decoded_bytes: int  # estimated decoded size of both channels (what a trial caches)
    cache_bytes: int
    model_seconds: float  # building the model once
    archive_seconds: float  # writing model.tar.gz once
    state_seconds: float  # saving the training state once (every epoch)
    peak_rss_bytes: int
    timings: list[BatchTiming] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    @property
    def cached(self) -> bool:
        """Whether a trial decodes the data once into memory (else it streams every epoch)."""
        return self.decoded_bytes <= self.cache_bytes

    def epoch_seconds(self, timing: BatchTiming) -> float:
        """One epoch at `timing`'s batch: training, validation, the state saved, plus decoding
        every image when the data is streamed."""
        seconds = (
            self.num_train * timing.train_image_seconds
            + self.num_validation * timing.validation_image_seconds
            + self.state_seconds
        )
        if not self.cached:
            seconds += (self.num_train + self.num_validation) * timing.decode_image_seconds
        return seconds

    def trial_setup_seconds(self, timing: BatchTiming, cores: int) -> float:
        """What a trial spends once: decoding the data into memory (by every core), building the
        model and writing model.tar.gz."""
        decode = 0.0
        if self.cached:
            images = self.num_train + self.num_validation
            decode = images * timing.decode_image_seconds / max(1, cores)
        return decode + self.model_seconds + self.archive_seconds


def calibrate(
    fixed: dict[str, Any],
    configs: list[dict[str, Any]],
    data: dict[str, Any],
    *,
    seed: int,
    threads: int,
    copies: int = 1,
) -> Calibration:
    """Measure one trial per config in `configs` (each differing in mini_batch_size) in a
    subprocess with `threads` torch threads; `copies` of it at once, as `copies` trials share the
    machine in the study (the timings are their mean, the peak RSS the largest). Raises the
    trainer's `UserError` for a problem with the data or the hyperparameters, as a trial would."""
    request = {"fixed": fixed, "configs": configs, "data": data, "seed": seed, "threads": threads}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory(prefix="calibration-") as tmp:
        path = Path(tmp) / "request.json"
        path.write_text(json.dumps(request))
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "tuner.study.calibration", str(path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(max(1, copies))
        ]
        answers = [_answer(proc, *proc.communicate()) for proc in procs]
    measured = [a.pop("timings") for a in answers]
    first = answers[0]
    timings = [
        BatchTiming(
            batch=t["batch"],
            measured_batch=t["measured_batch"],
            **{
                key: sum(m[i][key] for m in measured) / len(measured)
                for key in (
                    "train_step_seconds",
                    "validation_image_seconds",
                    "decode_image_seconds",
                )
            },
        )
        for i, t in enumerate(measured[0])
    ]
    first["peak_rss_bytes"] = max(a["peak_rss_bytes"] for a in answers)
    for key in ("model_seconds", "archive_seconds", "state_seconds"):
        first[key] = sum(a[key] for a in answers) / len(answers)
    return Calibration(**first, timings=timings)


def _answer(proc: subprocess.Popen[str], stdout: str, stderr: str) -> dict[str, Any]:
    """The subprocess's JSON answer; its `UserError` raised here."""
    from trainer.errors import UserError

    lines = stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        tail = (stderr or stdout).strip().splitlines()[-5:]
        raise UserError(
            f"the calibration run ended with exit status {proc.returncode}: " + " / ".join(tail)
        )
    if "error" in answer:
        raise UserError(answer.get("problems") or answer["error"])
    return answer


def _batches(loader: Any, count: int) -> list[Any]:
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) >= count:
            break
    return out


def _time_steps(
    hp: Any,
    model: Any,
    optimizer: Any,
    precision: Any,
    device: Any,
    train: list[Any],
    validation: list[Any],
) -> tuple[float, float]:
    """(seconds per training step after a warm-up step, seconds per validated image)."""
    import torch

    from trainer.loop import evaluate, train_one_epoch
    from trainer.metrics import MetricTotals
    from trainer.optim import build_scheduler

    scheduler = build_scheduler(optimizer, hp, 1)
    scaler = precision.grad_scaler()
    loss_fn = torch.nn.BCEWithLogitsLoss() if hp.multi_label else torch.nn.CrossEntropyLoss()

    def totals() -> MetricTotals:
        return MetricTotals(device, multi_label=bool(hp.multi_label), top_k=hp.top_k)

    def run(batches: list[Any]) -> None:
        metrics = totals()
        train_one_epoch(model, batches, optimizer, scheduler, loss_fn, precision, scaler, metrics)
        metrics.compute("train")  # waits for the device

    run(train[:1])  # warm-up
    timed, start = 0, time.perf_counter()
    while timed < _TIMED_STEPS and (timed == 0 or time.perf_counter() - start < _TIMED_BUDGET):
        run([train[(1 + timed) % len(train)]])
        timed += 1
    step_seconds = (time.perf_counter() - start) / timed
    metrics = totals()
    start = time.perf_counter()
    evaluate(model, validation, loss_fn, precision, metrics)
    metrics.compute("validation")
    validated = sum(len(b[1]) for b in validation)
    return step_seconds, (time.perf_counter() - start) / max(1, validated)


def _measure(request: dict[str, Any]) -> dict[str, Any]:
    import torch

    from trainer.artifacts import atomic_torch_save, write_model_archive
    from trainer.data import DataConfig, build_loaders
    from trainer.hyperparameters import parse_hyperparameters
    from trainer.models import build_model
    from trainer.notices import notices_to
    from trainer.optim import build_optimizer
    from trainer.precision import place_model, resolve_device, resolve_precision

    torch.set_num_threads(request["threads"])
    torch.manual_seed(request["seed"])
    raw = request["data"]
    data = DataConfig(
        root=Path(raw["root"]),
        content_type=raw["content_type"],
        attribute_names=tuple(raw["attribute_names"]),
        label_format=raw["label_format"],
    )
    device = resolve_device(None)
    notices: list[str] = []
    timings: list[dict[str, Any]] = []
    found: dict[str, Any] = {}
    model_seconds = archive_seconds = state_seconds = 0.0
    precision_name = ""
    for config in request["configs"]:
        hp = parse_hyperparameters({**request["fixed"], **config})
        precision = resolve_precision(hp.precision_dtype, device)
        precision_name = precision.name
        with notices_to(notices.append):
            if precision.notice:
                notices.append(f"notice: {precision.notice}")
            # cache_bytes=0: every check the trainer makes, without decoding every image
            loaders = build_loaders(hp, data, seed=request["seed"], device=device, cache_bytes=0)
        start = time.perf_counter()
        train = _batches(loaders.train, 1 + _TIMED_STEPS)
        validation = _batches(loaders.validation, _VALIDATION_BATCHES)
        read = sum(len(b[1]) for b in train + validation)
        decode_image_seconds = (time.perf_counter() - start) / max(1, read)
        if not found:
            labels = {"train": loaders.train.labels, "validation": loaders.validation.labels}
            classes = {
                k: int((v.sum(0) > 0).sum()) if v.dim() == 2 else len(v.unique())
                for k, v in labels.items()
            }
            found = {
                "num_train": loaders.num_train,
                "num_validation": loaders.num_validation,
                "train_classes": classes["train"],
                "validation_classes": classes["validation"],
                "content_type": loaders.content_type,
                "decoded_bytes": sum(loaders.estimated_bytes.values()),
                "cache_bytes": (data.cache_bytes if data.cache_bytes is not None else 4 << 30),
            }
        start = time.perf_counter()
        model = place_model(build_model(hp), device)
        model_seconds = time.perf_counter() - start
        optimizer = build_optimizer(model, hp)
        step_seconds, validation_seconds = _time_steps(
            hp, model, optimizer, precision, device, train, validation
        )
        timings.append(
            {
                "batch": hp.mini_batch_size,
                "measured_batch": len(train[0][1]),
                "train_step_seconds": step_seconds,
                "validation_image_seconds": validation_seconds,
                "decode_image_seconds": decode_image_seconds,
            }
        )
        with tempfile.TemporaryDirectory(prefix="calibration-") as tmp:
            start = time.perf_counter()
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
            atomic_torch_save(state, Path(tmp) / "state.pt")
            state_seconds = max(state_seconds, time.perf_counter() - start)
            start = time.perf_counter()
            write_model_archive(
                Path(tmp) / "model.tar.gz",
                hp=hp,
                state_dict=model.state_dict(),
                checkpoints={},
                info={},
            )
            archive_seconds = max(archive_seconds, time.perf_counter() - start)
        del model, optimizer, train, validation
    return {
        "device": str(device),
        "precision": precision_name,
        "threads": torch.get_num_threads(),
        **found,
        "model_seconds": model_seconds,
        "archive_seconds": archive_seconds,
        "state_seconds": state_seconds,
        # Linux reports ru_maxrss in KiB; the data loader's worker processes are children
        "peak_rss_bytes": 1024 * resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "timings": timings,
        "notices": list(dict.fromkeys(notices)),
    }


def main() -> None:
    """The subprocess: the JSON request in the file named by its argument, one JSON line on
    stdout."""
    from trainer.errors import UserError

    request = json.loads(Path(sys.argv[1]).read_text())
    try:
        answer = _measure(request)
    except UserError as exc:
        answer = {"error": str(exc), "problems": list(exc.problems)}
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
