"""`bindspace embed` through the real entry point: outputs, error policy, exit codes, weights."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from bindspace import preprocess
from bindspace.cli import main
from bindspace.preprocess.audio import load_audio_segments

TINY = "imagebind_tiny_test"
ATOL = 1e-5


@pytest.fixture()
def tiny_args(tiny_pth):
    return ["--model", TINY, "--checkpoint", str(tiny_pth)]


@pytest.fixture()
def bad_wav(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage that ends early")
    return path


def encode(model, tower, tensors, clip_axis=False):
    with torch.no_grad():
        return model.encode(tower, torch.stack(tensors), clip_axis=clip_axis).numpy()


def leftovers(folder):
    """Anything in `folder` that looks like a temporary or partial output."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix in (".tmp", ".part")]


def test_text_to_npy(tiny_model, tiny_args, tmp_path, capsys):
    texts = ["a dog", "", "a photo of the sea at night"]
    out = tmp_path / "text.npy"
    assert main(["embed", "--modality", "text", *tiny_args, "-o", str(out), *texts]) == 0
    vectors = np.load(out)
    assert vectors.dtype == np.float32 and vectors.shape == (3, tiny_model.embed_dim)
    with torch.no_grad():
        expected = tiny_model.encode("text", preprocess.text(texts)).numpy()
    np.testing.assert_allclose(vectors, expected, atol=ATOL)
    assert "embedded 3, skipped 0" in capsys.readouterr().err


def test_text_from_file_keeps_empty_lines(tiny_model, tiny_args, tmp_path):
    listing = tmp_path / "texts.txt"
    listing.write_bytes("  a dog  \r\n\nun café\n".encode())
    out = tmp_path / "text.jsonl"
    assert main(["embed", "--modality", "text", *tiny_args, "--from-file", str(listing), "-o", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    texts = ["  a dog  ", "", "un café"]
    assert [r["name"] for r in rows] == texts and [r["index"] for r in rows] == [0, 1, 2]
    with torch.no_grad():
        expected = tiny_model.encode("text", preprocess.text(texts)).numpy()
    np.testing.assert_allclose(np.array([r["vector"] for r in rows], np.float32), expected, atol=ATOL)


@pytest.mark.slow  # a fresh interpreter imports torch: ~5 s on a busy 2-core machine
def test_subprocess_image_directory_with_model_dir(tiny_model, tiny_model_dir, media_dir, tmp_path):
    folder = tmp_path / "pictures"
    (folder / "b_sub").mkdir(parents=True)
    shutil.copy(media_dir / "image_1.jpg", folder / "c.jpg")
    shutil.copy(media_dir / "image_2.png", folder / "b_sub" / "a.PNG")
    shutil.copy(media_dir / "image_3.png", folder / "a.png")
    shutil.copy(media_dir / "image_3.png", folder / ".hidden.png")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "images.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "bindspace.cli", "embed", "--modality", "image", "--checkpoint", str(tiny_model_dir),
         "--workers", "0", "-o", str(out), str(folder)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    expected_names = [str(folder / "a.png"), str(folder / "b_sub" / "a.PNG"), str(folder / "c.jpg")]
    assert [r["name"] for r in rows] == expected_names
    expected = encode(tiny_model, "vision", [preprocess.load_image(n) for n in expected_names])
    np.testing.assert_allclose(np.array([r["vector"] for r in rows], np.float32), expected, atol=ATOL)


def test_audio_segments_to_parquet_with_skip(tiny_model, tiny_args, tmp_path, bad_wav, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    long_wav = tmp_path / "long.wav"
    sf.write(long_wav, (0.1 * np.random.default_rng(1).standard_normal(7 * 16000)).astype(np.float32), 16000)
    out = tmp_path / "audio.parquet"
    code = main(["embed", "--modality", "audio", *tiny_args, "--segment-seconds", "2", "--on-error", "skip",
                 "--workers", "0", "-o", str(out), str(bad_wav), str(long_wav)])
    assert code == 0
    table = pq.read_table(out).to_pydict()
    assert table["name"] == [str(long_wav)] * 4 and table["index"] == [1] * 4
    assert list(zip(table["start"], table["end"])) == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0), (6.0, 7.0)]
    _, windows = load_audio_segments(long_wav, segment_seconds=2)
    expected = encode(tiny_model, "audio", list(windows), clip_axis=True)
    np.testing.assert_allclose(np.array(table["vector"], np.float32), expected, atol=ATOL)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"bindspace embed: skipped {bad_wav}: ")
    assert err[-1].startswith("bindspace embed: embedded 1, skipped 1")


def test_bad_file_under_fail_writes_nothing(tiny_args, media_dir, bad_wav, tmp_path, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "audio.npy"
    code = main(["embed", "--modality", "audio", *tiny_args, "-o", str(out),
                 str(media_dir / "audio_1.wav"), str(bad_wav), str(media_dir / "audio_2.wav")])
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad_wav) in err and err.startswith("bindspace embed: error: ")
    assert "Traceback" not in err
    assert not out.exists() and leftovers(out_dir) == []


def test_skip_lists_bad_files_and_keeps_order(tiny_model, tiny_args, media_dir, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    out = tmp_path / "images.npy"
    good = [media_dir / "image_3.png", media_dir / "image_1.jpg"]
    code = main(["embed", "--modality", "image", *tiny_args, "--on-error", "skip", "--workers", "2", "-o", str(out),
                 str(good[0]), str(bad), str(good[1])])
    assert code == 0
    np.testing.assert_allclose(np.load(out), encode(tiny_model, "vision", [preprocess.load_image(p) for p in good]),
                               atol=ATOL)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith(f"bindspace embed: skipped {bad}: ")
    assert "embedded 2, skipped 1" in err[1]


def test_all_inputs_skipped_is_a_failure(tiny_args, bad_wav, tmp_path, capsys):
    out = tmp_path / "audio.jsonl"
    assert main(["embed", "--modality", "audio", *tiny_args, "--on-error", "skip", "-o", str(out), str(bad_wav)]) == 1
    assert not out.exists()
    assert "nothing embedded" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["--modality", "text", "-o", "OUT/x.csv", "hello"],  # unknown output suffix
    ["--modality", "text", "-o", "OUT/x.npy"],  # no inputs
    ["--modality", "image", "-o", "OUT/x.npy", "EMPTY"],  # a directory without images
    ["--modality", "text", "-o", "OUT/x.npy", "--from-file", "OUT/missing.txt"],
    ["--modality", "image", "-o", "OUT/x.npy", "--segment-seconds", "2", "EMPTY"],
    ["--modality", "audio", "-o", "OUT/x.npy", "--segment-seconds", "2", "AUDIO"],  # .npy loses the row mapping
])
def test_usage_errors_exit_2(argv, tiny_args, tmp_path, media_dir, capsys):
    (tmp_path / "empty").mkdir()
    argv = [a.replace("OUT", str(tmp_path)).replace("EMPTY", str(tmp_path / "empty"))
            .replace("AUDIO", str(media_dir / "audio_1.wav")) for a in argv]
    assert main(["embed", *tiny_args, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bindspace embed: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not list(tmp_path.glob("x.*"))


def test_argparse_usage_error_exits_2(tiny_args, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["embed", "--modality", "smell", *tiny_args, "-o", str(tmp_path / "x.npy"), "a"])
    assert info.value.code == 2


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "nope.pth"
    code = main(["embed", "--modality", "text", "--model", TINY, "--checkpoint", str(missing),
                 "-o", str(tmp_path / "x.npy"), "hello"])
    assert code == 1
    err = capsys.readouterr().err
    assert str(missing) in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x.npy").exists()


def test_offline_without_weights_never_downloads(tmp_path, monkeypatch, capsys):
    import bindspace.model.hub as hub

    def no_network(url, target, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(hub, "download_file", no_network)
    monkeypatch.delenv("BINDSPACE_CHECKPOINT", raising=False)
    monkeypatch.setenv("BINDSPACE_CACHE", str(tmp_path / "cache"))
    code = main(["embed", "--modality", "text", "-o", str(tmp_path / "x.npy"), "hello"])
    assert code == 1
    err = capsys.readouterr().err
    assert "not available offline" in err and "--checkpoint" in err and err.count("\n") == 1
    assert not (tmp_path / "x.npy").exists()


def test_help_documents_exit_codes(capsys):
    with pytest.raises(SystemExit) as info:
        main(["embed", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "embedded N, skipped M" in out and "exit status" in out


def test_workers_default_is_bounded():
    from bindspace.cli.common import default_workers

    assert 0 <= default_workers() <= min(4, max(0, (os.cpu_count() or 1) - 1))


# ---------------------------------------------------------------- issue 16: outputs that cannot be written

def test_output_naming_a_directory_fails_before_the_work(tiny_args, tmp_path, no_model_load, capsys):
    (tmp_path / "out.npy").mkdir()
    assert main(["embed", "--modality", "text", *tiny_args, "-o", str(tmp_path / "out.npy"), "hello"]) == 1
    err = capsys.readouterr().err
    assert err == f"bindspace embed: error: {tmp_path / 'out.npy'}: is a directory (the output must be a file name)\n"
    assert no_model_load == []


def test_readonly_output_fails_before_the_work(tiny_args, readonly_dir, no_model_load, capsys):
    for out, problem in ((readonly_dir / "x.npy", f"{readonly_dir}: cannot write the output there ("),
                         (readonly_dir / "new" / "x.npy", f"{readonly_dir / 'new'}: no such directory (")):
        assert main(["embed", "--modality", "text", *tiny_args, "-o", str(out), "hello"]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"bindspace embed: error: {problem}")
        assert err.count("\n") == 1
    assert no_model_load == []


def test_full_disk_keeps_the_previous_output(tiny_args, tmp_path, monkeypatch, capsys):
    import errno

    out = tmp_path / "x.npy"
    out.write_bytes(b"previous run")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)  # where a full disk surfaces for a buffered write
    assert main(["embed", "--modality", "text", *tiny_args, "-o", str(out), "a", "b"]) == 1
    err = capsys.readouterr().err
    assert err == f"bindspace embed: error: {out}: cannot write (No space left on device); nothing was written there\n"
    assert out.read_bytes() == b"previous run" and leftovers(tmp_path) == []


def test_real_full_disk_is_one_line(tiny_args, full_dir, capsys):
    out = full_dir / "x.jsonl"
    out.write_text("previous run\n")
    texts = [f"text number {i}" for i in range(400)]  # ~200 KiB of JSON lines on a 64 KiB file system
    assert main(["embed", "--modality", "text", *tiny_args, "-o", str(out), *texts]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"bindspace embed: error: {out}: cannot write (No space left on device)")
    assert err.count("\n") == 1
    assert out.read_text() == "previous run\n" and leftovers(full_dir) == []
