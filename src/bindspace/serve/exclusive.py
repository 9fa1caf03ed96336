"""`ExclusiveWorker`: one long model job at a time (an LLM answer, a generated image) on its own thread.

Requests wait for their turn on the event loop (an asyncio semaphore), never in a thread, so a
queue of chat or generate requests holds no worker of the shared pools that file responses,
searches and decoding use. Each job gets a `threading.Event`; when its request times out or its
client goes away the event is set, and a job that checks it (per token, per step) stops early.
The turn is given back only when the job's thread is done, so the next job never runs beside it.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class ExclusiveWorker:
    """A dedicated single-thread executor whose jobs queue on the event loop and can be told to stop."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"bindspace-{name}")
        self._turn: asyncio.Semaphore | None = None
        self.waiting = 0  # requests queued for their turn (for tests and metrics)

    def _semaphore(self) -> asyncio.Semaphore:
        if self._turn is None:  # created on the serving loop (a semaphore binds to the loop it first waits on)
            self._turn = asyncio.Semaphore(1)
        return self._turn

    async def run(self, job: Callable[[threading.Event], T]) -> T:
        """`job(stop)` on the worker thread once every earlier job is done; cancelling sets `stop`."""
        turn = self._semaphore()
        self.waiting += 1
        try:
            await turn.acquire()
        finally:
            self.waiting -= 1
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        try:
            future = self._executor.submit(job, stop)
        except BaseException:
            turn.release()
            raise

        def release(_: object) -> None:  # the turn ends when the thread is done, not when the request gives up
            try:
                loop.call_soon_threadsafe(turn.release)
            except RuntimeError:  # the loop is closed: the server stopped
                pass

        future.add_done_callback(release)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            stop.set()
            raise

    def close(self) -> None:
        """Stop accepting jobs (a running one finishes on its own thread)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
