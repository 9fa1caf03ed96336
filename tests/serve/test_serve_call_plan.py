"""How served items are cut into model calls: no padding tax on CPUs, text length buckets, bit-stable vectors.

An item's vector must not depend on what it is batched with (Weaviate re-vectorizes objects
and users compare vectors with ==), yet a lone request should cost one item, not `max_batch`.
"""
from __future__ import annotations

import asyncio
import base64
import threading

import numpy as np
import pytest
import torch
from serve_helpers import CountingModel, live_server

from bindspace.layers.packed_linear import mkl_packing_available
from bindspace.modality import Modality
from bindspace.model.contract import text_run_length
from bindspace.model.imagebind import ImageBindModel
from bindspace.model.presets import get_config
from bindspace.preprocess.tokenizer import tokenize
from bindspace.serve.pipeline import (
    bucketed_ids,
    call_size,
    device_type_of,
    fixed_size_calls,
    pack_served_towers,
    packs_weights,
)
from testkit import packed_towers

LONG_TEXT = " ".join(f"word{i}" for i in range(60))  # runs at the full 77 positions


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---------------------------------------------------------------- pure functions, every branch


@pytest.mark.parametrize("modality,shape,device,want", [
    (Modality.VISION, (3, 224, 224), "cpu", 1),  # an image is 257 token rows of ViT-H by itself
    (Modality.VISION, (3, 2, 224, 224), "cpu", 1),
    (Modality.VISION, (15, 3, 2, 224, 224), "cpu", 1),
    (Modality.AUDIO, (3, 1, 128, 204), "cpu", 1),
    (Modality.DEPTH, (1, 224, 224), "cpu", 1),
    (Modality.THERMAL, (1, 224, 224), "cpu", 1),
    (Modality.IMU, (6, 2000), "cpu", 1),
    (Modality.TEXT, (16,), "cpu", 8),  # a few rows per text: batching pays, so calls are padded
    (Modality.TEXT, (77,), "cuda", 8),
    (Modality.VISION, (3, 224, 224), "cuda", 8),  # a GPU's cost hardly grows with the batch: pad
    (Modality.AUDIO, (3, 1, 128, 204), "cuda", 2),  # max_batch rows, counting clips
    (Modality.VISION, (15, 3, 2, 224, 224), "cuda", 1),  # a video is a batch of 15 clips by itself
    (Modality.IMU, (6, 2000), "mps", 8),
])
def test_call_size_is_a_function_of_tower_shape_and_device(modality, shape, device, want):
    assert call_size(modality, shape, 8, device) == want


@pytest.mark.parametrize("modality,device,available,want", [
    (Modality.VISION, "cpu", True, True),  # a lone image pays the weight packing a batch shares: pack once
    (Modality.AUDIO, "cpu", True, True),
    (Modality.IMU, "cpu", True, True),
    (Modality.TEXT, "cpu", True, False),  # calls of many lengths, batched anyway
    (Modality.VISION, "cuda", True, False),
    (Modality.VISION, "cpu", False, False),  # no MKL (ARM, macOS builds)
])
def test_packs_weights_is_a_function_of_tower_device_and_build(modality, device, available, want):
    assert packs_weights(modality, device, available) is want


def test_pack_served_towers_packs_what_packs_weights_picks(tiny_state):
    import bindspace

    assert pack_served_towers(object(), True) == []  # a model that cannot pack (ONNX, a stub) is left alone
    model = bindspace.create_model("imagebind_tiny_test", modalities=["vision", "text"])
    assert pack_served_towers(model, False) == []
    if mkl_packing_available():
        half = ImageBindModel(get_config("imagebind_tiny_test"), ["vision"]).to_precision(torch.bfloat16)
        assert pack_served_towers(half, True) == [] and packed_towers(half) == set()  # MKL packs fp32 only
        assert pack_served_towers(model, True) == [Modality.VISION]
        assert packed_towers(model) == {"vision"}


def test_text_run_length_rounds_up_to_a_multiple_of_eight_within_the_ids():
    assert [text_run_length(n, 77) for n in (1, 2, 8, 9, 16, 17, 72, 73, 77)] == [8, 8, 8, 16, 16, 24, 72, 77, 77]
    assert text_run_length(5, 4) == 4  # never longer than the ids given


def test_bucketed_ids_cut_each_text_to_its_own_bucket():
    short, eight, long = tokenize(["a dog", "one two three four five six", LONG_TEXT])  # (3, 77)
    assert int(short.argmax()) == 3 and bucketed_ids(short).shape == (8,)
    assert int(eight.argmax()) == 7 and bucketed_ids(eight).shape == (8,)  # end-of-text on the last place
    assert bucketed_ids(long).shape == (77,)
    assert torch.equal(bucketed_ids(short), short[:8])


def test_device_type_of_reads_the_parameters(tiny_model):
    assert device_type_of(tiny_model) == "cpu"
    assert device_type_of(torch.nn.Linear(2, 2, device="meta")) == "meta"
    assert device_type_of(object()) == "cpu"  # no parameters (a stub or a remote model): the CPU plan


def test_padded_calls_on_a_gpu_plan_keep_rows_independent_of_their_batch(small_model):
    """The GPU branch (padded to max_batch), run here on CPU tensors: every call has the same size."""
    from bindspace.serve.app import forward_one

    sizes: list[int] = []

    def forward(modality, x):
        sizes.append(int(x.shape[0]))
        return forward_one(small_model, modality, x)

    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    padded = fixed_size_calls(forward, max_batch=4, device_type="cuda")
    with torch.inference_mode():
        alone = padded(Modality.VISION, images[:1])
        company = padded(Modality.VISION, images[[3, 4, 0]])
    assert sizes == [4, 4] and torch.equal(alone[0], company[2])


# ---------------------------------------------------------------- through the server, tiny preset


def _embed_concurrently(app, bodies: list[dict], model: CountingModel) -> list:
    """Post the bodies at once; the gated model holds its first call until every item is queued."""
    import httpx

    async def main():
        async with app.router.lifespan_context(app):
            model.reset()  # forget the warm-up calls
            gate = threading.Event()
            model.gate = gate
            batcher = app.state.bindspace.batcher
            items = sum(len(b.get("texts", b.get("items", []))) for b in bodies)
            submitted = [0]
            embed = batcher.embed

            async def counted(modality, tensors):
                submitted[0] += len(tensors)
                return await embed(modality, tensors)

            batcher.embed = counted  # every item handed to the batcher is counted before it queues
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
                posts = [asyncio.ensure_future(client.post("/v1/embed", json=b)) for b in bodies]
                deadline = asyncio.get_running_loop().time() + 30
                while not (model.calls and submitted[0] == items):
                    assert asyncio.get_running_loop().time() < deadline, "requests never queued"
                    await asyncio.sleep(0.001)
                gate.set()
                answers = await asyncio.gather(*posts)
            model.gate = None
            del batcher.embed
            return answers

    return asyncio.run(main())


def test_a_lone_image_costs_one_item_on_a_cpu(make_client, tiny_model, served_media):
    counting = CountingModel(tiny_model)
    client = make_client(model=counting)  # the defaults: fixed batches of 8
    counting.reset()
    image = b64((served_media / "image_1.jpg").read_bytes())
    response = client.post("/v1/embed", json={"modality": "image", "items": [image]})
    assert response.status_code == 200
    assert counting.batch_sizes("vision") == [1]  # was [8]: seven padding copies of the image
    three = client.post("/v1/embed", json={"modality": "image", "items": [image] * 3})
    assert counting.batch_sizes("vision") == [1, 1, 1, 1]
    assert three.json()["vectors"] == response.json()["vectors"] * 3


def _image_alone_and_in_company(model, served_media) -> tuple[list[float], list[float], set[int]]:
    """One image's vector alone, the same image's among other clients' images, and the vision calls' sizes."""
    from bindspace.serve import create_app

    counting = CountingModel(model)
    app = create_app(counting)
    names = ["image_1.jpg", "image_2.png", "image_3.png"]
    images = [b64((served_media / n).read_bytes()) for n in names]
    alone = _embed_concurrently(app, [{"modality": "image", "items": [images[0]]}], counting)
    crowd = _embed_concurrently(app, [{"modality": "image", "items": images[1:]}] * 3
                                + [{"modality": "image", "items": [images[2], images[0]]}], counting)
    assert all(r.status_code == 200 for r in alone + crowd)
    return alone[0].json()["vectors"][0], crowd[-1].json()["vectors"][1], set(counting.batch_sizes("vision"))


def test_images_alone_and_in_company_are_bit_identical(tiny_model, served_media):
    alone, in_company, sizes = _image_alone_and_in_company(tiny_model, served_media)
    assert in_company == alone and sizes == {1}


@pytest.mark.skipif(not mkl_packing_available(), reason="this torch build has no MKL packed GEMM")
def test_images_on_packed_weights_are_bit_identical_alone_and_in_company(tiny_state, tiny_model, served_media):
    """As `bindspace serve` runs them: a lone image on packed weights, the same bits in any company."""
    import bindspace

    model = bindspace.create_model("imagebind_tiny_test", modalities=["vision"])
    model.load_state_dict({k: v for k, v in tiny_state.items() if k.split(".")[1] == "vision"})
    assert pack_served_towers(model.eval(), True) == [Modality.VISION]
    alone, in_company, sizes = _image_alone_and_in_company(model, served_media)
    assert in_company == alone and sizes == {1}
    plain, _, _ = _image_alone_and_in_company(tiny_model, served_media)
    np.testing.assert_allclose(alone, plain, atol=1e-5)


def test_a_long_text_batchmate_does_not_change_a_short_texts_bits(tiny_model):
    """Before length buckets every call ran at its longest text's length: a long batchmate moved the last bits."""
    from bindspace.serve import create_app

    counting = CountingModel(tiny_model)
    app = create_app(counting)
    alone = _embed_concurrently(app, [{"modality": "text", "texts": ["A dog."]}], counting)
    assert {int(x.shape[-1]) for x in _text_inputs(counting)} == {8}
    together = _embed_concurrently(app, [{"modality": "text", "texts": ["A dog.", LONG_TEXT]},
                                         {"modality": "text", "texts": [LONG_TEXT + " more", "A dog."]}], counting)
    assert all(r.status_code == 200 for r in alone + together)
    want = alone[0].json()["vectors"][0]
    assert together[0].json()["vectors"][0] == want and together[1].json()["vectors"][1] == want
    assert together[0].json()["vectors"][1] != want  # the long text has its own vector, in its own call
    assert sorted({int(x.shape[-1]) for x in _text_inputs(counting)}) == [8, 77]


def _text_inputs(model: CountingModel) -> list[torch.Tensor]:
    return model.text_inputs


@pytest.fixture(autouse=True)
def _record_text_inputs(monkeypatch):
    """CountingModel records sizes only; here the text calls' id tensors are kept too (to see their lengths)."""
    original = CountingModel._record

    def record(self, tower, x):
        if str(tower) == "text":
            self.__dict__.setdefault("text_inputs", []).append(x)
        original(self, tower, x)

    def reset(self):
        self.calls.clear()
        self.__dict__["text_inputs"] = []

    monkeypatch.setattr(CountingModel, "_record", record)
    monkeypatch.setattr(CountingModel, "reset", reset)


def test_weaviate_vectors_keep_their_bits_next_to_a_long_text(tiny_model, served_media):
    """Over real HTTP as Weaviate's Go client sends it (no Content-Type), with uvicorn."""
    from test_serve_weaviate import vectorize

    from bindspace.serve import create_app

    image = b64((served_media / "image_1.jpg").read_bytes())
    with live_server(create_app(tiny_model)) as base:
        alone = vectorize(base, {"texts": ["A dog."], "images": [image]})
        mixed = vectorize(base, {"texts": [LONG_TEXT, "A dog."],
                                 "images": [b64((served_media / "image_2.png").read_bytes()), image]})
    assert mixed["textVectors"][1] == alone["textVectors"][0]
    assert mixed["imageVectors"][1] == alone["imageVectors"][0]
    assert not np.allclose(mixed["textVectors"][0], alone["textVectors"][0])


@pytest.mark.skipif(not mkl_packing_available(), reason="this torch build has no MKL packed GEMM")
@pytest.mark.parametrize("model_name", ["small_model", "demo_model"])
def test_packed_towers_of_a_non_default_geometry_serve_the_plain_vectors(request, model_name, served_media):
    """32-px / 16-px images, 400-sample IMU: each tower packs for its own sequence length, not ViT-H's 257."""
    import copy

    from fastapi.testclient import TestClient

    from bindspace.kinds import tower_of
    from bindspace.serve import create_app

    plain = request.getfixturevalue(model_name)
    packed = copy.deepcopy(plain)
    towers = pack_served_towers(packed, True)
    assert set(towers) == set(plain.modalities) - {Modality.TEXT}
    files = {"image": "image_1.jpg", "audio": "audio_1.wav", "depth": "depth_1.png", "thermal": "thermal_1.png",
             "imu": "imu_1.npy", "video": "video_1.mp4"}
    vectors = {}
    for name, model in (("plain", plain), ("packed", packed)):
        with TestClient(create_app(model)) as client:
            for kind, file in files.items():
                if tower_of(kind) not in model.modalities:
                    continue
                body = {"modality": kind, "items": [b64((served_media / file).read_bytes())]}
                response = client.post("/v1/embed", json=body)
                assert response.status_code == 200, response.text
                vectors[name, kind] = response.json()["vectors"][0]
    kinds = {kind for _, kind in vectors}
    assert "image" in kinds and "video" in kinds
    for kind in kinds:
        np.testing.assert_allclose(vectors["packed", kind], vectors["plain", kind], atol=1e-5, err_msg=kind)
