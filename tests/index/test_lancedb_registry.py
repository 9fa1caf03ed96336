"""The "bindspace" LanceDB embedding function, through LanceDB's own API end to end.

A demo-geometry model directory (16-px images, 64-d space, vision/text/audio towers, seeded
weights); rows are files inserted by path, queries are texts and files. Expected vectors come
from the library (create_model + loader at the tower's geometry + encode), not from the function.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

lancedb = pytest.importorskip("lancedb")

from lancedb.embeddings import get_registry  # noqa: E402
from lancedb.pydantic import LanceModel, Vector  # noqa: E402

import bindspace.index.lancedb_registry  # noqa: E402, F401  (registers "bindspace")
from bindspace.errors import InputError  # noqa: E402
from testkit import embedded, embedded_text  # noqa: E402

FILES = {"image_1.jpg": "image", "image_2.png": "image", "audio_1.wav": "audio", "audio_3.wav": "audio",
         "video_1.mp4": "video"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from bindspace.model.checkpoint import save_model_dir
    from bindspace.model.imagebind import ImageBindModel
    from bindspace.train.demo import demo_config

    torch.manual_seed(0)
    model = ImageBindModel(demo_config())
    return save_model_dir(model.state_dict(), demo_config(), tmp_path_factory.mktemp("lancedb") / "demo-model")


@pytest.fixture(scope="module")
def model(model_dir):
    from bindspace.model import create_model

    return create_model(checkpoint=model_dir).eval()


@pytest.fixture(scope="module")
def media(tmp_path_factory, media_dir) -> Path:
    out = tmp_path_factory.mktemp("lancedb_media")
    for name in FILES:
        shutil.copy(media_dir / name, out / name)
    return out


def test_rows_and_queries_embedded_automatically(tmp_path, model_dir, model, media):
    func = get_registry().get("bindspace").create(model=str(model_dir))

    class Media(LanceModel):
        path: str = func.SourceField()
        vector: Vector(func.ndims()) = func.VectorField()  # type: ignore[valid-type]

    assert func.ndims() == 64
    db = lancedb.connect(tmp_path / "db")
    table = db.create_table("media", schema=Media)
    table.add([{"path": str(media / name)} for name in FILES])
    rows = {Path(r["path"]).name: np.asarray(r["vector"]) for r in table.to_arrow().to_pylist()}
    for name, kind in FILES.items():
        np.testing.assert_allclose(rows[name], embedded(model, kind, media / name), atol=1e-5)

    text = embedded_text(model, "a dog")
    by_text = [Path(m.path).name for m in table.search("a dog").limit(len(FILES)).to_pydantic(Media)]
    assert by_text == sorted(FILES, key=lambda name: -float(np.dot(rows[name], text)))
    # Search by an audio file: the query is embedded as audio, so the file finds itself first.
    by_audio = table.search(str(media / "audio_3.wav")).limit(2).to_pydantic(Media)
    assert Path(by_audio[0].path).name == "audio_3.wav"
    audio = embedded(model, "audio", media / "audio_3.wav")
    second = max((n for n in FILES if n != "audio_3.wav"), key=lambda n: float(np.dot(rows[n], audio)))
    assert Path(by_audio[1].path).name == second

    # A reopened table rebuilds the function from the table's metadata and keeps embedding new rows.
    again = lancedb.connect(tmp_path / "db").open_table("media")
    again.add([{"path": str(media / "image_2.png")}])
    assert again.count_rows() == len(FILES) + 1
    top = again.search(str(media / "image_2.png")).limit(2).to_list()
    assert [Path(r["path"]).name for r in top] == ["image_2.png", "image_2.png"]


def test_a_caption_column_searched_with_an_image(tmp_path, model_dir, model, media):
    func = get_registry().get("bindspace").create(model=str(model_dir), kind="text")

    class Caption(LanceModel):
        text: str = func.SourceField()
        vector: Vector(func.ndims()) = func.VectorField()  # type: ignore[valid-type]

    table = lancedb.connect(tmp_path / "db").create_table("captions", schema=Caption)
    captions = ["a red square", "a dog barking", "rain on a roof"]
    table.add([{"text": c} for c in captions])
    image = embedded(model, "image", media / "image_1.jpg")
    hits = [c.text for c in table.search(str(media / "image_1.jpg")).limit(3).to_pydantic(Caption)]
    assert hits == sorted(captions, key=lambda c: -float(np.dot(embedded_text(model, c), image)))


def test_bad_rows_fail_at_once_with_one_line(tmp_path, model_dir, media):
    func = get_registry().get("bindspace").create(model=str(model_dir))

    class Media(LanceModel):
        path: str = func.SourceField()
        vector: Vector(func.ndims()) = func.VectorField()  # type: ignore[valid-type]

    table = lancedb.connect(tmp_path / "db").create_table("media", schema=Media)
    broken = media / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    notes = media / "notes.pdf"
    notes.write_bytes(b"%PDF-1.4 not media")
    for bad, needle in ((broken, "broken.wav"), (notes, "not a media file"), (media, "is a directory")):
        # No retries with backoff (LanceDB's default for remote APIs): our one-line InputError at once.
        with pytest.raises(InputError) as err:
            func.compute_source_embeddings_with_retry([str(bad)])
        assert needle in str(err.value) and "\n" not in str(err.value)
        # table.add passes it through Arrow, which wraps it in a RuntimeError that still starts with it.
        with pytest.raises((InputError, RuntimeError)) as wrapped:
            table.add([{"path": str(bad)}])
        assert str(err.value) in str(wrapped.value)
    assert table.count_rows() == 0


def test_image_bytes_column(tmp_path, model_dir, model, media):
    func = get_registry().get("bindspace").create(model=str(model_dir))

    class Blob(LanceModel):
        image: bytes = func.SourceField()
        vector: Vector(func.ndims()) = func.VectorField()  # type: ignore[valid-type]

    table = lancedb.connect(tmp_path / "db").create_table("blobs", schema=Blob)
    table.add([{"image": (media / "image_2.png").read_bytes()}])
    stored = np.asarray(table.to_arrow().to_pylist()[0]["vector"])
    np.testing.assert_allclose(stored, embedded(model, "image", media / "image_2.png"), atol=1e-5)
