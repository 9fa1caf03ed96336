"""Micro-batching: concurrent requests share model calls, results go back to the right caller, limits hold."""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from serve_helpers import CountingModel

from bindspace.modality import Modality
from bindspace.serve.batcher import MicroBatcher
from bindspace.serve.errors import Busy


def _tagging_encode(calls: list[int], gate: threading.Event | None = None):
    """An encode whose row i is [x_i[0], 1, 0, ...]: results can be traced back to inputs.

    With a gate, each call waits until the test opens it (so batches fill by construction, not by timing).
    """

    def encode(modality, x: torch.Tensor) -> torch.Tensor:
        calls.append(int(x.shape[0]))
        if gate is not None:
            assert gate.wait(30), "gate never opened"
        out = torch.zeros(x.shape[0], 4)
        out[:, 0] = x[:, 0].float()
        out[:, 1] = 1.0
        return out

    return encode


async def _until(condition, what: str) -> None:
    """Yield to the event loop until `condition()` holds (a bounded wait, never a timing assertion)."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)


def test_concurrent_items_share_model_calls_and_keep_their_order():
    calls: list[int] = []
    gate = threading.Event()
    batcher = MicroBatcher(_tagging_encode(calls, gate), max_batch=8, max_wait_s=0.0)

    async def main():
        requests = [asyncio.ensure_future(batcher.embed(Modality.TEXT, [torch.tensor([i, 0]),
                                                                        torch.tensor([100 + i, 0])]))
                    for i in range(16)]
        # The first call holds the model thread; every other item queues behind it.
        await _until(lambda: len(calls) == 1 and batcher.stats.pending == 32 - calls[0], "all items to queue")
        gate.set()
        results = await asyncio.gather(*requests)
        await batcher.close()
        return results

    results = asyncio.run(main())
    for i, rows in enumerate(results):
        assert rows.shape == (2, 4) and rows.dtype == np.float32
        assert rows[:, 0].tolist() == [i, 100 + i]
    first, rest = calls[0], calls[1:]
    assert sum(calls) == 32 and max(calls) <= 8
    # Everything that queued during the first call went in full batches of 8 (the last one takes the remainder).
    assert rest == [8] * ((32 - first) // 8) + ([(32 - first) % 8] if (32 - first) % 8 else [])
    assert batcher.stats.model_calls == len(calls) and batcher.stats.pending == 0


def test_max_batch_one_is_one_call_per_item():
    calls: list[int] = []
    batcher = MicroBatcher(_tagging_encode(calls), max_batch=1, max_wait_s=0.01)

    async def main():
        await asyncio.gather(*(batcher.embed(Modality.TEXT, [torch.tensor([i])]) for i in range(5)))
        await batcher.close()

    asyncio.run(main())
    assert calls == [1] * 5


def test_different_shapes_are_never_stacked_together():
    calls: list[int] = []
    batcher = MicroBatcher(_tagging_encode(calls), max_batch=8, max_wait_s=0.02)

    async def main():
        a = batcher.embed(Modality.VISION, [torch.full((3,), 7.0)])
        b = batcher.embed(Modality.VISION, [torch.full((5,), 9.0)])
        out = await asyncio.gather(a, b)
        await batcher.close()
        return out

    a, b = asyncio.run(main())
    assert a[0, 0] == 7 and b[0, 0] == 9 and sorted(calls) == [1, 1]


def test_a_failing_model_call_fails_only_its_requests():
    def encode(modality, x):
        if (x[:, 0] < 0).any():
            raise RuntimeError("boom")
        return torch.ones(x.shape[0], 2)

    batcher = MicroBatcher(encode, max_batch=1)

    async def main() -> tuple:
        results: list[Any] = await asyncio.gather(batcher.embed(Modality.TEXT, [torch.tensor([1])]),
                                                  batcher.embed(Modality.TEXT, [torch.tensor([-1])]),
                                                  return_exceptions=True)
        good, bad = results
        again = await batcher.embed(Modality.TEXT, [torch.tensor([2])])
        await batcher.close()
        return good, bad, again

    good, bad, again = asyncio.run(main())
    assert good.shape == (1, 2) and isinstance(bad, RuntimeError) and again.shape == (1, 2)


def test_too_many_pending_items_is_busy():
    gate = threading.Event()
    batcher = MicroBatcher(_tagging_encode([], gate), max_batch=1, max_pending=3)

    async def main():
        first = asyncio.ensure_future(batcher.embed(Modality.TEXT, [torch.tensor([1])] * 3))
        await asyncio.sleep(0)
        with pytest.raises(Busy):
            await batcher.embed(Modality.TEXT, [torch.tensor([2])] * 2)
        gate.set()
        await first
        await batcher.close()

    asyncio.run(main())


async def _post_concurrently(app, bodies, model: CountingModel):
    """Post the bodies at once; the gated model holds its first call until every other item is queued."""
    async with app.router.lifespan_context(app):
        model.reset()  # forget the start-up warm-up calls
        gate = threading.Event()
        model.gate = gate
        transport = httpx.ASGITransport(app=app)
        batcher = app.state.bindspace.batcher
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            posts = [asyncio.ensure_future(client.post("/v1/embed", json=b)) for b in bodies]
            await _until(lambda: len(model.calls) == 1 and batcher.stats.pending == len(bodies) - model.calls[0][1],
                         "requests to queue")
            gate.set()
            return await asyncio.gather(*posts)


def test_sixteen_concurrent_requests_take_fewer_model_calls(tiny_model):
    from bindspace.preprocess import text
    from bindspace.serve import Limits, create_app

    counting = CountingModel(tiny_model)
    # Free batches: this counts the items sharing a call (fixed-size padded calls: test_serve_weaviate.py).
    app = create_app(counting, limits=Limits(max_batch=32, max_wait_ms=0, fixed_batches=False))
    texts = [f"request number {i}" for i in range(16)]
    # The first call holds the model; everything queued behind it must then go in one call.
    responses = asyncio.run(_post_concurrently(app, [{"modality": "text", "texts": [t]} for t in texts], counting))
    assert all(r.status_code == 200 for r in responses)
    first = counting.batch_sizes("text")[0]
    assert counting.batch_sizes("text") == [first] + ([16 - first] if first < 16 else [])
    with torch.inference_mode():
        expected = tiny_model.encode("text", text(texts)).numpy()
    got = np.array([r.json()["vectors"][0] for r in responses])
    np.testing.assert_allclose(got, expected, atol=1e-5)  # each caller got its own row back


def test_batch_size_one_serialises(tiny_model):
    from bindspace.serve import Limits, create_app

    counting = CountingModel(tiny_model)
    app = create_app(counting, limits=Limits(max_batch=1))
    bodies = [{"modality": "text", "texts": [f"t{i}"]} for i in range(6)]
    responses = asyncio.run(_post_concurrently(app, bodies, counting))
    assert all(r.status_code == 200 for r in responses)
    assert counting.batch_sizes("text") == [1] * 6


def test_slow_requests_time_out_with_504(make_client, tiny_model):
    client = make_client(model=CountingModel(tiny_model, delay_s=0.5), request_timeout_s=0.2)
    response = client.post("/v1/embed", json={"modality": "text", "texts": ["slow"]})
    assert response.status_code == 504 and response.json()["type"] == "timeout"


# ---------------------------------------------------------------- failures outside the model call (issue 20, item 5)


def _ones(modality, x: torch.Tensor) -> torch.Tensor:
    return torch.ones(x.shape[0], 2)


def _first_fails_then_works(make_batcher, first_items: list[torch.Tensor]):
    """Embed `first_items` (expected to fail), then one good item on the same tower and shape.

    Before the fix the collector task died with the error: the first request hung (its futures
    were never set) and every later request for that tower waited forever too.
    """

    async def main():
        batcher = make_batcher()
        try:
            with pytest.raises(Exception) as failed:
                await asyncio.wait_for(batcher.embed(Modality.TEXT, first_items), 5)
            again = await asyncio.wait_for(batcher.embed(Modality.TEXT, [torch.tensor([5, 0])]), 5)
            return failed.value, again, batcher.stats.pending
        finally:
            await batcher.close()

    return asyncio.run(main())


def test_a_failing_result_hook_fails_its_batch_and_the_collector_lives_on():
    calls = []

    def hook(modality, size, seconds):
        calls.append(size)
        if len(calls) == 1:
            raise RuntimeError("metrics broke")

    err, again, pending = _first_fails_then_works(
        lambda: MicroBatcher(_ones, max_batch=4, max_wait_s=0.0, on_batch=hook), [torch.tensor([1, 0])])
    assert not isinstance(err, asyncio.TimeoutError) and "metrics broke" in str(err)
    assert again.shape == (1, 2) and pending == 0


def test_a_model_returning_the_wrong_row_count_fails_its_batch_and_the_collector_lives_on():
    def short(modality, x):
        return torch.ones(max(1, x.shape[0] - 1), 2)  # one row missing whenever there are two or more items

    err, again, _ = _first_fails_then_works(lambda: MicroBatcher(short, max_batch=4, max_wait_s=0.05),
                                            [torch.tensor([1, 0]), torch.tensor([2, 0])])
    assert not isinstance(err, asyncio.TimeoutError)
    assert "1 row" in str(err) and "2 items" in str(err)
    assert again.shape == (1, 2)


def test_a_failed_stack_fails_its_batch_and_the_collector_lives_on():
    # Same shape, so one queue; a real tensor and a meta tensor cannot be stacked.
    err, again, _ = _first_fails_then_works(lambda: MicroBatcher(_ones, max_batch=4, max_wait_s=0.05),
                                            [torch.tensor([1, 0]), torch.empty(2, device="meta")])
    assert not isinstance(err, asyncio.TimeoutError)
    assert again.shape == (1, 2)
