"""Part 4 of issue 17's campaign: `tune train` on a disk that fills up.

Two ways to fill it, each a real `tune train` process on real RecordIO data:

- a file size limit (`RLIMIT_FSIZE`, SIGXFSZ ignored, so a write past it fails with EFBIG), which
  works for any user: the limit lies between the size of the state file written every epoch and
  that of the final model.tar.gz, so the training finishes and the archive write fails;
- a small tmpfs holding the output and the state directory (only where this user may mount one),
  sized to fill up in the middle of the run (ENOSPC), then enlarged.

Each time: the previous model.tar.gz (and the last saved state) must be intact, the error one
`error:` line naming the disk-full condition and the file, no traceback, no temporary left
behind, and the same command, once there is room, must continue after the last finished epoch.
"""

from __future__ import annotations

import hashlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "assets" / "recordio" / "cifar10"
STATE_FILE = "training_state.pt"
_EPOCH = re.compile(r"^epoch (\d+)/\d+ ", re.M)
_RESUMED = re.compile(r"^resuming from .* after epoch (\d+)$", re.M)


@dataclass
class Run:
    """One `tune train` process: its exit status and output."""

    code: int
    out: str
    err: str

    @property
    def epochs(self) -> list[int]:
        return [int(e) for e in _EPOCH.findall(self.out)]

    @property
    def resumed_after(self) -> int | None:
        found = _RESUMED.search(self.out)
        return int(found.group(1)) if found else None

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("error:")]


def tune_train(output: Path, state: Path, *, epochs: int, limit: int | None = None) -> Run:
    """`tune train` on the test RecordIO sample with `--checkpoint-dir`; `limit` caps the size of
    any file it writes (RLIMIT_FSIZE, with SIGXFSZ ignored so that the write fails with EFBIG)."""

    def cap() -> None:
        if limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # stays ignored across exec
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    hp = {
        "num_classes": 10,
        "num_training_samples": 200,
        "num_layers": 20,
        "image_shape": "3,32,32",
        "mini_batch_size": 50,
        "epochs": epochs,
        "checkpoint_frequency": 1,  # every checkpoint is kept: the archive outgrows the state
    }
    command = [
        sys.executable, "-c", "from tuner.cli import main; main()", "train",
        "--data", str(DATA), "--output", str(output), "--checkpoint-dir", str(state),
        "--content-type", "recordio", *[f"--hp={k}={v}" for k, v in hp.items()],
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, preexec_fn=cap, timeout=900
    )
    return Run(done.returncode, done.stdout, done.stderr)


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _saved_epoch(state: Path) -> int | None:
    import torch

    path = state / STATE_FILE
    if not path.is_file():
        return None
    return int(torch.load(path, weights_only=True)["progress"]["epoch"])


def _temporaries(*folders: Path) -> list[str]:
    return [str(p) for f in folders if f.is_dir() for p in f.rglob("*.tmp")]


@dataclass
class Scenario:
    """What one disk-full scenario found; `ok` when every check held."""

    name: str
    failed_write: str
    checks: dict[str, bool]
    details: list[str]

    @property
    def ok(self) -> bool:
        return all(self.checks.values())


def _failure_checks(run: Run, archive: Path, before: str | None, state: Path) -> dict[str, bool]:
    lines = run.error_lines
    said = lines[0] if lines else ""
    return {
        "the command failed (exit 2)": run.code == 2,
        "one error: line, no traceback": len(lines) == 1 and "Traceback" not in run.err,
        "the error says the disk is full or the file too large, and names the file": (
            "the disk is full" in said or "larger than allowed" in said
        )
        and said.startswith("error: cannot write /"),
        "the previous model.tar.gz is intact": _digest(archive) == before,
        "the last saved state loads": _saved_epoch(state) is not None,
        "no temporary file left": not _temporaries(archive.parent, state),
    }


def _said(run: Run) -> str:
    return (run.error_lines or run.err.strip().splitlines()[-1:] or ["(nothing on stderr)"])[0]


def _rerun_checks(run: Run, archive: Path, saved: int | None, epochs: int) -> dict[str, bool]:
    from trainer.artifacts import load_model_archive

    expected = list(range((saved or 0) + 1, epochs + 1))
    try:
        load_model_archive(archive)
        loads = True
    except Exception:  # noqa: BLE001 - reported as a failed check
        loads = False
    return {
        "the same command then succeeds": run.code == 0,
        f"it continues after the last saved epoch ({saved})": run.resumed_after == saved
        or (saved is None and run.resumed_after is None),
        f"it trains only epochs {expected}": run.epochs == expected,
        "the new model.tar.gz loads": loads,
    }


def file_size_limit(work: Path, epochs: int, baseline: Path) -> Scenario:
    """RLIMIT_FSIZE between the state file's size and the archive's: the archive write fails."""
    output, state = work / "out", work / "state"
    output.mkdir()
    shutil.copy(baseline / "model.tar.gz", output / "model.tar.gz")
    archive = output / "model.tar.gz"
    before = _digest(archive)
    sizes = {p.name: p.stat().st_size for p in (baseline / "state").rglob("*.pt")}
    limit = (sizes[STATE_FILE] + archive.stat().st_size) // 2
    failed = tune_train(output, state, epochs=epochs, limit=limit)
    checks = _failure_checks(failed, archive, before, state)
    saved = _saved_epoch(state)
    checks[f"every epoch was saved before the archive write ({saved})"] = saved == epochs
    again = tune_train(output, state, epochs=epochs)
    checks.update(_rerun_checks(again, archive, saved, epochs))
    details = [
        f"limit {limit:,} bytes (state {sizes[STATE_FILE]:,}, archive {archive.stat().st_size:,})",
        _said(failed),
        f"rerun: resumed after epoch {again.resumed_after}, trained epochs {again.epochs}",
    ]
    return Scenario("file size limit (RLIMIT_FSIZE, EFBIG)", "model.tar.gz", checks, details)


def _mount(folder: Path, size: int, *, remount: bool = False) -> bool:
    options = f"{'remount,' if remount else ''}size={size}"
    command = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)]
    if remount:
        command = ["mount", "-o", options, str(folder)]
    return subprocess.run(command, capture_output=True).returncode == 0


def full_tmpfs(work: Path, epochs: int, baseline: Path) -> Scenario | str:
    """A tmpfs that fills up at the last epoch's state write (ENOSPC); then it is enlarged."""
    disk = work / "disk"
    disk.mkdir()
    base_sizes = {p.name: p.stat().st_size for p in (baseline / "state").rglob("*.pt")}
    checkpoint = max(v for k, v in base_sizes.items() if k != STATE_FILE)
    state_size = base_sizes[STATE_FILE]
    archive_size = (baseline / "model.tar.gz").stat().st_size
    # the previous archive, then the checkpoints of epochs 1..N-1 and the state with its
    # temporary copy at each write; epoch N's state write needs half a checkpoint more
    size = archive_size + epochs * checkpoint + 2 * state_size - checkpoint // 2
    if not _mount(disk, size):
        return "skipped: this user cannot mount a tmpfs (needs root or CAP_SYS_ADMIN)"
    try:
        output, state = disk / "out", disk / "state"
        output.mkdir()
        shutil.copy(baseline / "model.tar.gz", output / "model.tar.gz")
        archive = output / "model.tar.gz"
        before = _digest(archive)
        failed = tune_train(output, state, epochs=epochs)
        checks = _failure_checks(failed, archive, before, state)
        saved = _saved_epoch(state)
        where = _said(failed).split("cannot write ", 1)[-1].split(":", 1)[0]
        checks[f"the disk filled during training (saved epoch {saved} < {epochs})"] = (
            saved is not None and saved < epochs
        )
        freed = _mount(disk, 64 << 20, remount=True)
        again = tune_train(output, state, epochs=epochs)
        checks["room was made (remount, 64 MiB)"] = freed
        checks.update(_rerun_checks(again, archive, saved, epochs))
        details = [
            f"tmpfs of {size:,} bytes (checkpoint {checkpoint:,}, state {state_size:,}, "
            f"previous archive {archive_size:,})",
            _said(failed),
            f"rerun: resumed after epoch {again.resumed_after}, trained epochs {again.epochs}",
        ]
        return Scenario("full tmpfs (ENOSPC)", Path(where).name, checks, details)
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def run_campaign(epochs: int = 3, log: Callable[[str], None] = print) -> bool:
    """Part 4: print each scenario's checks; True when all held."""
    log(f"part 4, disk full: tune train, {epochs} epochs on {DATA.relative_to(ROOT)}")
    with tempfile.TemporaryDirectory(prefix="disk-full-") as tmp:
        work = Path(tmp)
        baseline = work / "baseline"
        first = tune_train(baseline, baseline / "state", epochs=epochs)
        if first.code != 0:
            log(f"the baseline run failed:\n{first.err[-2000:]}")
            return False
        ok = True
        for scenario in (file_size_limit, full_tmpfs):
            folder = work / scenario.__name__
            folder.mkdir()
            found = scenario(folder, epochs, baseline)
            if isinstance(found, str):
                log(f"  {scenario.__name__}: {found}")
                continue
            log(f"  {found.name}: the write of {found.failed_write} failed")
            for line in found.details:
                log(f"    {line}")
            for check, held in found.checks.items():
                log(f"    [{'ok' if held else 'FAILED'}] {check}")
            ok = ok and found.ok
    log(
        f"target (the previous model intact after every disk-full failure, and the rest): "
        f"{'met' if ok else 'NOT met'}"
    )
    return ok
