"""Run fuzz cases in a worker process, so that a hang or a crash is counted rather than fatal.

One worker serves many cases over a pipe (starting a process per case would cost a torch import
each). A case that gets no answer within `timeout` seconds is a `hang` and its worker is killed; a
worker that dies (a segfault, the kernel's OOM killer) is a `crash`. Either way the next case
starts a fresh worker. The worker's address space is capped (`RLIMIT_AS`), so that an input
claiming a huge image or record becomes a `MemoryError` in the worker, not memory taken from a
shared machine, and its temporary files go to a scratch folder of its own (`TMPDIR`).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import tempfile
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from benchmarks.faults.fuzz_targets import CRASH, HANG, TARGETS, TRACEBACK, Outcome

__all__ = ["Sandbox"]

# torch, torchvision and the CUDA libraries map about 3.8 GB of address space at import
DEFAULT_MEMORY = 6 << 30


def _serve(conn: Connection, target: str, scratch: str, memory: int) -> None:
    """The worker: run each case received with the target, send back its `Outcome`."""
    # libjpeg's "Corrupt JPEG data" lines for each damaged image: the outcome says what happened
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    os.environ["TMPDIR"] = scratch
    tempfile.tempdir = scratch
    os.chdir(scratch)
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    run = TARGETS[target].run if target in TARGETS else _TEST_TARGETS[target]
    while True:
        try:
            case = conn.recv()
        except EOFError:
            return
        try:
            outcome = run(case)
        except BaseException as exc:  # noqa: BLE001 - a target's own slip is still counted
            outcome = Outcome(TRACEBACK, f"{type(exc).__name__}: {exc}")
        conn.send(outcome)


def _sleep(seconds: float) -> Outcome:
    import time

    time.sleep(seconds)
    return Outcome("accepted")


def _segfault(_: Any) -> Outcome:
    os.kill(os.getpid(), signal.SIGSEGV)
    return Outcome("accepted")


# what the sandbox's own tests run in a worker (a target must be importable by name there)
_TEST_TARGETS = {"sleep": _sleep, "segfault": _segfault}


class Sandbox:
    """A worker process running one target's cases, restarted after a hang or a crash."""

    def __init__(self, target: str, *, timeout: float = 30.0, memory: int = DEFAULT_MEMORY) -> None:
        self.target = target
        self.timeout = timeout
        self.memory = memory
        self._scratch = tempfile.TemporaryDirectory(prefix=f"fuzz-{target}-")
        self._context = multiprocessing.get_context("spawn")
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self.restarts = 0

    def _start(self) -> Connection:
        parent, child = self._context.Pipe()
        # a folder per worker: what a killed one left behind is not the next one's problem
        scratch = tempfile.mkdtemp(dir=self._scratch.name)
        self._process = self._context.Process(
            target=_serve, args=(child, self.target, scratch, self.memory), daemon=True
        )
        self._process.start()
        child.close()
        self._conn = parent
        return parent

    def _stop(self) -> int | None:
        process, self._process = self._process, None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if process is None:
            return None
        process.join(timeout=2)
        if process.is_alive():
            process.kill()
            process.join()
        return process.exitcode

    def run(self, case: Any) -> Outcome:
        """The outcome of one case: the target's, or `hang` / `crash`."""
        conn = self._conn or self._start()
        try:
            conn.send(case)
            if conn.poll(self.timeout):
                outcome: Outcome = conn.recv()
                return outcome
        except (EOFError, ConnectionError):
            code = self._stop()
            self.restarts += 1
            how = f"signal {signal.Signals(-code).name}" if code and code < 0 else f"exit {code}"
            return Outcome(CRASH, f"the worker died ({how})")
        assert self._process is not None
        self._process.kill()
        self._stop()
        self.restarts += 1
        return Outcome(HANG, f"no answer within {self.timeout:g} s")

    def close(self) -> None:
        """Stop the worker and remove its scratch folder."""
        self._stop()
        self._scratch.cleanup()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def scratch(self) -> Path:
        return Path(self._scratch.name)
