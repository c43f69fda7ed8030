"""Dynamic batching: requests that arrive together share one forward pass.

A request is announced (`arrival()`) as soon as its body is read, before its images are decoded.
Queued images wait for the model while announced requests are still on their way, or while fewer
are queued than the last batch held (clients that just got their answers tend to send again), until
`max_batch_size` images are queued or `max_delay_s` has passed, counted from the later of the
oldest waiting request's arrival and the end of the last forward pass (TorchServe's
`max_batch_delay`). With nothing on its way and the last batch's size reached, they go at once;
when the load drops, one batch waits out the delay and the next expects fewer. Then up to
`max_batch_size` images (at least one whole request) go through the model in one call on a
dedicated thread (`thread_initializer` runs on it first), so the event loop keeps reading requests
(and answering `/ping`) while the model runs. A fixed wait alone leaves the model idle for the
whole delay whenever fewer than `max_batch_size` clients are sending (measured with 8 closed-loop
clients and a 5 ms delay: the model busy half the time). A full queue refuses new work
(`QueueFull`) rather than growing without bound.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

__all__ = ["Arrival", "Batcher", "QueueFull"]

Forward = Callable[[Sequence[np.ndarray]], np.ndarray]


class QueueFull(Exception):
    """More images are waiting for the model than the batcher holds."""


class Arrival:
    """A request on its way to the queue (its images being decoded): while it is open the batcher
    may wait for it. `Batcher.submit` closes it; close it yourself if the request fails first."""

    def __init__(self, on_close: Callable[[], None]) -> None:
        self._on_close: Callable[[], None] | None = on_close

    def close(self) -> None:
        """The request is queued or gone; closing twice does nothing."""
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()


@dataclass
class _Waiting:
    images: Sequence[np.ndarray]
    arrived: float
    future: asyncio.Future[np.ndarray]


class Batcher:
    """Groups `submit`ted images into batches for `forward` (images -> one row per image).

    >>> batcher = Batcher(predictor.predict, max_batch_size=32, max_delay_s=0.005)  # doctest: +SKIP
    >>> batcher.start()                      # inside the running event loop      # doctest: +SKIP
    >>> probabilities = await batcher.submit([image])                              # doctest: +SKIP
    """

    def __init__(
        self,
        forward: Forward,
        *,
        max_batch_size: int,
        max_delay_s: float,
        max_pending_images: int,
        thread_initializer: Callable[[], None] | None = None,
    ) -> None:
        self.forward = forward
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.max_pending_images = max_pending_images
        self.batch_sizes: collections.Counter[int] = collections.Counter()
        self._queue: collections.deque[_Waiting] = collections.deque()
        self._pending = 0
        self._arriving = 0  # open `Arrival`s
        self._expected = 0  # images in the last batch: as many are likely to come again
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(
            1, thread_name_prefix="forward", initializer=thread_initializer
        )

    def start(self) -> None:
        """Start the batching loop in the running event loop."""
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the loop; requests still waiting are cancelled."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for waiting in self._queue:
            waiting.future.cancel()
        self._executor.shutdown(wait=True)

    def arrival(self) -> Arrival:
        """Announce a request whose images will be submitted shortly (see `Arrival`)."""
        self._arriving += 1
        return Arrival(self._arrived)

    def _arrived(self) -> None:
        self._arriving -= 1
        if self._wakeup is not None:
            self._wakeup.set()

    async def submit(
        self, images: Sequence[np.ndarray], arrival: Arrival | None = None
    ) -> np.ndarray:
        """Rows of `forward`'s output for `images`, computed in a batch with other requests';
        `arrival`, the request's announcement, is closed once its images are queued."""
        if self._wakeup is None:
            raise RuntimeError("Batcher.start() was not called in this event loop")
        if arrival is not None:
            arrival.close()
        if self._pending + len(images) > self.max_pending_images:
            raise QueueFull(
                f"{self._pending} images are waiting for the model (at most "
                f"{self.max_pending_images}); try again shortly"
            )
        loop = asyncio.get_running_loop()
        waiting = _Waiting(images, loop.time(), loop.create_future())
        self._queue.append(waiting)
        self._pending += len(images)
        self._wakeup.set()
        return await waiting.future

    def _queued_images(self) -> int:
        return sum(len(w.images) for w in self._queue)

    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        free_since = loop.time()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._queue:
                continue
            deadline = max(self._queue[0].arrived, free_since) + self.max_delay_s
            while (
                self._arriving > 0 or self._queued_images() < self._expected
            ) and self._queued_images() < self.max_batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
                self._wakeup.clear()
            batch = self._take()
            if batch:
                await self._compute(batch, loop)
                free_since = loop.time()
            if self._queue:
                self._wakeup.set()

    def _take(self) -> list[_Waiting]:
        """Whole requests from the front of the queue, up to `max_batch_size` images (at least
        one request, however large); requests whose client has gone are dropped."""
        batch: list[_Waiting] = []
        size = 0
        while self._queue:
            waiting = self._queue[0]
            if waiting.future.done():  # cancelled: the client disconnected
                self._queue.popleft()
                self._pending -= len(waiting.images)
                continue
            if batch and size + len(waiting.images) > self.max_batch_size:
                break
            self._queue.popleft()
            batch.append(waiting)
            size += len(waiting.images)
        return batch

    async def _compute(self, batch: list[_Waiting], loop: asyncio.AbstractEventLoop) -> None:
        images = [image for waiting in batch for image in waiting.images]
        self.batch_sizes[len(images)] += 1
        self._expected = len(images)
        try:
            rows = await loop.run_in_executor(self._executor, self.forward, images)
        except Exception as exc:  # the model failed: each request gets the error, the loop goes on
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
        else:
            start = 0
            for waiting in batch:
                end = start + len(waiting.images)
                if not waiting.future.done():
                    waiting.future.set_result(rows[start:end])
                start = end
        finally:
            self._pending -= len(images)
