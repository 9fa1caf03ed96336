"""The Weaviate multi2vec-bind drop-in, spoken to as Weaviate's Go client does, answering the container's vectors.

Requests go over a real socket to uvicorn on 127.0.0.1 with Go's headers and no Content-Type.
Expected vectors are computed here from the model's towers with the container's documented
semantics (forward outputs: vision unit norm, text x logit scale, audio x20, depth x5,
thermal x10, IMU x5; grayscale depth/thermal; the IMU reshape), not through the server's code.
"""
from __future__ import annotations

import base64
import http.client
import io
import json
import socket
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
from PIL import Image
from serve_helpers import live_server

from bindspace import preprocess
from bindspace.preprocess.tokenizer import tokenize

FIELDS = {"texts": "textVectors", "images": "imageVectors", "audio": "audioVectors", "video": "videoVectors",
          "imu": "imuVectors", "thermal": "thermalVectors", "depth": "depthVectors"}
TEXTS = ["A dog.", "A car", "a bird singing at dawn"]
GRAY_MEAN, GRAY_STD = 0.48145466, 0.26862954


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def go_request(base: str, method: str, path: str, body: bytes | None = None,
               user_agent: str = "Go-http-client/1.1") -> tuple[int, dict[str, str], bytes]:
    """One request with exactly the headers Go's net/http sends (Host, User-Agent, Content-Length, Accept-Encoding)."""
    url = urlparse(base)
    assert url.hostname is not None and url.port is not None
    lines = [f"{method} {path} HTTP/1.1", f"Host: {url.hostname}:{url.port}", f"User-Agent: {user_agent}"]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    if method != "HEAD":
        lines.append("Accept-Encoding: gzip")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")
    assert b"content-type" not in raw.lower()  # what Weaviate's client really sends: no Content-Type at all
    with socket.create_connection((url.hostname, url.port), timeout=120) as sock:
        sock.sendall(raw)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def vectorize(base: str, body: dict) -> dict:
    status, _, data = go_request(base, "POST", "/vectorize", json.dumps(body).encode())
    assert status == 200, data[:500]
    return json.loads(data)


# ---------------------------------------------------------------- the container's semantics, computed here


def gray_input(data: bytes, size: int) -> torch.Tensor:
    """Any image -> 8-bit grey, shorter side to `size` (bicubic), centre crop, /255, normalised: (1, 1, size, size)."""
    img = Image.open(io.BytesIO(data)).convert("L")
    w, h = img.size
    scale = size / min(w, h)
    new_w, new_h = (size, int(h * scale)) if w <= h else (int(w * scale), size)
    img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = round((new_w - size) / 2), round((new_h - size) / 2)
    pixels = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    return torch.from_numpy((pixels - GRAY_MEAN) / GRAY_STD)[None, None]


def imu_csv(rows: np.ndarray) -> bytes:
    header = "timestamp_ignored,accl_x,accl_y,accl_z,gyro_x,gyro_y"  # any names: the container skips the row
    return (header + "\n" + "\n".join(",".join(f"{v:.6f}" for v in row) for row in rows) + "\n").encode()


def imu_input(rows: np.ndarray, length: int, transpose: bool = False) -> torch.Tensor:
    """(T, 6) rows -> (1, 6, length): the container's reshape (or the correct transpose), zero-padded or cut."""
    values = rows.astype(np.float32)
    channels = values.T if transpose else values.reshape(6, -1)
    out = np.zeros((6, length), np.float32)
    n = min(length, channels.shape[1])
    out[:, :n] = channels[:, :n]
    return torch.from_numpy(out)[None]


def expected_vectors(model, media, rows: np.ndarray, transpose: bool = False) -> dict[str, np.ndarray]:
    """The container's answer for the request `request_body` builds, from the model's towers."""
    vision, imu = model.tower_config("vision"), model.tower_config("imu")
    size, frames = vision.input_size[-1], vision.patch_size[0]
    scale = {m: float(model.logit_scale(m)) for m in ("text", "audio", "depth", "thermal", "imu")}
    jpeg = (media / "image_1.jpg").read_bytes()
    with torch.inference_mode():
        return {
            "textVectors": (model.encode("text", tokenize(TEXTS)) * scale["text"]).numpy(),
            "imageVectors": torch.cat([model.encode("vision", preprocess.load_image(str(media / n), size=size)[None])
                                       for n in ("image_1.jpg", "image_3.png")]).numpy(),
            # Clip embeddings are unit vectors; the container averages them without renormalising.
            "audioVectors": (model.encode("audio", preprocess.load_audio(str(media / "audio_3.wav"))).mean(0)
                             * scale["audio"])[None].numpy(),
            "videoVectors": model.encode("vision", preprocess.load_video(
                str(media / "video_1.mp4"), size=size, frames_per_clip=frames)).mean(0)[None].numpy(),
            "depthVectors": (model.encode("depth", gray_input(jpeg, model.tower_config("depth").input_size[-1]))
                             * scale["depth"]).numpy(),
            "thermalVectors": (model.encode("thermal", gray_input(jpeg, model.tower_config("thermal").input_size[-1]))
                               * scale["thermal"]).numpy(),
            "imuVectors": (model.encode("imu", imu_input(rows, imu.input_size[-1], transpose)) * scale["imu"]).numpy(),
        }


def request_body(media, rows: np.ndarray) -> dict:
    jpeg = b64((media / "image_1.jpg").read_bytes())  # the container's samples feed RGB JPEGs to depth/thermal
    return {
        "texts": TEXTS,
        "images": [b64((media / "image_1.jpg").read_bytes()), b64((media / "image_3.png").read_bytes())],
        "audio": [b64((media / "audio_3.wav").read_bytes())],
        "video": [b64((media / "video_1.mp4").read_bytes())],
        "imu": [b64(imu_csv(rows))],
        "thermal": [jpeg],
        "depth": [jpeg],
    }


def assert_same_vectors(got: list, want: np.ndarray, field: str) -> None:
    got_array = np.asarray(got, dtype=np.float64)
    assert got_array.shape == want.shape, field
    for g, w in zip(got_array, want.astype(np.float64)):
        cosine = float(g @ w / (np.linalg.norm(g) * np.linalg.norm(w)))
        assert cosine >= 0.9999, (field, cosine)
        assert abs(np.linalg.norm(g) / np.linalg.norm(w) - 1) <= 1e-3, (field, np.linalg.norm(g), np.linalg.norm(w))


@pytest.fixture(scope="module")
def imu_rows() -> np.ndarray:
    """500 samples: padded for a 2000-sample tower, cut for a 400-sample one."""
    return np.random.default_rng(7).normal(size=(500, 6)).astype(np.float32)


# ---------------------------------------------------------------- tests


# The 224-px tiny preset spends seconds on the video's 15 clips; the 32-px model runs in quick runs too.
@pytest.mark.parametrize("model_fixture", [pytest.param("tiny_model", marks=pytest.mark.slow), "small_model"])
def test_go_client_request_gets_the_containers_vectors(request, model_fixture, served_media, imu_rows):
    from bindspace.serve import create_app

    model = request.getfixturevalue(model_fixture)
    with live_server(create_app(model)) as base:
        answer = vectorize(base, request_body(served_media, imu_rows))
    assert set(answer) == set(FIELDS.values())
    want = expected_vectors(model, served_media, imu_rows)
    for field, vectors in want.items():
        assert_same_vectors(answer[field], vectors, field)
    norms = {field: np.linalg.norm(answer[field], axis=1) for field in FIELDS.values()}
    # Not unit vectors: the scales are part of what Weaviate stores.
    np.testing.assert_allclose(norms["imageVectors"], 1.0, atol=1e-5)
    np.testing.assert_allclose(norms["textVectors"], float(model.logit_scale("text")), rtol=1e-5)
    np.testing.assert_allclose(norms["thermalVectors"], 10.0, rtol=1e-5)
    np.testing.assert_allclose(norms["depthVectors"], 5.0, rtol=1e-5)
    np.testing.assert_allclose(norms["imuVectors"], 5.0, rtol=1e-5)
    assert norms["audioVectors"][0] <= 20.0 + 1e-4 and norms["videoVectors"][0] < 1.0  # means of scaled unit vectors


def test_imu_transpose_option_gives_the_correct_channel_layout(tiny_model, served_media, imu_rows):
    from bindspace.serve import create_app

    body = {"imu": [b64(imu_csv(imu_rows))]}
    with live_server(create_app(tiny_model, imu_layout="transpose")) as base:
        fixed = vectorize(base, body)["imuVectors"]
    length = tiny_model.tower_config("imu").input_size[-1]
    with torch.inference_mode():
        right = (tiny_model.encode("imu", imu_input(imu_rows, length, transpose=True)) * 5.0).numpy()
        quirk = (tiny_model.encode("imu", imu_input(imu_rows, length)) * 5.0).numpy()
    assert_same_vectors(fixed, right, "imuVectors")
    assert float(np.dot(fixed[0], quirk[0]) / 25.0) < 0.999  # the two layouts really differ


def test_smoke_probes_meta_and_errors_over_the_wire(tiny_model):
    """What the container's smoke tests and health checks do: probes (GET and wget's HEAD), /meta, /vectorize."""
    from bindspace.serve import create_app

    with live_server(create_app(tiny_model)) as base:
        for path in ("/.well-known/live", "/.well-known/ready"):
            assert go_request(base, "GET", path)[0] == 204
            assert go_request(base, "HEAD", path, user_agent="Wget")[0] == 204
        status, headers, data = go_request(base, "GET", "/meta")
        assert status == 200 and headers["content-type"] == "application/json"
        assert json.loads(data)["model"] == "imagebind_tiny_test"
        status, _, data = go_request(base, "POST", "/vectorize", json.dumps({"texts": ["hello"]}).encode())
        answer = json.loads(data)
        assert status == 200 and len(answer["textVectors"]) == 1 and answer["imageVectors"] == []
        status, _, data = go_request(base, "POST", "/vectorize", json.dumps({"images": [b64(b"nope")]}).encode())
        assert status == 400 and json.loads(data)["error"].startswith("images[0]:")
        status, _, data = go_request(base, "POST", "/vectorize", b"{not json")
        assert status == 422 and "not valid JSON" in json.loads(data)["error"]
        status, _, data = go_request(base, "POST", "/vectorize",
                                     json.dumps({"imu": [b64(b"h\n1,2,3\n")]}).encode())
        assert status == 400 and "imu[0]" in json.loads(data)["error"]


def test_every_json_endpoint_accepts_a_body_without_content_type(tiny_model, memory_store):
    from bindspace.serve import create_app

    with live_server(create_app(tiny_model, memory_store)) as base:
        for path, body in (("/v1/embed", {"modality": "text", "texts": ["a"]}),
                           ("/v1/search", {"parts": [{"text": "a"}], "k": 1}),
                           ("/v1/embeddings", {"model": "m", "input": "a"}),
                           ("/vectorize", {"texts": ["a"]})):
            status, _, data = go_request(base, "POST", path, json.dumps(body).encode())
            assert status == 200, (path, data[:300])


def test_not_ready_before_startup(tiny_model):
    from fastapi.testclient import TestClient

    from bindspace.serve import create_app

    client = TestClient(create_app(tiny_model))  # no `with`: the lifespan (warm-up) has not run
    assert client.get("/.well-known/ready").status_code == 503
    assert client.get("/readyz").status_code == 503
    assert client.get("/.well-known/live").status_code == 204


def test_vectorize_item_limit(make_client):
    response = make_client(max_items=2).post("/vectorize", json={"texts": ["a", "b"], "images": ["aGk="]})
    assert response.status_code == 413


@pytest.mark.parametrize("kind,name", [("image", "image_2.png"), ("video", "video_1.mp4")])
def test_v1_embed_uses_the_models_own_image_size(make_client, small_model, served_media, kind, name):
    """A 32-px model: /v1/embed must preprocess at 32 px (a hard-coded 224 answers 400 on every image)."""
    client = make_client(model=small_model)
    response = client.post("/v1/embed", json={"modality": kind, "items": [b64((served_media / name).read_bytes())]})
    assert response.status_code == 200, response.text
    vision = small_model.tower_config("vision")
    loader = preprocess.load_image if kind == "image" else preprocess.load_video
    options = {"size": vision.input_size[-1]} | ({"frames_per_clip": vision.patch_size[0]} if kind == "video" else {})
    with torch.inference_mode():
        want = small_model.encode("vision", loader(str(served_media / name), **options)[None])[0].numpy()
    np.testing.assert_allclose(response.json()["vectors"][0], want, atol=1e-5)
    assert response.json()["dim"] == 16


# ---------------------------------------------------------------- bit-stable vectors, whatever the batching


def test_fixed_size_calls_make_every_row_independent_of_its_batch(tiny_model):
    """Kernels differ by batch size (on this CPU a batch of 1 or 2 differs from 3+ in the last bits)."""
    from bindspace.modality import Modality
    from bindspace.serve.app import forward_one
    from bindspace.serve.pipeline import call_size, fixed_size_calls

    sizes: list[int] = []

    def forward(modality, x):
        sizes.append(int(x.shape[0]))
        return forward_one(tiny_model, modality, x)

    stable = fixed_size_calls(forward, max_batch=4, device_type="cpu")  # text is padded on CPUs too
    tokens = tokenize([f"text number {i}" for i in range(11)])  # (11, 77), all in one length bucket
    with torch.inference_mode():
        alone = stable(Modality.TEXT, tokens[:1])
        others = stable(Modality.TEXT, torch.cat([tokens[5:7], tokens[:1]]))  # at another place, other company
        many = stable(Modality.TEXT, tokens)  # 11 items: calls of 4, 4 and 3 padded to 4
    assert torch.equal(alone[0], others[2]) and torch.equal(alone[0], many[0])
    assert torch.equal(others[0], many[5]) and many.shape == (11, 24)
    assert set(sizes) == {4}
    assert call_size(Modality.TEXT, (77,), 32, "cpu") == 32  # every branch of call_size: test_serve_call_plan.py


def test_vectors_are_bit_identical_across_requests_and_concurrent_batching(tiny_model, served_media):
    """Weaviate re-vectorizes objects: an item's vector must not change with what else is asked at the same time."""
    from concurrent.futures import ThreadPoolExecutor

    from bindspace.serve import create_app

    image = b64((served_media / "image_1.jpg").read_bytes())
    others = [b64((served_media / name).read_bytes()) for name in ("image_2.png", "image_3.png")]
    with live_server(create_app(tiny_model)) as base:
        alone = vectorize(base, {"texts": ["A dog."], "images": [image]})
        mixed = vectorize(base, {"texts": ["A car", "A dog.", "A bird"], "images": [*others, image]})
        assert mixed["imageVectors"][2] == alone["imageVectors"][0]
        assert mixed["textVectors"][1] == alone["textVectors"][0]
        bodies = [{"texts": ["A dog."] + [f"filler {i} {j}" for j in range(i % 4)], "images": [image] + others[:i % 3]}
                  for i in range(12)]
        with ThreadPoolExecutor(12) as pool:  # whatever the micro-batcher makes of these, the bits stay
            answers = list(pool.map(lambda body: vectorize(base, body), bodies))
    for answer in answers:
        assert answer["imageVectors"][0] == alone["imageVectors"][0]
        assert answer["textVectors"][0] == alone["textVectors"][0]


# ---------------------------------------------------------------- items given as file paths


@pytest.fixture
def path_client(tiny_model, tmp_path, monkeypatch, served_media):
    """A client of a server started in tmp_path that allows reading files under tmp_path/allowed."""
    from fastapi.testclient import TestClient

    from bindspace.serve import create_app
    from bindspace.serve.weaviate import PATHS_OPTION

    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "imu.csv").write_bytes(imu_csv(np.random.default_rng(3).normal(size=(300, 6))))
    (allowed / "image.jpg").write_bytes((served_media / "image_1.jpg").read_bytes())
    (tmp_path / "secret.csv").write_bytes(imu_csv(np.zeros((10, 6))))
    (allowed / "link.csv").symlink_to(tmp_path / "secret.csv")
    (allowed / "folder.csv").mkdir()
    monkeypatch.chdir(tmp_path)
    with TestClient(create_app(tiny_model, extras={PATHS_OPTION: ["allowed"]})) as client:
        yield client


def test_path_items_are_refused_unless_the_server_allows_their_folder(tiny_model):
    from fastapi.testclient import TestClient

    from bindspace.serve import create_app

    with TestClient(create_app(tiny_model)) as client:
        response = client.post("/vectorize", json={"imu": ["test/IMUSamples/imu_1.csv"]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("imu[0]: ") and "--weaviate-paths" in error


def test_path_items_inside_allowed_folders_read_like_base64(path_client, tmp_path):
    by_path = path_client.post("/vectorize", json={"imu": ["allowed/imu.csv", str(tmp_path / "allowed" / "imu.csv")],
                                                   "images": ["allowed/image.jpg"]})
    assert by_path.status_code == 200, by_path.text
    data = (tmp_path / "allowed" / "imu.csv").read_bytes()
    image = (tmp_path / "allowed" / "image.jpg").read_bytes()
    wrapped = base64.encodebytes(image).decode()  # MIME style: a line break every 76 characters
    by_value = path_client.post("/vectorize", json={"imu": [b64(data)], "images": [wrapped]}).json()
    assert by_path.json()["imuVectors"] == by_value["imuVectors"] * 2
    assert by_path.json()["imageVectors"] == by_value["imageVectors"]


@pytest.mark.parametrize("item,problem", [
    ("allowed/../secret.csv", "outside the folders allowed by --weaviate-paths"),
    ("allowed/link.csv", "outside the folders allowed by --weaviate-paths"),  # a symlink out of the folder
    ("/etc/passwd", "outside the folders allowed by --weaviate-paths"),
    ("/no/such/file.csv", "outside the folders allowed by --weaviate-paths"),  # existence is not disclosed
    ("allowed/missing.csv", "no such file"),
    ("allowed/folder.csv", "not a regular file"),
    ("allowed/im\x00u.csv", "not valid base64, nor a usable file path"),
])
def test_path_items_outside_or_unreadable_are_one_line_400s(path_client, item, problem):
    response = path_client.post("/vectorize", json={"texts": ["a"], "imu": [item]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("imu[0]: ") and problem in error and "\n" not in error


def test_cli_wires_weaviate_paths_and_free_batches(monkeypatch, tmp_path, tiny_pth, capsys):
    import uvicorn

    from bindspace.cli import main
    from bindspace.serve.weaviate import PATHS_OPTION

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: apps.append(app))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "samples").mkdir()
    model = ["--model", "imagebind_tiny_test", "--checkpoint", str(tiny_pth)]
    assert main(["serve", *model, "--weaviate-paths", "samples"]) == 0
    state = apps[0].state.bindspace
    assert state.extras[PATHS_OPTION] == [str(tmp_path.resolve() / "samples")]
    assert state.limits.fixed_batches and state.limits.max_batch == 8
    assert "/vectorize may read files under samples" in capsys.readouterr().err
    assert main(["serve", *model, "--free-batches"]) == 0
    assert not apps[1].state.bindspace.limits.fixed_batches and apps[1].state.bindspace.extras[PATHS_OPTION] == []
    capsys.readouterr()
    assert main(["serve", *model, "--weaviate-paths", "missing"]) == 1
    err = capsys.readouterr().err
    assert "--weaviate-paths" in err and "not a folder" in err and err.count("\n") == 1


def test_video_and_audio_vectors_are_bit_identical_whatever_they_are_batched_with(small_model, served_media):
    """The smoke test compares a video's vector across two requests with `==`.

    Their clips make these items batches of 15 and 3 rows already, so on the development CPU
    free batching passes this too; it guards the per-item video calls on other kernels.
    """
    from concurrent.futures import ThreadPoolExecutor

    from bindspace.serve import create_app

    video = b64((served_media / "video_1.mp4").read_bytes())
    sounds = [b64((served_media / name).read_bytes()) for name in ("audio_3.wav", "audio_1.wav")]
    with live_server(create_app(small_model)) as base:
        alone = vectorize(base, {"video": [video], "audio": sounds[:1]})
        bodies = [{"texts": ["A dog."] * (i % 3), "video": [video] * (1 + i % 2), "audio": sounds[:1] + sounds[1:] * i}
                  for i in range(6)]
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda body: vectorize(base, body), bodies))
    for answer in answers:
        assert all(vector == alone["videoVectors"][0] for vector in answer["videoVectors"])
        assert answer["audioVectors"][0] == alone["audioVectors"][0]
