"""Micro-batching: concurrent requests' items are stacked onto one model call per tower and input shape.

Each (modality, item shape) has one asyncio queue and one collector task. The collector
takes the waiting items (up to `max_batch`), waiting at most `max_wait_s` for company when
an item arrives at an idle queue, then runs the model once in a single worker thread.
While that call runs, new items queue up, so under load batches fill by themselves.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..modality import Modality
from .errors import Busy

# Encode callback: (tower, stacked inputs (B, ...)) -> vectors (B, D) (the server passes the model's forward).
EncodeFn = Callable[[Modality, torch.Tensor], torch.Tensor]
BatchKey = tuple[Modality, tuple[int, ...]]

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    """One item waiting for the model."""

    tensor: torch.Tensor
    future: asyncio.Future


@dataclass
class BatcherStats:
    """Counters read by /metrics and by tests."""

    model_calls: int = 0
    items: int = 0
    model_seconds: float = 0.0
    batch_sizes: dict[int, int] = field(default_factory=dict)  # batch size -> number of calls
    pending: int = 0


class MicroBatcher:
    """Collects items from concurrent requests into batched model calls."""

    def __init__(self, encode: EncodeFn, *, max_batch: int = 32, max_wait_s: float = 0.005,
                 max_pending: int = 4096, on_batch: Callable[[Modality, int, float], None] | None = None) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._encode = encode
        self.max_batch = max_batch
        self.max_wait_s = max(0.0, float(max_wait_s))
        self.max_pending = max_pending
        self._on_batch = on_batch
        self._executor: ThreadPoolExecutor | None = None
        self._queues: dict[BatchKey, asyncio.Queue[_Pending]] = {}
        self._tasks: dict[BatchKey, asyncio.Task] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stats = BatcherStats()

    async def embed(self, modality: Modality, tensors: Sequence[torch.Tensor]) -> np.ndarray:
        """Embed items (each without batch axis) -> float32 (n, D), in order; shares batches with others."""
        if not tensors:
            raise ValueError("nothing to embed")
        if self.stats.pending + len(tensors) > self.max_pending:
            raise Busy(f"server busy: more than {self.max_pending} items waiting for the model; retry shortly",
                       headers={"Retry-After": "1"})
        loop = asyncio.get_running_loop()
        futures = [self._submit(loop, modality, t) for t in tensors]
        try:
            rows = await asyncio.gather(*futures)
        except BaseException:
            for fut in futures:
                fut.cancel()  # a timed-out request's items are dropped before they reach the model
            raise
        return np.stack(rows).astype(np.float32, copy=False)  # (n, D)

    async def close(self) -> None:
        """Stop the collectors and the worker thread (a later call starts a new one)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._queues.clear()
        self._loop = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def run_in_model_thread(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Run `fn(*args)` on the model thread, between batches: the one place the model is ever called."""
        return self._model_executor().submit(fn, *args)

    def _model_executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            # One thread: model calls never overlap, so batching (not thread contention) does the work.
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bindspace-model")
        return self._executor

    def _submit(self, loop: asyncio.AbstractEventLoop, modality: Modality, tensor: torch.Tensor) -> asyncio.Future:
        """Queue one item and return the future of its vector."""
        if self._loop is not loop:
            # A new event loop (tests create one per client): old queues belong to a dead loop.
            self._queues.clear()
            self._tasks.clear()
            self.stats.pending = 0
            self._loop = loop
        key: BatchKey = (Modality(modality), tuple(tensor.shape))
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = asyncio.Queue()
            self._tasks[key] = loop.create_task(self._collect(key, queue), name=f"batcher-{key[0]}")
        future = loop.create_future()
        queue.put_nowait(_Pending(tensor, future))
        self.stats.pending += 1
        return future

    async def _collect(self, key: BatchKey, queue: asyncio.Queue[_Pending]) -> None:
        """Forever: take the waiting items (after a bounded wait if the queue was idle) and run them."""
        while True:
            idle = queue.empty()
            batch = [await queue.get()]
            # Items that queued up during the previous model call have waited enough already;
            # a lone item that woke an idle queue waits max_wait_s for company.
            if idle and self.max_wait_s > 0 and queue.qsize() < self.max_batch - 1:
                await asyncio.sleep(self.max_wait_s)
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            self.stats.pending -= len(batch)
            live = [p for p in batch if not p.future.done()]
            if not live:
                continue
            try:
                await self._run(key[0], live)
            except asyncio.CancelledError:  # close(): nobody will answer these items any more
                for p in live:
                    p.future.cancel()
                raise
            except Exception as err:  # stacking, the result hook, a short answer: this batch fails, the loop goes on
                log.exception("the %s batcher failed outside the model call", key[0])
                _fail(live, err)

    async def _run(self, modality: Modality, batch: list[_Pending]) -> None:
        """One model call in the worker thread; its rows, or the model's error, go to the items' futures."""
        loop = asyncio.get_running_loop()
        stacked = torch.stack([p.tensor for p in batch])  # (B, *item_shape)
        started = time.perf_counter()
        try:
            vectors = await loop.run_in_executor(self._model_executor(), self._call, modality, stacked)
        except Exception as err:  # the model failed for the whole batch: every caller sees why
            _fail(batch, err)
            return
        if vectors.ndim != 2 or vectors.shape[0] != len(batch):
            rows = vectors.shape[0] if vectors.ndim else 0
            raise RuntimeError(f"the {modality} model returned {rows} row(s) of shape {tuple(vectors.shape[1:])} "
                               f"for {len(batch)} items; expected one vector per item")
        seconds = time.perf_counter() - started
        self.stats.model_calls += 1
        self.stats.items += len(batch)
        self.stats.model_seconds += seconds
        self.stats.batch_sizes[len(batch)] = self.stats.batch_sizes.get(len(batch), 0) + 1
        if self._on_batch is not None:
            self._on_batch(modality, len(batch), seconds)
        for p, row in zip(batch, vectors, strict=True):
            if not p.future.done():
                p.future.set_result(row)

    def _call(self, modality: Modality, stacked: torch.Tensor) -> np.ndarray:
        """Runs in the worker thread."""
        with torch.inference_mode():
            out = self._encode(modality, stacked)
        return out.detach().float().cpu().numpy()  # (B, D)


def _fail(batch: list[_Pending], err: BaseException) -> None:
    """Every still-waiting caller of a batch sees `err`."""
    for p in batch:
        if not p.future.done():
            p.future.set_exception(err)
