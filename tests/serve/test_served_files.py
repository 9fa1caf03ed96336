"""Indexed files are served only while they are the file that was indexed, inside the indexed folders."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from serve_helpers import MemoryStore

from bindspace.index.store import Item, ModelInfo
from bindspace.index.walk import walk_paths

SECRET = b"\x89PNG secret key material that must never leave the server " * 8


def _index(store: MemoryStore, path: Path, item_id: str, kind: str = "image") -> None:
    """Record a file as the indexer would: its size and mtime as they are now."""
    stat = os.stat(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    store.add([Item(id=item_id, uri=str(path), modality=kind, content_hash=digest,
                    size=stat.st_size, mtime=stat.st_mtime, segment_start=None, segment_end=None,
                    model="imagebind_tiny_test", model_checksum="", vector=None)])


def _folder(tmp_path: Path, media_dir: Path) -> tuple[Path, Path, MemoryStore]:
    data, private = tmp_path / "data", tmp_path / "private"
    data.mkdir()
    private.mkdir()
    shutil.copy(media_dir / "image_1.jpg", data / "photo.jpg")
    (private / "secret.png").write_bytes(SECRET)
    store = MemoryStore(ModelInfo("imagebind_tiny_test", "", 24))
    _index(store, data / "photo.jpg", "photo")
    return data, private, store


def test_an_indexed_file_replaced_by_a_link_to_a_secret_is_not_served(tmp_path, media_dir, make_client):
    data, private, store = _folder(tmp_path, media_dir)
    client = make_client(store=store)
    assert client.get("/v1/items/photo/media").status_code == 200
    (data / "photo.jpg").unlink()
    os.symlink(private / "secret.png", data / "photo.jpg")
    for route in ("media", "thumbnail"):
        reply = client.get(f"/v1/items/photo/{route}")
        assert reply.status_code == 404 and SECRET[:20] not in reply.content
        assert "re-index" in reply.json()["error"]


def test_a_link_indexed_to_a_file_outside_the_folder_is_not_served(tmp_path, media_dir, make_client):
    # The link existed when the file was indexed, so its size and mtime match: only the location check refuses it.
    data, private, store = _folder(tmp_path, media_dir)
    os.symlink(private / "secret.png", data / "innocent.png")
    _index(store, data / "innocent.png", "innocent")
    reply = make_client(store=store).get("/v1/items/innocent/media")
    assert reply.status_code == 404 and SECRET[:20] not in reply.content


def test_a_file_changed_in_place_since_indexing_is_not_served(tmp_path, media_dir, make_client):
    data, _, store = _folder(tmp_path, media_dir)
    (data / "photo.jpg").write_bytes(SECRET)
    assert make_client(store=store).get("/v1/items/photo/media").status_code == 404


def test_links_inside_the_indexed_folder_and_index_roots_are_served(tmp_path, media_dir, make_client):
    data, _, store = _folder(tmp_path, media_dir)
    os.symlink(data / "photo.jpg", data / "alias.jpg")
    _index(store, data / "alias.jpg", "alias")
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copy(media_dir / "image_2.png", other / "shared.png")
    os.symlink(other / "shared.png", data / "shared.png")
    _index(store, data / "shared.png", "shared")
    client = make_client(store=store)
    reply = client.get("/v1/items/alias/media")
    assert reply.status_code == 200 and reply.content == (data / "photo.jpg").read_bytes()
    assert client.get("/v1/items/shared/media").status_code == 404  # outside the item's folder, no --index-root
    rooted = make_client(store=store, index_roots=[str(tmp_path)])
    assert rooted.get("/v1/items/shared/media").content == (other / "shared.png").read_bytes()


def test_the_walk_skips_file_links_that_leave_the_indexed_folder(tmp_path, media_dir):
    data, private, _ = _folder(tmp_path, media_dir)
    os.symlink(private / "secret.png", data / "out.png")
    os.symlink(data / "photo.jpg", data / "in.jpg")
    files = walk_paths([data]).files
    assert str(data / "in.jpg") in files and str(data / "photo.jpg") in files
    assert str(data / "out.png") not in files
