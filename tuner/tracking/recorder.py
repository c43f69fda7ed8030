"""Recording to MLflow that never stops a study or a training run: records
(`tuner.tracking.records`) are applied off the driver's loop, and spooled to
`FOLDER/mlflow-spool/` while the tracking store cannot be reached.

A record names its run by a local key, so one spooled before its run existed can be replayed
later. The MLflow run id of each key, and the epochs logged per run, live in
`FOLDER/mlflow-runs.json` (`tuner.layout.TrackingRuns`); that is what lets a resumed study continue
its parent run, and a replay skip epochs already logged.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainer.errors import UserError
from tuner import layout
from tuner.layout import write_text_atomic
from tuner.tracking.records import RECORD_TYPES, CreateRun, Record, decode, encode, op_name
from tuner.tracking.store import TrackingStore, is_permanent

__all__ = ["Recorder", "TrackingUnavailableError", "sync_spool"]


class TrackingUnavailableError(UserError):
    """The tracking store could not be reached, so spooled operations stay spooled."""


def _replay_rank(record: Record) -> int:
    if not isinstance(record, CreateRun):
        return 2
    return 1 if record.parent else 0


@dataclass(frozen=True)
class _Barrier:
    """Queued by `flush`: set once everything queued before it was applied or spooled."""

    done: threading.Event


class Recorder:
    """Applies tracking records to one MLflow store, in order, from a background thread (or, with
    `background=False`, in `submit` itself).

    `submit` never blocks (in the background) and never raises. When a record fails because the
    store is away, the problem is reported once (through `log`), that record and every later one
    go to the spool file, and every `retry_seconds` the spool is replayed; the first replay that
    succeeds reports that the store is back. `close` drains the queue; what is still spooled stays
    on disk for `sync_spool` (`tune results --sync`). `outage` ends the message that reports the
    store away (`{spool}`: the spool folder).
    """

    def __init__(
        self,
        tracking_uri: str,
        study_dir: Path,
        *,
        retry_seconds: float = 15.0,
        log: Callable[[str], None] | None = None,
        background: bool = True,
        outage: str = "the study goes on and spools what is not recorded to {spool}",
    ) -> None:
        self.tracking_uri = tracking_uri
        self.outage = outage
        self.study_dir = Path(study_dir)
        self.retry_seconds = retry_seconds
        self._report = log or (lambda message: print(message, file=sys.stderr))
        self.store = TrackingStore(tracking_uri, self.study_dir, self._report)
        self._offline = self.spool_path.exists() and self.spool_path.stat().st_size > 0
        self._last_retry = time.monotonic()
        self._reported_down = False
        self._queue: queue.Queue[Record | _Barrier | None] = queue.Queue()
        self._spool_lock = threading.Lock()
        self._in_flight: Record | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._work, name="mlflow-recorder", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ public surface

    @property
    def spool_path(self) -> Path:
        return layout.spool_file(self.study_dir)

    def run_id(self, key: str) -> str | None:
        """The MLflow run id recorded for `key`, or None while it has not reached the store."""
        return self.store.run_id(key)

    def forget_runs(self) -> None:
        """Start a new study's bookkeeping (a study that is not a resume gets new runs)."""
        self.store.forget_runs()

    def submit(self, record: Record) -> None:
        """Queue one record; applied (or spooled) in order. Never blocks; raises only `TypeError`
        for what is not a record (a store that fails is reported, never raised)."""
        if not isinstance(record, RECORD_TYPES):
            raise TypeError(f"not a tracking record: {record!r}")
        if self._thread is None:
            self._handle(record)
        else:
            self._queue.put(record)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far was applied or spooled; False on timeout."""
        if self._thread is None:
            return True
        barrier = _Barrier(threading.Event())
        self._queue.put(barrier)
        return barrier.done.wait(timeout)

    def close(self, timeout: float = 120.0) -> int:
        """Drain the queue, try the spool once more, stop the thread; returns operations spooled."""
        if self._thread is not None:
            drained = self.flush(timeout)
            if not drained:
                # the store hangs: keep what is still queued on disk instead of losing it at exit
                self._offline = True
                self._spool(self._take_queued())
            self._queue.put(None)
            self._thread.join(timeout=5.0)
            in_flight = self._in_flight
            if self._thread.is_alive():
                # still inside a call to the store: spool that operation too (replaying it is
                # harmless: runs are created once per key, epochs logged once per step)
                self._in_flight = None
                if in_flight is not None:
                    self._spool([in_flight])
                return self.pending()
            self._thread = None
        if self._offline:
            self.replay_spool()
        pending = self.pending()
        if pending:
            self._report(
                f"mlflow: {pending} tracking operations could not be recorded at "
                f"{self.tracking_uri}; they are kept in {self.spool_path} "
                f"(`tune results {self.study_dir} --sync` records them)"
            )
        return pending

    def _take_queued(self) -> list[Record]:
        taken: list[Record] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return taken
            if isinstance(item, _Barrier):
                item.done.set()
            elif item is not None:
                taken.append(item)

    def pending(self) -> int:
        """How many operations wait in the spool file."""
        if not self.spool_path.exists():
            return 0
        with self.spool_path.open() as handle:
            return sum(1 for line in handle if line.strip())

    # ------------------------------------------------------------------ worker

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.retry_seconds)
            except queue.Empty:
                self._retry_if_due()
                continue
            if item is None:
                return
            if isinstance(item, _Barrier):
                item.done.set()
                continue
            self._handle(item)

    def _retry_if_due(self) -> None:
        if self._offline and time.monotonic() - self._last_retry >= self.retry_seconds:
            self.replay_spool()

    def _handle(self, record: Record) -> None:
        self._retry_if_due()
        if self._offline:
            self._spool([record])
            return
        self._in_flight = record
        try:
            self.store.apply(record)
        except Exception as exc:  # noqa: BLE001 - any store failure must leave the study running
            if is_permanent(exc):
                self._report(f"mlflow: {op_name(record)} for {record.key} refused: {exc}")
                return
            self._went_down(exc)
            if self._in_flight is not None:  # else `close` has spooled it already
                self._spool([record])
        finally:
            self._in_flight = None

    def _went_down(self, exc: Exception) -> None:
        self._offline = True
        self._last_retry = time.monotonic()
        if not self._reported_down:
            self._reported_down = True
            first_line = (
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            )
            self._report(
                f"mlflow: cannot record to {self.tracking_uri} ({first_line[:300]}); "
                + self.outage.format(spool=self.spool_path.parent)
            )

    def _spool(self, records: list[Record]) -> None:
        self.spool_path.parent.mkdir(parents=True, exist_ok=True)
        with self._spool_lock, self.spool_path.open("a") as handle:
            for record in records:
                handle.write(encode(record) + "\n")

    def replay_spool(self) -> int:
        """Apply the spooled records in order; keep the rest on the first failure. Returns how
        many were applied (or dropped as refused)."""
        self._last_retry = time.monotonic()
        if not self.spool_path.exists():
            self._offline = False
            return 0
        lines = [line for line in self.spool_path.read_text().splitlines() if line.strip()]
        # parent runs, then child runs, then the rest (each in its order): a record spooled
        # while its run's creation was still in flight can sit before that creation in the file
        lines.sort(key=lambda line: _replay_rank(decode(line)))
        done = 0
        for index, line in enumerate(lines):
            try:
                self.store.apply(decode(line))
            except Exception as exc:  # noqa: BLE001
                if is_permanent(exc):
                    self._report(f"mlflow: spooled operation refused and dropped: {exc}")
                    done += 1
                    continue
                write_text_atomic(self.spool_path, "".join(f"{rest}\n" for rest in lines[index:]))
                return done
            done += 1
        self.spool_path.unlink(missing_ok=True)
        self._offline = False
        if self._reported_down and done:
            self._report(f"mlflow: {self.tracking_uri} is back; {done} spooled operations recorded")
        self._reported_down = False
        return done

    # ------------------------------------------------------------------ state file

    # ------------------------------------------------------------------ applying operations


def sync_spool(study_dir: Path, tracking_uri: str | None = None) -> int:
    """Record what a study spooled while its tracking store was away (`tune results --sync`).

    `tracking_uri` defaults to the store the study recorded to (in `STUDY_DIR/mlflow-runs.json`).
    Returns how many operations were recorded (0 when nothing was spooled); raises
    `TrackingUnavailableError` when the store still cannot be reached.
    """
    study_dir = Path(study_dir)
    if tracking_uri is None:
        runs = layout.read_tracking_runs(study_dir)
        if runs is None:
            raise TrackingUnavailableError(
                f"{layout.tracking_runs_file(study_dir)} does not exist: {study_dir} was never "
                "tracked, so there is nothing to sync (or pass the tracking URI explicitly)"
            )
        tracking_uri = runs.tracking_uri
    recorder = Recorder(tracking_uri, study_dir, background=False, log=lambda _message: None)
    if recorder.pending() == 0:
        return 0
    done = recorder.replay_spool()
    left = recorder.pending()
    if left:
        raise TrackingUnavailableError(
            f"the tracking store {tracking_uri} is still unreachable: {done} operations recorded, "
            f"{left} remain in {recorder.spool_path}"
        )
    return done
