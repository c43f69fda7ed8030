"""What the user sees while a study runs: one line per trial that ends, with the best so far, e.g.

`[5/12] trial 3f2a0c1d pruned at epoch 1/9   validation:accuracy=0.2810  best 0.4410 (9e1b)`
`  ETA 3m 10s` (on the same line)

The study's ETA at the end of each line is the expected remaining epochs (trials still to run at
`expected_epochs` each, less what the running ones have done) at the study's observed rate (wall
seconds since this run started per epoch reported in it).

`TrialProgress` also feeds the study's `CompletionCriteria`. It knows trials by their ids and
results only (`ProgressCallback` hands Ray's events to it), so it is tested without Ray.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from trainer.notices import notice
from tuner.layout import PrunedLog, TrialFiles
from tuner.study.criteria import CompletionCriteria

__all__ = ["TrialProgress", "format_duration"]


def format_duration(seconds: float) -> str:
    """`2d 3h 05m`, `1h 02m`, `4m 07s` or `12s`."""
    whole = max(0, round(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _best_of(results: list[dict[str, Any]], metric: str, sign: float) -> float | None:
    values = [r[metric] for r in results if isinstance(r.get(metric), int | float)]
    return max(values, key=lambda v: sign * v) if values else None


class TrialProgress:
    """Counts the trials that end and prints a line for each; tells `criteria` about them."""

    def __init__(
        self,
        metric: str,
        mode: str,
        max_trials: int,
        max_t: int,
        pruned: PrunedLog,
        criteria: CompletionCriteria,
        log: Callable[[str], None] = print,
        *,
        expected_epochs: float | None = None,
        max_retries: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`expected_epochs`: the epochs a trial runs on average (under ASHA, simulated); with
        it each line ends with the study's ETA. `max_retries`: the study's `limits.max_retries`,
        for the notice of a retried trial."""
        self.expected_epochs, self.clock = expected_epochs, clock
        self.max_retries = max_retries
        self.started_at = clock()
        self.epochs_seen = 0  # epochs reported in this run of the study
        self.metric, self.sign = metric, 1.0 if mode == "max" else -1.0
        self.max_trials, self.max_t = max_trials, max_t
        self.pruned, self.criteria, self.log = pruned, criteria, log
        self.done = 0
        self.ended: set[str] = set()  # trials already counted (a resumed study re-ends some)
        self.best: tuple[float, str] | None = None
        self.histories: dict[str, list[dict[str, Any]]] = {}

    def resume_from(self, records: list[Any]) -> None:
        """Count the trials an earlier run of this study already ended (`TrialRecord`s)."""
        for record in records:
            if record.status == "running":  # it continues: its epochs so far count for the ETA
                self.histories[record.trial_id] = [self._kept(e) for e in record.history]
                continue
            self.ended.add(record.trial_id)
            self.done += 1
            self._consider(record.value, record.trial_id)
            self.criteria.trial_finished(record.value)

    def _consider(self, value: float | None, trial_id: str) -> None:
        if value is not None and (
            self.best is None or self.sign * value > self.sign * self.best[0]
        ):
            self.best = (value, trial_id)

    def trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """One epoch of a trial."""
        self.criteria.observe(result)
        self.epochs_seen += 1
        self.histories.setdefault(trial_id, []).append(self._kept(result))

    def _kept(self, result: dict[str, Any]) -> dict[str, Any]:
        """What a trial's history keeps of one epoch's result: the epoch and the objective."""
        return {k: result[k] for k in ("epoch", self.metric) if k in result}

    def eta(self) -> str:
        """`  ETA 3m 10s` (the study's remaining wall time), or "" when it cannot be told yet."""
        left = self.max_trials - self.done
        if self.expected_epochs is None or left <= 0 or self.epochs_seen == 0:
            return ""
        running = [
            len(history) for trial, history in self.histories.items() if trial not in self.ended
        ]
        remaining = sum(max(0.0, self.expected_epochs - e) for e in running[:left])
        remaining += max(0, left - len(running)) * self.expected_epochs
        rate = (self.clock() - self.started_at) / self.epochs_seen
        return f"  ETA {format_duration(remaining * rate)}"

    def _line(self, trial_id: str, what: str) -> str:
        self.done += 1
        return f"[{self.done}/{self.max_trials}] trial {trial_id} {what}"

    def trial_completed(self, trial_id: str, last_result: dict[str, Any] | None) -> None:
        """A trial ended without an error: finished, stopped by ASHA, or stopped by the study."""
        if trial_id in self.ended:
            return
        self.ended.add(trial_id)
        result = last_result or {}
        history = self.histories.get(trial_id) or [result]
        value = _best_of(history, self.metric, self.sign)
        epoch = int(result.get("epoch", 0) or 0)
        pruned_at = self.pruned.epoch(trial_id)
        ended = TrialFiles(self.pruned.study_dir, trial_id).has_outcome()
        if pruned_at is None and not ended and epoch < self.max_t:
            # stopped by the study (a limit was reached), not by ASHA: an early stop all the same
            self.pruned.record(trial_id, epoch)
            pruned_at = epoch
        what = (
            f"pruned at epoch {pruned_at}/{self.max_t}"
            if pruned_at is not None
            else f"finished {epoch} epoch{'s' if epoch != 1 else ''}"
        )
        self._consider(value, trial_id)
        self.criteria.trial_finished(value)
        shown = f"{value:.4f}" if value is not None else "n/a"
        best = f"best {self.best[0]:.4f} ({self.best[1]})" if self.best else "no best yet"
        line = f"{self._line(trial_id, what):<52} {self.metric}={shown}  {best}"
        self.log(line + self.eta())

    def trial_failed(self, trial_id: str, error_file: str | None) -> None:
        """A trial raised; its line ends with the last line of Ray's error file."""
        if trial_id in self.ended:
            return
        self.ended.add(trial_id)
        self.criteria.trial_finished(None)
        message = _last_line(error_file) or "see its error.txt"
        self.log(f"{self._line(trial_id, 'failed')}: {message}{self.eta()}")

    def trial_retried(self, trial_id: str, failures: int, error_file: str | None) -> None:
        """A trial failed (its worker or node died) and Ray starts it again from its last
        checkpoint (`limits.max_retries`); `failures` counts its failures so far."""
        cause = _last_line(error_file, 160) or "its worker stopped"
        notice(
            f"trial {trial_id} stopped ({cause}); it continues from its last saved epoch "
            f"(retry {failures} of at most {self.max_retries})"
        )


def _last_line(path: str | None, width: int = 300) -> str | None:
    """The last non-blank line of a trial's error file (Ray's `error.txt`), cut to `width`."""
    if not path:
        return None
    try:
        with open(path) as f:
            lines = [ln for ln in f.read().strip().splitlines() if ln.strip()]
    except OSError:
        return None
    return lines[-1].strip()[:width] if lines else None
