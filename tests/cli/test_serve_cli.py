"""`bindspace serve`: arguments reach the app, errors are one line, and a real server starts and stops cleanly."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi", reason="the [serve] extra is not installed")
pytest.importorskip("uvicorn", reason="the [serve] extra is not installed")

from bindspace.cli import main  # noqa: E402
from testkit import embedded, packed_towers, post_json, spawned_serve  # noqa: E402


@pytest.fixture
def captured(monkeypatch):
    """Replaces uvicorn.run: records the app and options instead of serving."""
    import uvicorn

    calls = {}

    def fake_run(app, **kwargs):
        calls["app"] = app
        calls.update(kwargs)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.delenv("BINDSPACE_API_KEY", raising=False)
    monkeypatch.delenv("BINDSPACE_READ_KEY", raising=False)
    return calls


def tiny_args(tiny_pth) -> list[str]:
    return ["--model", "imagebind_tiny_test", "--checkpoint", str(tiny_pth)]


def test_serve_wires_model_limits_and_address(captured, tiny_pth, tiny_model):
    from fastapi.testclient import TestClient

    from bindspace.preprocess import text

    code = main(["serve", *tiny_args(tiny_pth), "--port", "8123", "--max-batch", "4", "--max-items", "3"])
    assert code == 0
    assert captured["host"] == "127.0.0.1" and captured["port"] == 8123
    with TestClient(captured["app"]) as client:
        body = client.post("/v1/embed", json={"modality": "text", "texts": ["A dog.", "A car"]}).json()
        with torch.inference_mode():
            expected = tiny_model.encode("text", text(["A dog.", "A car"])).numpy()
        np.testing.assert_allclose(body["vectors"], expected, atol=1e-5)
        assert client.post("/v1/embed", json={"modality": "text", "texts": ["a"] * 4}).status_code == 413
        assert client.delete("/v1/items/x").status_code == 403  # no key configured: writes refused
        assert client.post("/v1/search", json={"parts": [{"text": "a"}]}).status_code == 409  # no --db
    assert captured["app"].state.bindspace.batcher.max_batch == 4


def test_api_key_comes_from_the_environment(captured, tiny_pth, monkeypatch):
    from fastapi.testclient import TestClient

    monkeypatch.setenv("BINDSPACE_API_KEY", "from-env")
    assert main(["serve", *tiny_args(tiny_pth)]) == 0
    with TestClient(captured["app"]) as client:
        assert client.delete("/v1/items/x").status_code == 401
        # Authorised, then refused for the real reason: this server has no index.
        assert client.delete("/v1/items/x", headers={"X-API-Key": "from-env"}).status_code == 409


def test_keys_roots_and_imu_layout_reach_the_app(captured, tiny_pth, tmp_path, monkeypatch, capsys):
    from fastapi.testclient import TestClient

    monkeypatch.setenv("BINDSPACE_READ_KEY", "reader")
    code = main(["serve", *tiny_args(tiny_pth), "--api-key", "writer", "--index-root", str(tmp_path),
                 "--weaviate-imu", "transpose", "--max-inflight-mb", "100"])
    assert code == 0
    state = captured["app"].state.bindspace
    assert (state.read_key, state.api_key, state.index_roots) == ("reader", "writer", (str(tmp_path),))
    assert state.imu_layout == "transpose"
    with TestClient(captured["app"]) as client:
        assert client.post("/v1/embed", json={"modality": "text", "texts": ["a"]}).status_code == 401
        ok = client.post("/v1/embed", json={"modality": "text", "texts": ["a"]}, headers={"X-API-Key": "reader"})
        assert ok.status_code == 200
    err = capsys.readouterr().err
    assert "reads (embed, search, items, media, vectorize, embeddings, info) need the read or write key" in err
    assert "columns as channels" in err


def test_start_up_message_says_exactly_what_is_protected(captured, tiny_pth, capsys):
    assert main(["serve", *tiny_args(tiny_pth), "--api-key", "writer"]) == 0
    err = capsys.readouterr().err
    # A write key alone protects writes only: the message must not suggest the server is protected.
    assert "are OPEN to anyone who can connect" in err
    assert "writes need the write key (no index: nothing to write)" in err
    assert "/healthz, /readyz, /metrics and /.well-known/* are open" in err


def test_missing_index_root_is_a_one_line_error(captured, tiny_pth, tmp_path, capsys):
    code = main(["serve", *tiny_args(tiny_pth), "--index-root", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert code == 1 and "app" not in captured and "--index-root" in err and err.count("\n") == 1


@pytest.mark.parametrize("args", [["--port", "70000"], ["--max-batch", "0"], ["--timeout", "-1"]])
def test_bad_options_are_usage_errors(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", *args])
    assert exit_info.value.code == 2


def test_missing_index_is_a_one_line_error(captured, tiny_pth, tmp_path, capsys):
    code = main(["serve", *tiny_args(tiny_pth), "--db", str(tmp_path / "no-such-index")])
    err = capsys.readouterr().err
    assert code == 1 and "app" not in captured
    assert err.startswith("bindspace serve: error:") and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.slow
def test_real_server_starts_answers_and_stops(tiny_model_dir):
    with spawned_serve(["--checkpoint", str(tiny_model_dir), "--threads", "1"], ready_s=90) as server:
        assert post_json(server.base + "/v1/embed", {"modality": "text", "texts": ["hello"]}, timeout=10)["dim"] == 24
    text = server.output
    assert server.returncode == 0, text[-2000:]
    assert "Traceback" not in text and f"127.0.0.1:{server.port}" in text
    assert "are OPEN to anyone who can connect" in text and "writes are disabled" in text


@pytest.mark.parametrize("option", [None, "--plain-weights", "--free-batches"])
def test_cpu_towers_but_text_run_on_packed_weights_unless_asked_not_to(captured, tiny_pth, tiny_model, media_dir,
                                                                        capsys, option):
    import base64

    from fastapi.testclient import TestClient

    from bindspace.layers.packed_linear import mkl_packing_available

    assert main(["serve", *tiny_args(tiny_pth), *([option] if option else [])]) == 0
    packed = packed_towers(captured["app"].state.bindspace.model)
    expect_packed = mkl_packing_available() and option is None
    assert packed == ({"vision", "audio", "depth", "thermal", "imu"} if expect_packed else set())
    assert ("run on weights packed once" in capsys.readouterr().err) is expect_packed
    image = (media_dir / "image_1.jpg").read_bytes()
    with TestClient(captured["app"]) as client:
        body = client.post("/v1/embed", json={"modality": "image", "items": [base64.b64encode(image).decode()]}).json()
    np.testing.assert_allclose(body["vectors"][0], embedded(tiny_model, "image", media_dir / "image_1.jpg"),
                               atol=1e-5)
