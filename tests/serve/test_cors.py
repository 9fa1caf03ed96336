"""CORS (`serve --cors-origin`): off by default, exact preflights and answers, reads only unless --cors-writes.

Requests are raw HTTP against a real uvicorn server, with the headers a browser sends: clip-front's
POST /knn-service is `JSON.stringify(...)` without a Content-Type, so the browser declares
`text/plain;charset=UTF-8` and sends no preflight; a page posting `Content-Type: application/json`
(or sending a key) gets the preflight first, `Access-Control-Request-Headers` lower-cased and sorted.
"""
from __future__ import annotations

import json

import httpx
import pytest
from serve_helpers import item_id, live_server

from bindspace.serve.cors import CorsError, CorsPolicy, cors_policy, parse_origin

FRONT = "http://localhost:3005"  # where `clip-retrieval-front 3005` serves clip-front
OTHER = "https://evil.example"
# clip-front's text search body, as its JSON.stringify writes it (undefined fields dropped).
KNN = {"text": "a dog", "modality": "image", "num_images": 40, "indice_name": "holiday", "num_result_ids": 3000,
       "use_mclip": False, "deduplicate": True, "use_safety_model": True, "use_violence_detector": True,
       "aesthetic_score": "", "aesthetic_weight": "0.5"}


def preflight(base: str, path: str, origin: str, method: str = "POST", headers: str | None = "content-type",
              **extra: str) -> httpx.Response:
    """The OPTIONS request a browser sends before a non-simple cross-origin request."""
    sent = {"Origin": origin, "Access-Control-Request-Method": method, **extra}
    if headers is not None:
        sent["Access-Control-Request-Headers"] = headers
    return httpx.options(f"{base}{path}", headers=sent)


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name.lower().startswith("access-control-")}


def clip_front_post(base: str, origin: str, body: dict) -> httpx.Response:
    """POST /knn-service exactly as clip-front's fetch sends it from a page of `origin`."""
    return httpx.post(f"{base}/knn-service", content=json.dumps(body), timeout=60,
                      headers={"Origin": origin, "Content-Type": "text/plain;charset=UTF-8"})


def serve(tiny_model, store=None, cors: CorsPolicy | None = None, **options):
    from bindspace.serve import create_app
    from bindspace.serve.clip_back import router

    app = create_app(tiny_model, store, routers=[router], extras={"index_name": "holiday"}, cors=cors, **options)
    return live_server(app)


@pytest.fixture
def front_server(tiny_model, memory_store):
    with serve(tiny_model, memory_store, CorsPolicy((FRONT,))) as base:
        yield base


def test_off_by_default(tiny_model, memory_store):
    with serve(tiny_model, memory_store) as base:
        answer = preflight(base, "/knn-service", FRONT)
        assert answer.status_code == 405 and cors_headers(answer) == {}
        hits = clip_front_post(base, FRONT, KNN)
        assert hits.status_code == 200 and cors_headers(hits) == {}  # the browser hides this answer from the page


def test_clip_front_request_from_the_allowed_origin(front_server, memory_store):
    hits = clip_front_post(front_server, FRONT, KNN)
    assert hits.status_code == 200, hits.text
    assert hits.headers["access-control-allow-origin"] == FRONT
    assert "Origin" in hits.headers["vary"]  # caches must not hand this answer to another origin
    assert "access-control-allow-credentials" not in hits.headers
    assert {hit["id"] for hit in hits.json()} == set(memory_store.items)  # num_result_ids 3000: searched as 1000
    indices = httpx.get(f"{front_server}/indices-list", headers={"Origin": FRONT})
    assert indices.json() == ["holiday"] and indices.headers["access-control-allow-origin"] == FRONT
    meta = httpx.post(f"{front_server}/metadata", content=json.dumps({"ids": [item_id("image_1.jpg")],
                                                                      "indice_name": "holiday"}),
                      headers={"Origin": FRONT, "Content-Type": "text/plain;charset=UTF-8"})
    assert meta.json()[0]["metadata"]["caption"] == "image_1.jpg"
    assert meta.headers["access-control-allow-origin"] == FRONT


def test_preflight_of_a_json_post(front_server):
    answer = preflight(front_server, "/knn-service", FRONT, headers="content-type")
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == FRONT
    assert "POST" in [m.strip() for m in answer.headers["access-control-allow-methods"].split(",")]
    assert "content-type" in answer.headers["access-control-allow-headers"].lower()
    assert int(answer.headers["access-control-max-age"]) == 600
    assert "access-control-allow-credentials" not in answer.headers
    # A page that sends a key (a server with a read key) asks for the key headers too.
    keyed = preflight(front_server, "/v1/embeddings", FRONT, headers="authorization,content-type")
    assert keyed.status_code == 200 and "authorization" in keyed.headers["access-control-allow-headers"].lower()
    actual = httpx.post(f"{front_server}/knn-service", json={"text": "a dog", "num_images": 2},
                        headers={"Origin": FRONT})
    assert actual.status_code == 200 and actual.headers["access-control-allow-origin"] == FRONT


def test_disallowed_origin_gets_no_cors_headers(front_server):
    answer = preflight(front_server, "/knn-service", OTHER)
    assert answer.status_code == 400 and "access-control-allow-origin" not in answer.headers
    hits = clip_front_post(front_server, OTHER, KNN)
    assert hits.status_code == 200 and cors_headers(hits) == {}
    # Near misses of the allowed origin are other origins.
    for origin in ("http://localhost:3006", "https://localhost:3005", "http://127.0.0.1:3005", "null"):
        assert cors_headers(clip_front_post(front_server, origin, KNN)) == {}, origin


def test_methods_and_headers_outside_the_policy_fail_the_preflight(front_server):
    assert preflight(front_server, "/v1/items/x", FRONT, method="DELETE", headers=None).status_code == 400
    assert preflight(front_server, "/knn-service", FRONT, headers="x-custom").status_code == 400


def test_errors_before_the_route_carry_cors_headers(tiny_model, memory_store):
    from bindspace.serve import Limits

    with serve(tiny_model, memory_store, CorsPolicy((FRONT,)), limits=Limits(max_body_bytes=1000)) as base:
        answer = clip_front_post(base, FRONT, {**KNN, "text": "x" * 2000})
        assert answer.status_code == 413 and answer.headers["access-control-allow-origin"] == FRONT
        assert "message" in answer.json()  # the page reads clip-back's error shape, not a CORS failure


def test_private_network_preflight_only_for_named_origins(front_server, tiny_model):
    named = preflight(front_server, "/knn-service", FRONT, **{"Access-Control-Request-Private-Network": "true"})
    assert named.status_code == 200 and named.headers["access-control-allow-private-network"] == "true"
    with serve(tiny_model, None, CorsPolicy(("*",))) as base:
        anyone = preflight(base, "/v1/embeddings", FRONT, **{"Access-Control-Request-Private-Network": "true"})
        assert anyone.status_code == 400 and "access-control-allow-private-network" not in anyone.headers
        plain = httpx.post(f"{base}/v1/embeddings", json={"model": "m", "input": "a dog"}, headers={"Origin": OTHER})
        assert plain.status_code == 200 and plain.headers["access-control-allow-origin"] == "*"


def test_pages_read_but_do_not_write(tiny_model, memory_store):
    key = {"Authorization": "Bearer writer"}
    target = item_id("image_1.jpg")
    with serve(tiny_model, memory_store, CorsPolicy((FRONT,)), api_key="writer") as base:
        refused = httpx.delete(f"{base}/v1/items/{target}", headers={**key, "Origin": FRONT})
        assert refused.status_code == 403 and "--cors-writes" in refused.json()["error"]
        assert refused.headers["access-control-allow-origin"] == FRONT  # the page can read why
        assert target in memory_store.items
        index = httpx.post(f"{base}/v1/index", json={"paths": ["/tmp"]}, headers={**key, "Origin": FRONT})
        assert index.status_code == 403 and "--cors-writes" in index.json()["error"]
        # The same key without a page's Origin (curl, scripts) still writes.
        assert httpx.delete(f"{base}/v1/items/{target}", headers=key).status_code == 200
        assert target not in memory_store.items


def test_cors_writes_let_named_pages_write_with_the_key(tiny_model, memory_store):
    target = item_id("image_2.png")
    policy = cors_policy([FRONT], read_key=None, api_key="writer", writes=True)
    with serve(tiny_model, memory_store, policy, api_key="writer") as base:
        answer = preflight(base, f"/v1/items/{target}", FRONT, method="DELETE", headers="authorization")
        assert answer.status_code == 200 and "DELETE" in answer.headers["access-control-allow-methods"]
        without_key = httpx.delete(f"{base}/v1/items/{target}", headers={"Origin": FRONT})
        assert without_key.status_code == 401
        deleted = httpx.delete(f"{base}/v1/items/{target}", headers={"Origin": FRONT,
                                                                     "Authorization": "Bearer writer"})
        assert deleted.status_code == 200 and deleted.headers["access-control-allow-origin"] == FRONT


@pytest.mark.parametrize("text,want", [
    ("http://localhost:3005", "http://localhost:3005"), ("HTTP://LocalHost:3005/", "http://localhost:3005"),
    ("https://rom1504.github.io", "https://rom1504.github.io"), ("https://x.org:443", "https://x.org"),
    ("http://x.org:80", "http://x.org"), ("http://[::1]:8080", "http://[::1]:8080"), ("*", "*")])
def test_origins_are_written_as_browsers_send_them(text, want):
    assert parse_origin(text) == want


@pytest.mark.parametrize("text", ["localhost:3005", "http://x.org/clip-retrieval/", "null", "ftp://x.org",
                                  "http://user@x.org", "http://x.org:99999", "http://"])
def test_malformed_origins_are_refused(text):
    with pytest.raises(CorsError, match="--cors-origin"):
        parse_origin(text)


def test_unsafe_combinations_are_refused():
    assert cors_policy([], read_key="r", api_key="w") is None
    assert cors_policy(["*"], read_key=None, api_key=None) == CorsPolicy(("*",))
    assert cors_policy([FRONT, FRONT + "/"], read_key="r", api_key="w") == CorsPolicy((FRONT,))
    refused = [(["*"], "r", None, False, "read or write key"), (["*"], None, "w", False, "read or write key"),
               (["*", FRONT], None, None, False, "alone"), ([FRONT], None, None, True, "no write key"),
               ([], None, "w", True, "needs --cors-origin"), (["*"], None, "w", True, "read or write key")]
    for origins, read_key, api_key, writes, needle in refused:
        with pytest.raises(CorsError, match=needle):
            cors_policy(origins, read_key=read_key, api_key=api_key, writes=writes)


def test_cli_refuses_star_with_a_key_before_loading_the_model(capsys, monkeypatch):
    from bindspace.cli import main

    monkeypatch.setenv("BINDSPACE_READ_KEY", "reader")
    code = main(["serve", "--port", "0", "--cors-origin", "*", "--model", "imagebind_tiny_test"])
    err = capsys.readouterr().err
    assert code == 2 and "--cors-origin '*'" in err and len(err.strip().splitlines()) == 1
    assert main(["serve", "--port", "0", "--cors-origin", "localhost:3005"]) == 2
    assert "expected http(s)://HOST[:PORT]" in capsys.readouterr().err


def test_cli_serves_with_the_policy(tiny_pth, monkeypatch, capsys):
    """`bindspace serve --cors-origin ... --cors-writes` builds the app with the policy and says so."""
    import uvicorn

    from bindspace.cli import main

    captured: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: captured.update(app=app))
    monkeypatch.setenv("BINDSPACE_API_KEY", "writer")
    monkeypatch.delenv("BINDSPACE_READ_KEY", raising=False)
    assert main(["serve", "--port", "0", "--checkpoint", str(tiny_pth), "--model", "imagebind_tiny_test",
                 "--cors-origin", "HTTP://LocalHost:1235/", "https://rom1504.github.io", "--cors-writes"]) == 0
    assert "cross-origin: pages of http://localhost:1235, https://rom1504.github.io may read and write" in \
        capsys.readouterr().err
    with live_server(captured["app"]) as base:
        answer = preflight(base, "/v1/items/x", "http://localhost:1235", method="DELETE", headers="authorization")
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "http://localhost:1235"
        assert "access-control-allow-origin" not in preflight(base, "/v2/embed", OTHER).headers
