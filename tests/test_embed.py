"""Embedder: same vectors as model.encode on the same inputs, input order, error policy, segments, workers."""
from __future__ import annotations

import copy
import json
import multiprocessing

import numpy as np
import pytest
import soundfile as sf
import torch

from bindspace import preprocess
from bindspace.embedding import Embedder, EmbeddingResult, ItemError
from bindspace.errors import InputError
from bindspace.preprocess.audio import load_audio_segments
from bindspace.preprocess.video import load_video_window

ATOL = 1e-5


def reference(model, tower: str, tensors: list[torch.Tensor], clip_axis: bool) -> np.ndarray:
    """model.encode on the stacked preprocessed inputs, one call."""
    with torch.no_grad():
        return model.encode(tower, torch.stack(tensors), clip_axis=clip_axis).numpy()


@pytest.fixture()
def bad_png(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    return path


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory):
    """7 s of noise at 16 kHz."""
    path = tmp_path_factory.mktemp("audio") / "seven_seconds.wav"
    rng = np.random.default_rng(0)
    sf.write(path, (0.1 * rng.standard_normal(7 * 16000)).astype(np.float32), 16000)
    return path


def test_text_matches_encode_in_input_order(tiny_model, fixtures_dir):
    texts = json.loads((fixtures_dir / "media" / "texts.json").read_text()) + ["", "a", "x " * 200]
    # batch_size 3 with length sorting: rows must still come back in input order
    result = Embedder(tiny_model, batch_size=3).embed("text", texts)
    with torch.no_grad():
        expected = np.concatenate([tiny_model.encode("text", preprocess.text([t])).numpy() for t in texts])
    np.testing.assert_allclose(result.vectors, expected, atol=ATOL)
    assert result.vectors.dtype == np.float32
    assert result.indices == list(range(len(texts)))
    assert result.names == texts and result.errors == [] and result.segments is None


@pytest.mark.parametrize("kind, tower, files, load, clip_axis", [
    ("image", "vision", ["image_1.jpg", "image_2.png", "image_3.png"], preprocess.load_image, False),
    ("audio", "audio", ["audio_1.wav", "audio_2.wav", "audio_3.wav"], preprocess.load_audio, True),
    ("depth", "depth", ["depth_1.png"], preprocess.load_depth, False),
    ("thermal", "thermal", ["thermal_1.png"], preprocess.load_thermal, False),
    ("imu", "imu", ["imu_1.npy"], preprocess.load_imu, False),
    ("video", "vision", ["video_1.mp4"], preprocess.load_video, True),
])
def test_media_matches_encode(tiny_model, media_dir, kind, tower, files, load, clip_axis):
    paths = [media_dir / f for f in files]
    result = Embedder(tiny_model, batch_size=2).embed(kind, paths)
    expected = reference(tiny_model, tower, [load(p) for p in paths], clip_axis)
    np.testing.assert_allclose(result.vectors, expected, atol=ATOL)
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    assert result.indices == list(range(len(paths)))
    assert result.names == [str(p) for p in paths]


def test_skip_keeps_order_and_reports_bad_items(tiny_model, media_dir, bad_png, tmp_path):
    missing = tmp_path / "missing.jpg"
    items = [media_dir / "image_1.jpg", bad_png, media_dir / "image_2.png", missing, media_dir / "image_3.png"]
    result = Embedder(tiny_model, batch_size=2).embed("image", items, on_error="skip")
    assert result.indices == [0, 2, 4]
    assert result.names == [str(items[i]) for i in (0, 2, 4)]
    assert [(e.index, e.name) for e in result.errors] == [(1, str(bad_png)), (3, str(missing))]
    assert all(isinstance(e, ItemError) and e.message and "\n" not in e.message for e in result.errors)
    assert "no such file" in result.errors[1].message
    good = [preprocess.load_image(items[i]) for i in (0, 2, 4)]
    np.testing.assert_allclose(result.vectors, reference(tiny_model, "vision", good, False), atol=ATOL)


def test_raise_names_the_file_and_stops_workers(tiny_model, media_dir, bad_png):
    items = [media_dir / "image_1.jpg", bad_png, media_dir / "image_2.png"]
    with pytest.raises(InputError) as info:
        Embedder(tiny_model, batch_size=1, num_workers=2).embed("image", items)
    assert info.value.source == str(bad_png)
    assert str(bad_png) in str(info.value) and "\n" not in str(info.value)
    assert multiprocessing.active_children() == []  # no decoding process left behind


def test_names_and_non_string_texts(tiny_model):
    result = Embedder(tiny_model).embed("text", ["a cat", 42, ""], names=["first", "second", "third"], on_error="skip")
    assert result.indices == [0, 2] and result.names == ["first", "third"]
    assert result.errors == [ItemError(1, "second", "text must be a str, not int")]
    with pytest.raises(ValueError, match="names"):
        Embedder(tiny_model).embed("text", ["a", "b"], names=["only one"])


def test_bytes_and_file_objects(tiny_model, media_dir):
    path = media_dir / "image_2.png"
    with open(path, "rb") as handle:
        result = Embedder(tiny_model, num_workers=2).embed("image", [path.read_bytes(), handle])
    expected = reference(tiny_model, "vision", [preprocess.load_image(path)] * 2, False)
    np.testing.assert_allclose(result.vectors, expected, atol=ATOL)
    assert result.names[0] == "<bytes #0>" and result.names[1] == str(path)


def test_empty_job_gives_empty_matrix(tiny_model):
    result = Embedder(tiny_model).embed("audio", [])
    assert isinstance(result, EmbeddingResult)
    assert result.vectors.shape == (0, tiny_model.embed_dim) and result.vectors.dtype == np.float32
    assert result.indices == [] and result.errors == []


def test_workers_match_main_process(tiny_model, media_dir, bad_png):
    items = [media_dir / f"audio_{i}.wav" for i in (1, 2, 3)] + [bad_png, media_dir / "audio_1.wav"]
    serial = Embedder(tiny_model, batch_size=2, num_workers=0).embed("audio", items, on_error="skip")
    parallel = Embedder(tiny_model, batch_size=2, num_workers=2).embed("audio", items, on_error="skip")
    np.testing.assert_array_equal(parallel.vectors, serial.vectors)
    assert parallel.indices == serial.indices == [0, 1, 2, 4]
    assert parallel.errors == serial.errors and [e.index for e in serial.errors] == [3]


def test_audio_segments(tiny_model, long_wav, media_dir):
    short = media_dir / "audio_3.wav"  # 1.2 s: one partial window
    result = Embedder(tiny_model, batch_size=3).embed("audio", [long_wav, short], segment_seconds=2)
    assert result.segments == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0), (6.0, 7.0), (0.0, 1.2)]
    assert result.indices == [0, 0, 0, 0, 1]
    assert result.names == [str(long_wav)] * 4 + [str(short)]
    windows = [*load_audio_segments(long_wav, segment_seconds=2)[1], *load_audio_segments(short, segment_seconds=2)[1]]
    np.testing.assert_allclose(result.vectors, reference(tiny_model, "audio", windows, True), atol=ATOL)


def test_video_segments(tiny_model, media_dir):
    video = media_dir / "video_1.mp4"  # 3.0 s
    result = Embedder(tiny_model, batch_size=4).embed("video", [video], segment_seconds=2)
    assert result.segments == [(0.0, 2.0), (2.0, 3.0)] and result.indices == [0, 0]
    windows = [load_video_window(video, 0.0, 2.0), load_video_window(video, 2.0, 3.0)]
    np.testing.assert_allclose(result.vectors, reference(tiny_model, "vision", windows, True), atol=ATOL)


def test_segment_seconds_only_for_audio_and_video(tiny_model, media_dir):
    with pytest.raises(ValueError, match="segment_seconds"):
        Embedder(tiny_model).embed("image", [media_dir / "image_1.jpg"], segment_seconds=2)


def test_loader_options_reach_the_loader(tiny_model, media_dir):
    path = media_dir / "depth_1.png"
    result = Embedder(tiny_model, options={"depth": {"max_depth": 3.0}}).embed("depth", [path])
    expected = reference(tiny_model, "depth", [preprocess.load_depth(path, max_depth=3.0)], False)
    default = reference(tiny_model, "depth", [preprocess.load_depth(path)], False)
    np.testing.assert_allclose(result.vectors, expected, atol=ATOL)
    assert not np.allclose(result.vectors, default, atol=1e-3)
    with pytest.raises(ValueError, match="focal_baselin"):
        Embedder(tiny_model, options={"depth": {"focal_baselin": 10.0}})


def test_half_precision_model(tiny_model, media_dir):
    half = copy.deepcopy(tiny_model).to(torch.bfloat16)
    paths = [media_dir / "image_1.jpg", media_dir / "image_3.png"]
    result = Embedder(half).embed("image", paths)
    full = reference(tiny_model, "vision", [preprocess.load_image(p) for p in paths], False)
    assert result.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    assert (np.sum(result.vectors * full, axis=1) > 0.98).all()  # bf16 rounding only


def test_training_mode_is_restored(tiny_model):
    model = copy.deepcopy(tiny_model).train()
    Embedder(model).embed("text", ["a"])
    assert model.training


def test_progress_bar_when_forced(tiny_model, capsys):
    Embedder(tiny_model, progress=True).embed("text", ["a", "b"])
    assert "embed text" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".npy", ".jsonl", ".parquet"])
def test_output_formats_round_trip(tmp_path, suffix):
    from bindspace.embedding.output import EmbeddingTable, read_embeddings, write_embeddings

    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((3, 5)).astype(np.float32)
    names = ["a.wav", "naïve café.wav", "bad\udcff.wav"]  # the last: an undecodable byte in a file name
    table = EmbeddingTable(vectors, names=names, indices=[0, 0, 2], segments=[(0.0, 2.0), (2.0, 3.5), (0.0, 1.0)])
    path = write_embeddings(tmp_path / f"out{suffix}", table)
    back = read_embeddings(path)
    np.testing.assert_array_equal(back.vectors, vectors)  # exact, also through JSON text
    assert back.vectors.dtype == np.float32
    if suffix != ".npy":
        assert back.names == ["a.wav", "naïve café.wav", "bad\ufffd.wav"]
        assert back.indices == [0, 0, 2] and back.segments == [(0.0, 2.0), (2.0, 3.5), (0.0, 1.0)]
    assert [p.name for p in tmp_path.iterdir()] == [f"out{suffix}"]


def test_output_write_is_atomic(tmp_path, monkeypatch):
    from bindspace.embedding import output as io_formats

    target = tmp_path / "out.npy"
    target.write_bytes(b"previous result")

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(io_formats.np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        io_formats.write_embeddings(target, io_formats.EmbeddingTable(np.zeros((2, 3), np.float32)))
    assert target.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["out.npy"]
    with pytest.raises(io_formats.OutputFormatError, match=".csv"):
        io_formats.check_output(tmp_path / "out.csv")


def test_vision_means_image_or_video_per_input(tiny_model, media_dir, bad_png):
    """One meaning of "vision" everywhere: image or video, decided per file (and for bytes, by content)."""
    image, video = media_dir / "image_1.jpg", media_dir / "video_1.mp4"
    items = [video, image, bad_png, video.read_bytes(), image.read_bytes()]
    result = Embedder(tiny_model, batch_size=2).embed("vision", items, on_error="skip")
    assert result.indices == [0, 1, 3, 4]
    assert [e.index for e in result.errors] == [2] and result.errors[0].name == str(bad_png)
    expected_video = reference(tiny_model, "vision", [preprocess.load_video(video)], True)[0]
    expected_image = reference(tiny_model, "vision", [preprocess.load_image(image)], False)[0]
    np.testing.assert_allclose(result.vectors, np.stack([expected_video, expected_image] * 2), atol=ATOL)
    segmented = Embedder(tiny_model).embed("vision", [video], segment_seconds=2)
    assert segmented.segments == [(0.0, 2.0), (2.0, 3.0)]
    with pytest.raises(ValueError, match="image_1.jpg is an image"):
        Embedder(tiny_model).embed("vision", [video, image], segment_seconds=2)


def test_embedding_package_uses_the_one_kinds_table():
    import bindspace.embedding as embedding
    import bindspace.embedding.loading as loading
    from bindspace import kinds

    assert embedding.KINDS is kinds.KINDS
    assert not hasattr(loading, "parse_kind") or loading.parse_kind is kinds.parse_kind
    assert not hasattr(loading, "SEGMENTABLE")


def _broken_loader(exc: BaseException):
    def load(item, unit):
        raise exc

    return load


@pytest.mark.parametrize("exc", [
    OSError("truncated file"), ValueError("bad header"), EOFError(), SyntaxError("broken PNG chunk"),
])
def test_decode_errors_are_reported_per_input(tiny_model, media_dir, monkeypatch, exc):
    import bindspace.embedding.embedder as embedder

    monkeypatch.setattr(embedder, "make_loader", lambda *a: _broken_loader(exc))
    result = Embedder(tiny_model).embed("image", [media_dir / "image_1.jpg"], on_error="skip")
    assert result.indices == [] and len(result.errors) == 1
    assert result.errors[0].message.startswith(f"cannot be decoded ({type(exc).__name__}")


@pytest.mark.parametrize("exc", [
    TypeError("unsupported operand"), AttributeError("'NoneType' has no attribute 'shape'"),
    MemoryError(), RuntimeError("CUDA out of memory"), KeyError("x"),
])
def test_bugs_and_resource_errors_stop_the_job(tiny_model, media_dir, monkeypatch, exc):
    """A loader bug or a resource error is not "cannot be decoded": it propagates, even under skip."""
    import bindspace.embedding.embedder as embedder

    monkeypatch.setattr(embedder, "make_loader", lambda *a: _broken_loader(exc))
    with pytest.raises(type(exc)):
        Embedder(tiny_model).embed("image", [media_dir / "image_1.jpg"], on_error="skip")


def test_model_errors_propagate_with_their_cause(tiny_model, media_dir, monkeypatch):
    def broken_encode(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(tiny_model, "encode", broken_encode)
    with pytest.raises(RuntimeError, match="mat1 and mat2"):
        Embedder(tiny_model).embed("image", [media_dir / "image_1.jpg"], on_error="skip")


def test_cut_texts_are_reported_once_per_call(tiny_model, caplog):
    """Issue 16: a 100k-character text was cut to 77 tokens silently; now one line counts the cut texts."""
    import logging

    texts = ["a cat"] * 130
    for i in (3, 70, 129):  # in three different tokenisation chunks (batch_size 1 -> chunks of 64)
        texts[i] = "dog " * 25_000
    with caplog.at_level(logging.WARNING, logger="bindspace.text"):
        result = Embedder(tiny_model, batch_size=1).embed("text", texts)
    assert len(result) == 130
    assert [r.getMessage().split(" longer")[0] for r in caplog.records] == ["3 of 130 texts were"]


def test_units_per_load_spreads_short_jobs_over_every_worker():
    from bindspace.embedding.embedder import units_per_load

    assert units_per_load(48, batch_size=256, workers=15) == 4  # one long video's 48 windows: 12 workers busy
    assert units_per_load(10_000, batch_size=32, workers=4) == 32  # long jobs: a whole batch per load
    assert units_per_load(3, batch_size=32, workers=0) == 3  # no workers: the main process loads them
    assert units_per_load(1, batch_size=32, workers=4) == 1
    assert units_per_load(500, batch_size=32, workers=4, whole_files=True) == 1  # audio segments: file by file
