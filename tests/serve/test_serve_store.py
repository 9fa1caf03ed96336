"""The server on the real LanceDB store (bindspace.index.store), and `bindspace serve --db` picking the model."""
from __future__ import annotations

import base64
import time
from urllib.parse import quote

import pytest
from serve_helpers import MEDIA, CountingModel

from testkit import lance_index_of

pytest.importorskip("lancedb", reason="the [index] extra (lancedb) is not installed")

from bindspace.index import open_store  # noqa: E402


@pytest.fixture
def lance_index(tmp_path, served_media, media_vectors, tiny_pth):
    """A real index of the fixture media, bound to the tiny weights in `tiny_pth`; returns (dir, store)."""
    db = tmp_path / "index"
    store = lance_index_of(db, {served_media / name: kind for name, kind in MEDIA.items()},
                           {served_media / name: vector.numpy() for name, vector in media_vectors.items()}, tiny_pth)
    return db, store


def _id_of(store, name: str) -> str:
    return next(item.id for items in store.items_by_uri().values() for item in items if item.uri.endswith(name))


def test_search_media_and_delete_on_the_real_store(make_client, lance_index, served_media, tiny_pth):
    from bindspace.index.store import model_fingerprint

    _, store = lance_index
    client = make_client(store=store, api_key="k")
    data = base64.b64encode((served_media / "thermal_1.png").read_bytes()).decode()
    hits = client.post("/v1/search", json={"parts": [{"modality": "thermal", "data": data}], "k": 3}).json()["hits"]
    assert hits[0]["name"] == "thermal_1.png" and hits[0]["score"] > 0.999
    vision = client.post("/v1/search", json={"parts": [{"text": "a car"}], "k": 10, "modality": "vision"}).json()
    assert {h["kind"] for h in vision["hits"]} == {"image", "video"} and len(vision["hits"]) == 4
    assert client.post("/v1/search", json={"parts": [{"text": "a"}], "modality": "smell"}).status_code == 400

    video_id = _id_of(store, "video_1.mp4")
    media = client.get(f"/v1/items/{video_id}/media")
    assert media.content == (served_media / "video_1.mp4").read_bytes()
    assert media.headers["content-type"] == "video/mp4"
    assert client.get(f"/v1/items/{video_id}/thumbnail").headers["content-type"] == "image/jpeg"
    assert client.get("/v1/info").json()["indexed_items"] == len(MEDIA)
    for hostile in ("x' OR '1'='1", "' OR id LIKE '%", "../" + video_id):
        assert client.get(f"/v1/items/{quote(hostile, safe='')}/media").status_code == 404

    assert client.delete(f"/v1/items/{video_id}", headers={"X-API-Key": "k"}).json() == {"deleted": 1}
    assert client.get(f"/v1/items/{video_id}").status_code == 404
    assert store.count() == len(MEDIA) - 1
    assert model_fingerprint(checkpoint=tiny_pth) == store.model_info().checksum


def test_cli_serves_the_model_recorded_in_the_index(lance_index, monkeypatch, served_media):
    import uvicorn
    from fastapi.testclient import TestClient

    from bindspace.cli import main

    db, _ = lance_index
    captured: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: captured.update(app=app, **kw))
    assert main(["serve", "--db", str(db)]) == 0  # no --model/--checkpoint: the index's own
    with TestClient(captured["app"]) as client:
        data = base64.b64encode((served_media / "image_3.png").read_bytes()).decode()
        hits = client.post("/v1/search", json={"parts": [{"modality": "image", "data": data}]}).json()["hits"]
        assert hits[0]["name"] == "image_3.png" and hits[0]["score"] > 0.999


def test_cli_refuses_other_weights_for_the_index(lance_index, tmp_path, tiny_state, capsys, monkeypatch):
    import torch
    import uvicorn

    from bindspace.cli import main

    db, _ = lance_index
    other = tmp_path / "other.pth"
    torch.save({k: v + 0.5 if v.is_floating_point() else v for k, v in tiny_state.items()}, other)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: pytest.fail("must not serve"))
    code = main(["serve", "--db", str(db), "--model", "imagebind_tiny_test", "--checkpoint", str(other)])
    err = capsys.readouterr().err
    assert code == 1 and "fingerprint" in err and err.count("\n") == 1


def _wait_for_job(client, job_id: str, headers: dict) -> dict:
    deadline = time.monotonic() + 60
    while (state := client.get(f"/v1/index/{job_id}", headers=headers).json())["status"] == "running":
        assert time.monotonic() < deadline, "indexing job did not finish"
        time.sleep(0.05)
    return state


def test_index_endpoint_runs_a_background_job_on_the_model_thread(make_client, tmp_path, served_media, tiny_model):
    store = open_store(tmp_path / "jobindex", create=True)
    counting = CountingModel(tiny_model)
    client = make_client(store=store, model=counting, api_key="k", index_roots=[str(tmp_path)])
    folder = tmp_path / "to_index"
    folder.mkdir()
    for name in ("image_1.jpg", "audio_3.wav"):
        (folder / name).write_bytes((served_media / name).read_bytes())
    (folder / "broken.png").write_bytes(b"not an image")
    headers = {"Authorization": "Bearer k"}
    counting.reset()
    job = client.post("/v1/index", json={"paths": [str(folder)]}, headers=headers)
    assert job.status_code == 202, job.text
    state = _wait_for_job(client, job.json()["id"], headers)
    assert state["status"] == "done", state
    assert state["added"] == 2 and state["skipped"] == 1 and "broken.png" in state["skipped_files"][0]
    # The job's model calls ran on the server's one model thread, never on the job's own thread.
    assert {tower for tower, _, _ in counting.calls} >= {"vision", "audio"}
    assert {thread.split("_")[0] for _, _, thread in counting.calls} == {"bindspace-model"}
    hits = client.post("/v1/search", json={"parts": [{"text": "x"}], "k": 10}).json()["hits"]
    assert sorted(h["name"] for h in hits) == ["audio_3.wav", "image_1.jpg"]


def test_index_paths_must_be_under_an_index_root(make_client, tmp_path, served_media):
    store = open_store(tmp_path / "rootindex", create=True)
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    for folder in (allowed, outside):
        folder.mkdir()
        (folder / "image_1.jpg").write_bytes((served_media / "image_1.jpg").read_bytes())
    (allowed / "escape").symlink_to(outside)
    client = make_client(store=store, api_key="k", index_roots=[str(allowed)])
    headers = {"X-API-Key": "k"}
    for path in (outside, allowed / "escape", allowed / ".." / "outside"):
        response = client.post("/v1/index", json={"paths": [str(path)]}, headers=headers)
        assert response.status_code == 403 and "--index-root" in response.json()["error"], (path, response.text)
    job = client.post("/v1/index", json={"paths": [str(allowed)]}, headers=headers)
    assert job.status_code == 202, job.text
    assert _wait_for_job(client, job.json()["id"], headers)["added"] == 1


def test_without_roots_only_folders_already_indexed(make_client, lance_index, served_media, tmp_path):
    _, store = lance_index
    client = make_client(store=store, api_key="k")
    headers = {"X-API-Key": "k"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "new.jpg").write_bytes((served_media / "image_1.jpg").read_bytes())
    for path in (elsewhere, served_media.parent, "/"):
        response = client.post("/v1/index", json={"paths": [str(path)]}, headers=headers)
        assert response.status_code == 403 and "already in the index" in response.json()["error"], path
    job = client.post("/v1/index", json={"paths": [str(served_media)]}, headers=headers)
    assert job.status_code == 202, job.text
    assert _wait_for_job(client, job.json()["id"], headers)["status"] == "done"
