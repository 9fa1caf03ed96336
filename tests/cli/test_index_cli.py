"""`bindspace index` through the real entry point: summary, incremental reruns, errors, model mixing."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

pytest.importorskip("lancedb")

from bindspace.cli import main  # noqa: E402
from bindspace.index import open_store
from bindspace.index.store import model_fingerprint  # noqa: E402

TINY = "imagebind_tiny_test"


@pytest.fixture()
def folder(tmp_path, media_dir):
    """The fixture media plus a corrupt image and a non-media file, in nested folders."""
    root = tmp_path / "media"
    (root / "pictures").mkdir(parents=True)
    (root / "sounds").mkdir()
    for name in ("image_1.jpg", "image_3.png", "depth_1.png", "thermal_1.png", "imu_1.npy"):
        shutil.copy(media_dir / name, root / "pictures" / name)
    shutil.copy(media_dir / "audio_1.wav", root / "sounds" / "audio_1.wav")
    (root / "pictures" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "readme.txt").write_text("not media")
    return root


def tiny(ckpt) -> list[str]:
    return ["--model", TINY, "--checkpoint", str(ckpt)]


def test_index_then_rerun(folder, tmp_path, tiny_pth, capsys):
    db = tmp_path / "db"
    assert main(["index", str(folder), "--db", str(db), *tiny(tiny_pth), "--workers", "0"]) == 0
    err = capsys.readouterr().err
    assert "added 6, updated 0, removed 0, unchanged 0, skipped 1, not media 1; 6 items" in err
    assert f"skipped {folder / 'pictures' / 'broken.png'}: " in err
    assert "ignored 1 files that are not media (.txt x1)" in err
    store = open_store(db)
    info = store.model_info()
    assert info is not None
    assert info.name == TINY and info.embed_dim == 24 and info.checkpoint == str(tiny_pth)
    assert info.checksum == model_fingerprint(None, tiny_pth)
    assert sorted(i[0].modality for i in store.items_by_uri().values()) == [
        "audio", "depth", "image", "image", "imu", "thermal"]

    os.remove(folder / "sounds" / "audio_1.wav")
    # no --checkpoint: the checkpoint recorded in the index is reused
    assert main(["index", str(folder), "--db", str(db), "--json", "--workers", "0"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["added"], summary["updated"], summary["removed"], summary["unchanged"]) == (0, 0, 1, 5)
    assert summary["items"] == 5
    assert [os.path.basename(s["path"]) for s in summary["skipped"]] == ["broken.png"]
    assert [os.path.basename(p) for p in summary["not_media"]] == ["readme.txt"]


def test_modalities_and_segments(folder, tmp_path, tiny_pth, capsys):
    db = tmp_path / "db"
    code = main(["index", str(folder), "--db", str(db), *tiny(tiny_pth), "--modalities", "audio",
                 "--segment-seconds", "2", "--workers", "0"])
    assert code == 0
    items = open_store(db).items_by_uri()
    assert len(items) == 1
    (segments,) = items.values()
    assert sorted(s.segment for s in segments if s.segment) == [(0.0, 2.0), (2.0, 4.0), (4.0, 5.0)]


def test_other_model_is_refused(folder, tmp_path, tiny_pth, tiny_state, capsys):
    db = tmp_path / "db"
    assert main(["index", str(folder / "sounds"), "--db", str(db), *tiny(tiny_pth), "--workers", "0"]) == 0
    other = tmp_path / "other.pth"
    torch.save({k: v + 0.01 for k, v in tiny_state.items()}, other)
    capsys.readouterr()
    assert main(["index", str(folder), "--db", str(db), *tiny(other), "--workers", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bindspace index: error: ") and "refusing to mix models" in err
    assert len(err.splitlines()) == 1
    assert open_store(db).count() == 1


def test_errors_are_one_line(tmp_path, tiny_pth, capsys):
    assert main(["index", str(tmp_path / "missing"), "--db", str(tmp_path / "db"), *tiny(tiny_pth)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"bindspace index: error: {tmp_path / 'missing'}: no such file or directory"
    assert not (tmp_path / "db").exists()
    (tmp_path / "dbfile").write_text("x")
    assert main(["index", str(tmp_path), "--db", str(tmp_path / "dbfile"), *tiny(tiny_pth)]) == 1
    assert "not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["index", str(tmp_path), "--db", str(tmp_path / "db"), "--batch-size", "0"])
    assert exc.value.code == 2


def test_subprocess_entry_point(folder, tmp_path, tiny_model_dir):
    # a model directory names its own config: no --model needed
    cmd = [sys.executable, "-m", "bindspace.cli", "index", str(folder / "pictures"), "--db", str(tmp_path / "db"),
           "--checkpoint", str(tiny_model_dir), "--workers", "0", "--modalities", "image"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "added 2, updated 0, removed 0, unchanged 0, skipped 1, not media 0" in done.stderr
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------- issue 16: models known only by their folder

def test_recorded_model_directory_loads_in_search_and_serve(folder, tmp_path, make_model_dir, capsys, monkeypatch):
    # a trained (or demo) model is no preset: the index must load it from the directory it recorded
    model_dir = make_model_dir("my_trained_model")
    db = tmp_path / "db"
    assert main(["index", str(folder / "pictures"), "--db", str(db), "--checkpoint", str(model_dir),
                 "--workers", "0", "--modalities", "image"]) == 0
    info = open_store(db).model_info()
    assert info is not None and info.name == "my_trained_model"
    capsys.readouterr()
    assert main(["search", "--db", str(db), "--image", str(folder / "pictures" / "image_1.jpg"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["uri"] == str(folder / "pictures" / "image_1.jpg")

    uvicorn = pytest.importorskip("uvicorn")
    served: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.update(app=app, **kwargs))
    assert main(["serve", "--db", str(db), "--port", "0"]) == 0
    assert served["app"] is not None
    assert "my_trained_model" in capsys.readouterr().err


def test_moved_model_directory_says_which_option_to_pass(folder, tmp_path, make_model_dir, capsys):
    model_dir = make_model_dir("my_trained_model")
    db = tmp_path / "db"
    assert main(["index", str(folder / "pictures"), "--db", str(db), "--checkpoint", str(model_dir),
                 "--workers", "0", "--modalities", "image"]) == 0
    moved = model_dir.rename(tmp_path / "moved_model")
    capsys.readouterr()
    assert main(["search", "--db", str(db), "a dog"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(model_dir) in err and "no longer exists" in err and "--checkpoint DIR" in err
    assert "checkpoint=" not in err  # CLI words, not Python's
    assert main(["index", str(folder / "pictures"), "--db", str(db), "--workers", "0", "--modalities", "image"]) == 1
    assert "--checkpoint DIR" in capsys.readouterr().err
    # passing the new place works, and the fingerprint still matches
    assert main(["search", "--db", str(db), "a dog", "--checkpoint", str(moved)]) == 0


def test_model_mismatch_names_the_new_model(folder, tmp_path, make_model_dir, capsys):
    first = make_model_dir("first_model")
    second = make_model_dir("second_model", scale=0.5)
    db = tmp_path / "db"
    assert main(["index", str(folder / "sounds"), "--db", str(db), "--checkpoint", str(first), "--workers", "0"]) == 0
    capsys.readouterr()
    assert main(["index", str(folder / "sounds"), "--db", str(db), "--checkpoint", str(second), "--workers", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert "refusing to mix models" in err and len(err.splitlines()) == 1
    assert "vectors of first_model" in err and "the model given is second_model" in err


# ---------------------------------------------------------------- issue 16: towers, counts, warnings

def test_default_modalities_index_what_the_model_can(folder, tmp_path, make_model_dir, capsys):
    vision_only = make_model_dir("vision_text_model", towers=["vision", "text"])
    db = tmp_path / "db"
    code = main(["index", str(folder), "--db", str(db), "--checkpoint", str(vision_only), "--workers", "0", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["added"] == 2 and out["items"] == 2  # the two pictures
    reasons = {os.path.basename(s["path"]): s["reason"] for s in out["skipped"]}
    assert reasons["audio_1.wav"] == "the loaded model has no audio tower"
    assert reasons["depth_1.png"] == "the loaded model has no depth tower"
    assert reasons["imu_1.npy"] == "the loaded model has no imu tower"
    # asking for a kind the model cannot embed is a usage error, before anything is loaded
    for target in (db, tmp_path / "new_db"):
        assert main(["index", str(folder), "--db", str(target), "--checkpoint", str(vision_only), "--modalities",
                     "depth", "image"]) == 2
        err = capsys.readouterr().err.strip()
        assert err == ("bindspace index: error: --modalities: the model vision_text_model has no depth tower "
                       "(it has text, vision)")
    assert not (tmp_path / "new_db").exists()


def test_summary_counts_agree_with_verbose_and_json(folder, tmp_path, tiny_pth, capsys):
    for i in range(3):
        (folder / f"notes_{i}.txt").write_text("x")
        (folder / "pictures" / f"broken_{i}.jpg").write_bytes(b"\xff\xd8\xff garbage")
    db = tmp_path / "db"
    assert main(["index", str(folder), "--db", str(db), *tiny(tiny_pth), "--workers", "0", "-v"]) == 0
    err = capsys.readouterr().err.splitlines()
    summary = err[-1]
    skipped_lines = [line for line in err if line.startswith("skipped ")]
    ignored_lines = [line for line in err if line.startswith("ignored ")]
    assert "skipped 4, not media 4;" in summary
    assert len(skipped_lines) == 4 and len(ignored_lines) == 4
    for path in folder.rglob("broken*"):
        path.write_bytes(path.read_bytes() + b"!")  # changed: embedded (and skipped) again
    assert main(["index", str(folder), "--db", str(db), "--workers", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["skipped"]) == 4 and len(out["not_media"]) == 4


@pytest.mark.slow
def test_forked_workers_print_no_lancedb_warning(folder, tmp_path, tiny_pth):
    # decoding workers are forked after LanceDB started its runtime; LanceDB warns in each child
    cmd = [sys.executable, "-m", "bindspace.cli", "index", str(folder), "--db", str(tmp_path / "db"),
           *tiny(tiny_pth), "--workers", "2", "--batch-size", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "added 6" in done.stderr
    assert "fork support is experimental" not in done.stderr and "Warning" not in done.stderr, done.stderr


# ---------------------------------------------------------------- issue 16: unwritable places

def test_readonly_db_fails_before_the_model_loads(folder, readonly_dir, tiny_pth, no_model_load, capsys):
    for db in (readonly_dir / "db", readonly_dir):
        assert main(["index", str(folder), "--db", str(db), *tiny(tiny_pth), "--workers", "0"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("bindspace index: error: ") and len(err.splitlines()) == 1, err
        assert "cannot write the index there" in err and "Traceback" not in err
    assert no_model_load == []


def test_write_failure_keeps_committed_batches(folder, tmp_path, tiny_pth, capsys, monkeypatch):
    from bindspace.index.lance_store import LanceStore

    db = tmp_path / "db"
    table_type = type(LanceStore.open(str(_bound_store(db, tiny_pth)), create=False)._table())
    real_add = table_type.add
    calls = []

    def add_then_disk_full(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:  # the text LanceDB raises on ENOSPC
            raise RuntimeError("lance error: LanceError(IO): No space left on device (os error 28), "
                               "/root/.cargo/registry/src/lance-file-13.0.0/src/writer/structural.rs:258:9")
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(table_type, "add", add_then_disk_full)
    capsys.readouterr()
    assert main(["index", str(folder), "--db", str(db), "--workers", "0", "--batch-size", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"bindspace index: error: {db}: cannot write to the index (No space left on device "
                   "(os error 28)); everything committed before is kept, run again to continue")
    # the first batch (broken.png, image_1.jpg) was committed before the disk filled up
    assert [os.path.basename(uri) for uri in open_store(db).items_by_uri()] == ["image_1.jpg"]
    monkeypatch.setattr(table_type, "add", real_add)
    assert main(["index", str(folder), "--db", str(db), "--workers", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["added"], out["unchanged"], out["items"]) == (5, 1, 6)


def _bound_store(db, checkpoint):
    """An empty index bound to the tiny checkpoint's model (what a first run records)."""
    from bindspace.index.store import ModelInfo

    store = open_store(db, create=True)
    store.bind_model(ModelInfo(TINY, model_fingerprint(None, checkpoint), 24, str(checkpoint)))
    return db


def test_full_disk_index_is_one_line(folder, full_dir, tiny_pth, capsys):
    # a real 64 KiB file system: LanceDB's own write fails with ENOSPC
    for i in range(40):
        shutil.copy(folder / "pictures" / "image_1.jpg", folder / "pictures" / f"copy_{i}.jpg")
    code = main(["index", str(folder), "--db", str(full_dir / "db"), *tiny(tiny_pth), "--workers", "0",
                 "--batch-size", "4"])
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert err.startswith("bindspace index: error: ") and len(err.splitlines()) == 1, err
    assert "No space left on device" in err and "Traceback" not in err
