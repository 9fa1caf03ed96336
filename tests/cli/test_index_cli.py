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
from bindspace.index.store import model_fingerprint, open_store  # noqa: E402

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
    assert "added 6, updated 0, removed 0, unchanged 0, skipped 1; 6 items" in err
    assert f"skipped {folder / 'pictures' / 'broken.png'}: " in err
    assert "ignored 1 files that are not media (.txt x1)" in err
    store = open_store(db)
    info = store.model_info()
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
    assert {os.path.basename(s["path"]) for s in summary["skipped"]} == {"broken.png", "readme.txt"}


def test_modalities_and_segments(folder, tmp_path, tiny_pth, capsys):
    db = tmp_path / "db"
    code = main(["index", str(folder), "--db", str(db), *tiny(tiny_pth), "--modalities", "audio",
                 "--segment-seconds", "2", "--workers", "0"])
    assert code == 0
    items = open_store(db).items_by_uri()
    assert len(items) == 1
    (segments,) = items.values()
    assert [s.segment for s in sorted(segments, key=lambda s: s.segment_start)] == [(0.0, 2.0), (2.0, 4.0), (4.0, 5.0)]


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
    assert "added 2, updated 0, removed 0, unchanged 0, skipped 1" in done.stderr
    assert "Traceback" not in done.stderr
