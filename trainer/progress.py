"""Progress inside long work (decoding a data set, an epoch): never silent for long.

When stderr is a terminal, a tqdm bar with the rate and ETA. Otherwise (a log file, a Ray
trial's output, CI) one plain line every `interval` seconds, like MXNet's Speedometer:
`epoch 3/30 [200/352] 391 img/s train:accuracy=0.6120 ...`, and nothing at all for work that
ends before the first interval.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType

from tqdm import tqdm

__all__ = ["PLAIN_INTERVAL", "Progress"]

PLAIN_INTERVAL = 30.0  # seconds between plain progress lines


class Progress:
    """Counts `update(n)` calls towards `total` and shows them (see the module docstring).

    `status()`, when given, adds text such as running metrics to each plain line and to the
    bar; it is only called when a line or the bar is drawn, so it may read device values.
    """

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        unit: str = "img",
        log: Callable[[str], None] | None = None,
        status: Callable[[], str] | None = None,
        steps: int | None = None,
        bar: bool | None = None,
        interval: float = PLAIN_INTERVAL,
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.status = status
        self.steps = steps  # batches in the work, shown as [done/steps] in plain lines
        self.interval = interval
        self.done = self.step = 0
        self.start = self._last = time.perf_counter()
        self._last_done = 0
        self._bar: tqdm | None = None  # type: ignore[type-arg]
        if sys.stderr.isatty() if bar is None else bar:
            self._bar = tqdm(
                total=total, desc=desc, unit=unit, unit_scale=True, leave=False, file=sys.stderr
            )

    def update(self, n: int) -> None:
        """`n` more items done (one step, e.g. one batch)."""
        self.done += n
        self.step += 1
        now = time.perf_counter()
        if self._bar is not None:
            self._bar.update(n)
            if self.status is not None and now - self._last >= 1.0:
                self._bar.set_postfix_str(self.status(), refresh=False)
                self._last = now
            return
        if now - self._last >= self.interval:
            rate = (self.done - self._last_done) / (now - self._last)
            where = f"[{self.step}/{self.steps}]" if self.steps else f"[{self.done}/{self.total}]"
            extra = f" {self.status()}" if self.status is not None else ""
            self.log(f"{self.desc} {where} {rate:,.0f} {self.unit}/s{extra}")
            self._last, self._last_done = now, self.done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
