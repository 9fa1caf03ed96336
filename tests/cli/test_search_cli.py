"""`bindspace search` end to end: duplicates first, multi-part queries, filters, JSON, model checks, errors."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("lancedb")

from bindspace.cli import main  # noqa: E402
from bindspace.embedding import Embedder  # noqa: E402

TINY = "imagebind_tiny_test"


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, media_dir, tiny_pth):
    """An index of the fixture media (audio in 2 s segments) built with the tiny checkpoint."""
    root = tmp_path_factory.mktemp("search") / "media"
    root.mkdir()
    for name in ("image_1.jpg", "image_2.png", "image_3.png", "audio_1.wav", "audio_3.wav", "depth_1.png",
                 "thermal_1.png", "imu_1.npy"):
        shutil.copy(media_dir / name, root / name)
    db = root.parent / "db"
    code = main(["index", str(root), "--db", str(db), "--model", TINY, "--checkpoint", str(tiny_pth),
                 "--segment-seconds", "2", "--workers", "0", "--no-progress"])
    assert code == 0
    return root, db


def search_json(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main(["search", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_exact_duplicate_is_first(indexed, capsys):
    root, db = indexed
    for flag, name in (("--image", "image_2.png"), ("--depth", "depth_1.png"), ("--thermal", "thermal_1.png"),
                       ("--imu", "imu_1.npy")):
        out = search_json(capsys, "--db", str(db), flag, str(root / name), "-k", "3")
        top = out["results"][0]
        assert top["uri"] == str(root / name) and top["score"] == pytest.approx(1.0, abs=1e-4)
        assert [r["rank"] for r in out["results"]] == [1, 2, 3]
        assert out["results"][0]["score"] >= out["results"][1]["score"] >= out["results"][2]["score"]


def test_table_output(indexed, capsys):
    root, db = indexed
    capsys.readouterr()
    assert main(["search", "--db", str(db), "--image", str(root / "image_1.jpg"), "-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["#", "score", "modality", "segment", "path"]
    assert lines[1].split() == ["1", "1.0000", "image", str(root / "image_1.jpg")]
    assert len(lines) == 3


def test_multi_part_query_is_the_weighted_sum(indexed, capsys, tiny_model):
    root, db = indexed
    e = Embedder(tiny_model, progress=False)
    text = e.embed("text", ["a dog barking"]).vectors[0]
    image = e.embed("image", [root / "image_3.png"]).vectors[0]
    q = 0.5 * text + 2.0 * image
    q /= np.linalg.norm(q)
    out = search_json(capsys, "--db", str(db), "a dog barking", "--image", str(root / "image_3.png"),
                      "--weight", "0.5", "--weight", "2", "-k", "20")
    assert [p["kind"] for p in out["query"]] == ["text", "image"]
    scores = {r["uri"]: r["score"] for r in out["results"] if r["segment"] is None}
    for name in ("image_1.jpg", "image_2.png", "image_3.png"):
        expected = float(q @ e.embed("image", [root / name]).vectors[0])
        assert scores[str(root / name)] == pytest.approx(expected, abs=1e-4)


def test_filters(indexed, capsys):
    root, db = indexed
    audio = search_json(capsys, "--db", str(db), "rain", "--modality", "audio", "-k", "50")["results"]
    # audio_1.wav is 5 s: three 2 s segments; audio_3.wav is 1.2 s: one
    assert len(audio) == 4 and {r["modality"] for r in audio} == {"audio"}
    segments = sorted(tuple(r["segment"]) for r in audio if r["uri"].endswith("audio_1.wav"))
    assert segments == [(0.0, 2.0), (2.0, 4.0), (4.0, 5.0)]
    where = search_json(capsys, "--db", str(db), "rain", "--where", "uri LIKE '%image_%'", "-k", "50")["results"]
    assert sorted(r["uri"].rsplit("/", 1)[1] for r in where) == ["image_1.jpg", "image_2.png", "image_3.png"]
    vision = search_json(capsys, "--db", str(db), "rain", "--modality", "vision", "-k", "50")["results"]
    assert len(vision) == 3


def test_usage_and_input_errors(indexed, capsys, tmp_path):
    root, db = indexed
    capsys.readouterr()
    assert main(["search", "--db", str(db)]) == 2
    assert "give a query" in capsys.readouterr().err
    assert main(["search", "--db", str(db), "x", "--weight", "1", "--weight", "2"]) == 2
    assert main(["search", "--db", str(db), "--image", str(tmp_path / "none.jpg")]) == 1
    assert "none.jpg: no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    assert main(["search", "--db", str(db), "--image", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bindspace search: error: ") and "bad.png" in err and len(err.splitlines()) == 1
    assert main(["search", "--db", str(db), "x", "--where", "nonsense ==="]) == 1
    assert "filter" in capsys.readouterr().err
    assert main(["search", "--db", str(tmp_path / "nodb"), "x"]) == 1
    assert "no index here" in capsys.readouterr().err


def test_checkpoint_mismatch_is_refused(indexed, capsys, tmp_path, tiny_state, tiny_model_dir):
    root, db = indexed
    other = tmp_path / "other.pth"
    torch.save({k: v * 0.5 for k, v in tiny_state.items()}, other)
    capsys.readouterr()
    assert main(["search", "--db", str(db), "x", "--checkpoint", str(other), "--model", TINY]) == 1
    assert "not the ones the index was built with" in capsys.readouterr().err
    # the same weights in another format are accepted
    out = search_json(capsys, "--db", str(db), "--checkpoint", str(tiny_model_dir), "--image",
                      str(root / "image_1.jpg"), "-k", "1")
    assert out["results"][0]["uri"] == str(root / "image_1.jpg")
