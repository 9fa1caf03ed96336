"""index_paths: change detection, bad files, segments, model mixing, crash windows, search quality."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import bindspace
from bindspace.embedding import Embedder
from bindspace.errors import BindspaceError
from bindspace.index import open_store
from bindspace.index.indexer import NOT_MEDIA, index_paths
from bindspace.integrity import sha256_file


class CountingEmbedder:
    """Records which files were embedded."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model = inner.model
        self.batch_size = inner.batch_size
        self.embedded: list[str] = []

    def embed(self, modality, items, **kwargs):
        self.embedded.extend(os.path.basename(str(i)) for i in items)
        return self.inner.embed(modality, items, **kwargs)


def uris(store) -> dict[str, list]:
    return {os.path.basename(k): v for k, v in store.items_by_uri().items()}


def build_folder(media, media_dir):
    media.image("a.png", seed=1)
    media.image("b.jpg", seed=2)
    media.audio("sounds/c.wav", seconds=1.0, seed=3)
    media.gray("depth/d.png", bits=16)
    media.imu("e.npy")
    shutil.copy(media_dir / "video_1.mp4", media.path("f.mp4"))
    return media.root


def test_change_detection_counts(media, media_dir, store, embedder):
    root = build_folder(media, media_dir)
    counting = CountingEmbedder(embedder)
    first = index_paths([root], store, counting)
    assert (first.added, first.updated, first.removed, first.unchanged, first.skipped) == (6, 0, 0, 0, [])
    assert {k: v[0].modality for k, v in uris(store).items()} == {
        "a.png": "image", "b.jpg": "image", "c.wav": "audio", "d.png": "depth", "e.npy": "imu", "f.mp4": "video"}
    assert store.count() == 6

    counting.embedded.clear()
    again = index_paths([root], store, counting)
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, 6)
    assert counting.embedded == []

    media.image("a.png", seed=99)  # new content
    media.bump_mtime(root / "b.jpg")  # touched, same bytes
    os.remove(root / "e.npy")
    media.image("new.png", seed=5)
    old_a = uris(store)["a.png"][0]
    third = index_paths([root], store, counting)
    assert (third.added, third.updated, third.removed, third.unchanged) == (1, 1, 1, 4)
    assert sorted(counting.embedded) == ["a.png", "new.png"]  # b.jpg was hashed, not re-embedded
    after = uris(store)
    assert "e.npy" not in after and len(after["a.png"]) == 1
    assert after["a.png"][0].content_hash == sha256_file(str(root / "a.png")) != old_a.content_hash
    assert after["b.jpg"][0].mtime == os.stat(root / "b.jpg").st_mtime  # new mtime recorded
    assert store.count() == 6

    counting.embedded.clear()
    fourth = index_paths([root], store, counting)
    assert (fourth.unchanged, counting.embedded) == (6, [])


def test_bad_files_are_skipped_with_reasons(media, media_dir, store, embedder):
    media.image("good.png")
    media.raw("truncated.jpg", (media_dir / "image_1.jpg").read_bytes()[:300])
    media.raw("garbage.wav", b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    media.raw("empty.mp4", b"")
    media.raw("notes.txt", b"not media")
    media.raw(".hidden.png", b"ignored entirely")
    summary = index_paths([media.root], store, embedder)
    reasons = {os.path.basename(p): r for p, r in summary.skipped}
    assert summary.added == 1 and store.count() == 1
    assert set(reasons) == {"truncated.jpg", "garbage.wav", "empty.mp4", "notes.txt"}
    assert reasons["notes.txt"] == NOT_MEDIA and reasons["empty.mp4"] == "empty file"
    assert all(reasons[n] for n in ("truncated.jpg", "garbage.wav"))


def test_a_file_that_becomes_corrupt_loses_its_old_rows(media, store, embedder):
    good = media.image("photo.png")
    index_paths([media.root], store, embedder)
    good.write_bytes(b"\x89PNG\r\n\x1a\n but broken now")
    summary = index_paths([media.root], store, embedder)
    assert [os.path.basename(p) for p, _ in summary.skipped] == ["photo.png"]
    assert store.count() == 0


def test_only_requested_modalities_and_roots(media, store, embedder):
    media.image("pics/a.png")
    media.audio("pics/b.wav", seconds=1.0)
    media.image("other/c.png", seed=3)
    summary = index_paths([media.root / "pics"], store, embedder, modalities=["image"])
    assert summary.added == 1 and list(uris(store)) == ["a.png"]
    index_paths([media.root / "other"], store, embedder)
    # indexing another root leaves the first root's items alone
    assert sorted(uris(store)) == ["a.png", "c.png"]
    with pytest.raises(BindspaceError, match="no such file"):
        index_paths([media.root / "missing"], store, embedder)
    assert store.count() == 2  # a missing root is an error, never "everything vanished"


def test_segments_and_changing_the_segment_length(media, store, embedder):
    media.audio("long.wav", seconds=5.0)
    first = index_paths([media.root], store, embedder, segment_seconds=2.0)
    rows = sorted(uris(store)["long.wav"], key=lambda i: i.segment_start)
    assert first.added == 1 and [r.segment for r in rows] == [(0.0, 2.0), (2.0, 4.0), (4.0, 5.0)]
    assert len({r.id for r in rows}) == 3
    same = index_paths([media.root], store, embedder, segment_seconds=2.0)
    assert same.unchanged == 1
    changed = index_paths([media.root], store, embedder, segment_seconds=2.5)
    rows = sorted(uris(store)["long.wav"], key=lambda i: i.segment_start)
    assert changed.updated == 1 and [r.segment for r in rows] == [(0.0, 2.5), (2.5, 5.0)]
    whole = index_paths([media.root], store, embedder)
    assert whole.updated == 1 and [r.segment for r in uris(store)["long.wav"]] == [None]


def test_model_mixing_is_refused(media, store, embedder):
    media.image("a.png")
    index_paths([media.root], store, embedder)
    other = bindspace.create_model("imagebind_tiny_test")  # different (random) weights
    media.image("b.png", seed=4)
    with pytest.raises(BindspaceError, match="refusing to mix models"):
        index_paths([media.root], store, Embedder(other, batch_size=2, progress=False))
    assert list(uris(store)) == ["a.png"]


class Crash(BaseException):
    """Stands in for kill -9: nothing after it runs."""


class CrashOnDelete:
    """A store whose first delete "kills the process" right after the batch's add was committed."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def delete(self, ids):
        raise Crash()


def test_crash_between_add_and_delete_recovers(tmp_path, media, embedder):
    root = media.root
    for i in range(4):
        media.image(f"img{i}.png", seed=i)
    store = open_store(tmp_path / "db", create=True)
    index_paths([root], store, embedder)
    for i in (1, 2):
        media.image(f"img{i}.png", seed=100 + i)  # change two files
    with pytest.raises(Crash):
        index_paths([root], CrashOnDelete(store), embedder, commit_files=8)  # type: ignore[arg-type]
    # both versions of the changed files are in the table now
    assert store.count() == 6
    summary = index_paths([root], store, embedder)
    assert (summary.added, summary.updated, summary.unchanged) == (0, 0, 4)
    rows = uris(store)
    assert store.count() == 4 and all(len(v) == 1 for v in rows.values())
    for name, items in rows.items():
        assert items[0].content_hash == sha256_file(str(root / name))


def test_duplicate_rows_are_removed_on_start(media, store, embedder):
    media.image("a.png")
    media.image("b.png", seed=2)
    index_paths([media.root], store, embedder)
    everything = [store.get(items[0].id) for items in store.items_by_uri().values()]
    store.add(everything)  # as if two writers had committed the same files
    assert store.count() == 4
    summary = index_paths([media.root], store, embedder)
    assert summary.duplicates_removed == 2 and summary.unchanged == 2 and store.count() == 2


def test_search_ranks_the_exact_duplicate_first(media, media_dir, store, embedder, tiny_model):
    root = build_folder(media, media_dir)
    index_paths([root], store, embedder)
    for name, kind in (("a.png", "image"), ("c.wav", "audio"), ("d.png", "depth")):
        path = root / ("sounds" if kind == "audio" else "depth" if kind == "depth" else "") / name
        query = Embedder(tiny_model, progress=False).embed(kind, [path]).vectors[0]
        hits = store.search(query, k=3)
        assert os.path.basename(hits[0].item.uri) == name
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert hits[0].score >= hits[1].score >= hits[2].score


def test_multi_part_query_scores(media, media_dir, store, embedder, tiny_model):
    from bindspace.tasks.arithmetic import combine_vectors

    root = build_folder(media, media_dir)
    index_paths([root], store, embedder)
    e = Embedder(tiny_model, progress=False)
    image = e.embed("image", [root / "a.png"]).vectors[0]
    audio = e.embed("audio", [root / "sounds" / "c.wav"]).vectors[0]
    for weights in ([1.0, 1.0], [2.0, 0.5], [1.0, -0.5]):
        query = combine_vectors(np.stack([image, audio]), weights)
        total = weights[0] * image + weights[1] * audio
        expected_q = total / np.linalg.norm(total)
        np.testing.assert_allclose(query, expected_q, atol=1e-5)
        hits = {os.path.basename(h.item.uri): h.score for h in store.search(query, k=10)}
        assert hits["a.png"] == pytest.approx(float(expected_q @ image), abs=1e-4)
        assert hits["c.wav"] == pytest.approx(float(expected_q @ audio), abs=1e-4)


def test_progress_and_events(media, store, embedder):
    for i in range(3):
        media.image(f"p{i}.png", seed=i)
    media.raw("x.txt", b"text")
    seen: list = []
    ticks: list = []
    index_paths([media.root], store, embedder, on_item=seen.append, progress=lambda d, t: ticks.append((d, t)))
    assert sorted((os.path.basename(e.uri), e.status) for e in seen) == [
        ("p0.png", "added"), ("p1.png", "added"), ("p2.png", "added"), ("x.txt", "skipped")]
    assert ticks[-1] == (3, 3)


def test_a_file_whose_modality_changes_is_re_embedded(media, store, embedder, tiny_model, monkeypatch):
    import bindspace.index.indexer as indexer

    frame = media.gray("frame.png", bits=8)
    index_paths([media.root], store, embedder)
    assert uris(store)["frame.png"][0].modality == "image"
    # e.g. a newer detection rule: the same bytes are now read as a thermal frame
    monkeypatch.setattr(indexer, "detect_modality", lambda path: "thermal")
    summary = index_paths([media.root], store, embedder)
    assert summary.updated == 1
    (row,) = uris(store)["frame.png"]
    assert row.modality == "thermal"
    thermal = Embedder(tiny_model, progress=False).embed("thermal", [frame]).vectors[0]
    np.testing.assert_allclose(store.get(row.id).vector, thermal, atol=1e-5)


class FailingEmbedder(CountingEmbedder):
    """Raises `error(items)` for calls whose items include `bad` (a batch-level failure)."""

    def __init__(self, inner: Embedder, bad: str, error) -> None:
        super().__init__(inner)
        self.bad = bad
        self.error = error

    def embed(self, modality, items, **kwargs):
        names = [os.path.basename(str(i)) for i in items]
        if self.bad in names:
            self.embedded.append(f"failed:{len(names)}")
            raise self.error(items)
        return super().embed(modality, items, **kwargs)


def test_a_batch_that_cannot_be_decoded_is_retried_file_by_file(media, store, embedder):
    from bindspace.errors import InputError

    for i in range(3):
        media.image(f"img_{i}.png", seed=i)
    failing = FailingEmbedder(embedder, "img_1.png", lambda items: InputError("img_1.png", "cannot decode image"))
    summary = index_paths([media.root], store, failing)
    assert failing.embedded[0] == "failed:3"  # the batch, then file by file
    assert summary.added == 2 and [(os.path.basename(p), r) for p, r in summary.skipped] == [
        ("img_1.png", "cannot decode image")]


@pytest.mark.parametrize("error", [
    lambda items: RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    lambda items: MemoryError(),
    lambda items: TypeError("a bug in a loader"),
])
def test_resource_errors_and_bugs_stop_the_run_with_their_cause(media, store, embedder, error):
    for i in range(3):
        media.image(f"img_{i}.png", seed=i)
    failing = FailingEmbedder(embedder, "img_1.png", error)
    expected = type(error([]))
    with pytest.raises(expected):
        index_paths([media.root], store, failing)
    assert failing.embedded == ["failed:3"]  # not retried, not recorded as skipped files
    assert store.count() == 0
