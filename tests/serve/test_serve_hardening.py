"""Hardening: readiness after a failed warm-up, the read key, bounded job records, bodies in flight, offline /docs."""
from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from serve_helpers import CountingModel, item_id

from bindspace.serve import Limits, create_app
from bindspace.serve.jobs import JobTable


class BrokenTextModel(CountingModel):
    """A model whose text tower fails (say, weights that do not fit): the warm-up must notice."""

    def __call__(self, inputs):
        if "text" in inputs:
            raise RuntimeError("text tower exploded")
        return super().__call__(inputs)


def test_failed_warm_up_keeps_the_server_not_ready_with_the_reason(make_client, tiny_model):
    client = make_client(model=BrokenTextModel(tiny_model))
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "not ready" and "text tower exploded" in ready.json()["reason"]
    assert client.get("/.well-known/ready").status_code == 503
    assert client.head("/.well-known/ready").status_code == 503
    assert client.get("/healthz").status_code == 200  # alive, just not ready


def test_warm_up_runs_every_tower_at_its_own_size(make_client, small_model):
    counting = CountingModel(small_model)
    client = make_client(model=counting)
    assert client.get("/readyz").status_code == 200
    assert sorted(tower for tower, _, _ in counting.calls) == sorted(str(m) for m in small_model.modalities)


def test_read_key_protects_reads_but_not_probes(make_client, memory_store):
    client = make_client(store=memory_store, api_key="writer", read_key="reader")
    item = f"/v1/items/{item_id('image_1.jpg')}"
    reads = [("post", "/v1/embed", {"modality": "text", "texts": ["a"]}),
             ("post", "/v1/search", {"parts": [{"text": "a"}]}),
             ("post", "/vectorize", {"texts": ["a"]}),
             ("post", "/v1/embeddings", {"model": "m", "input": "a"}),
             ("get", item, None), ("get", item + "/media", None), ("get", item + "/thumbnail", None),
             ("get", "/v1/info", None), ("get", "/meta", None), ("get", "/v1/models", None)]
    for method, path, body in reads:
        call = getattr(client, method)
        kwargs = {"json": body} if body is not None else {}
        assert call(path, **kwargs).status_code == 401, path
        assert call(path, headers={"X-API-Key": "wrong"}, **kwargs).status_code == 401, path
        assert call(path, headers={"Authorization": "Bearer reader"}, **kwargs).status_code == 200, path
        assert call(path, headers={"X-API-Key": "writer"}, **kwargs).status_code == 200, path  # writes imply reads
    for probe in ("/healthz", "/readyz", "/.well-known/live", "/.well-known/ready", "/"):
        assert client.get(probe).status_code in (200, 204), probe
    # The read key does not grant writes.
    assert client.delete(item, headers={"X-API-Key": "reader"}).status_code == 401


def test_without_a_read_key_reads_stay_open(make_client, memory_store):
    client = make_client(store=memory_store, api_key="writer")
    assert client.post("/v1/search", json={"parts": [{"text": "a"}]}).status_code == 200


def test_job_table_is_bounded_and_expires_finished_jobs():
    now = [0.0]
    table = JobTable(max_jobs=2, ttl_s=60.0, clock=lambda: now[0])
    first = table.start(["a"])["id"]
    with pytest.raises(Exception, match="already running"):
        table.start(["b"])
    table.finish(first, status="done")
    now[0] = 10.0
    second = table.start(["b"])["id"]
    table.finish(second, status="done")
    third = table.start(["c"])["id"]  # the table is full: the oldest finished job goes
    assert table.get(first) is None and table.get(second) is not None and len(table) == 2
    table.finish(third, status="failed")
    now[0] = 75.0  # 65 s after `second` ended, 65 s after `third` ended
    assert table.get(second) is None and table.get(third) is None and len(table) == 0


def test_job_records_are_bounded_through_the_api(make_client, tmp_path, served_media):
    import time

    from bindspace.index import open_store

    pytest.importorskip("lancedb", reason="the [index] extra (lancedb) is not installed")
    folder = tmp_path / "media"
    folder.mkdir()
    (folder / "image_1.jpg").write_bytes((served_media / "image_1.jpg").read_bytes())
    client = make_client(store=open_store(tmp_path / "db", create=True), api_key="k", index_roots=[str(tmp_path)],
                         max_jobs=1)
    headers = {"X-API-Key": "k"}
    ids = []
    for _ in range(2):
        job = client.post("/v1/index", json={"paths": [str(folder)]}, headers=headers)
        assert job.status_code == 202, job.text
        ids.append(job.json()["id"])
        deadline = time.monotonic() + 60
        while client.get(f"/v1/index/{ids[-1]}", headers=headers).json()["status"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert client.get(f"/v1/index/{ids[0]}", headers=headers).status_code == 404  # dropped for the newer one
    assert client.get(f"/v1/index/{ids[1]}", headers=headers).json()["status"] == "done"


def test_bodies_in_flight_are_capped(tiny_model):
    app = create_app(tiny_model, limits=Limits(max_body_bytes=1000, max_inflight_bytes=1500))
    body = b'{"modality": "text", "texts": ["' + b"x" * 900 + b'"]}'  # 936 bytes

    async def main():
        release = asyncio.Event()
        sent_half = asyncio.Event()

        async def slow_body():
            yield body[:800]
            sent_half.set()  # runs when the server asks for more: the first 800 bytes are counted by then
            await release.wait()  # the first request holds 800 bytes until we let it finish
            yield body[800:]

        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                first = asyncio.ensure_future(client.post("/v1/embed", content=slow_body()))
                await sent_half.wait()
                refused = await client.post("/v1/embed", content=body)
                release.set()
                done = await first
                again = await client.post("/v1/embed", content=body)
        return refused, done, again

    refused, done, again = asyncio.run(main())
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert refused.json()["type"] == "busy"
    assert done.status_code == 200 and again.status_code == 200
    limiter: Any = app.middleware_stack  # every reservation was given back
    while limiter is not None and type(limiter).__name__ != "BodyLimitMiddleware":
        limiter = getattr(limiter, "app", None)
    assert limiter is not None and limiter.inflight == 0


def test_docs_work_offline(make_client):
    client = make_client()
    for page in ("/docs", "/redoc"):
        response = client.get(page)
        assert response.status_code == 200
        assert "cdn" not in response.text.lower() and "https://" not in response.text, page
        assert "unsafe-eval" not in response.headers["content-security-policy"]
    for asset in ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css",
                  "/docs-assets/redoc.standalone.js"):
        assert client.get(asset).status_code == 200, asset
    assert client.get("/openapi.json").json()["paths"]["/v1/embeddings"]


def test_an_app_that_is_gone_lets_its_model_go(tiny_state):
    """FastAPI caches endpoint functions process-wide: a route closing over the app's state kept every model
    (2.5 GB for ViT-H) of every app a process ever made, until a benchmark making six apps ran out of memory."""
    import gc
    import weakref

    from fastapi.testclient import TestClient

    import bindspace

    model = bindspace.create_model("imagebind_tiny_test", modalities=["text"])
    model.load_state_dict({k: v for k, v in tiny_state.items() if k.split(".")[1] == "text"})
    alive = weakref.ref(model)
    app = create_app(model)
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200 and client.get("/metrics").status_code == 200
        assert client.post("/v1/embed", json={"modality": "text", "texts": ["a dog"]}).status_code == 200
    del model, app, client
    gc.collect()
    assert alive() is None
