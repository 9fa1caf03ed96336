"""Bad exported directories and arguments: one clear line, never a traceback."""
from __future__ import annotations

import json
import shutil

import pytest

from bindspace.cli import main

pytestmark = pytest.mark.slow  # uses the session export


@pytest.fixture
def copy_of(onnx_dir, tmp_path):
    """A private copy of the export to damage."""
    target = tmp_path / "copy"
    shutil.copytree(onnx_dir, target, ignore=shutil.ignore_patterns("*.verified"))
    return target


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def embed(checkpoint, tmp_path, *extra) -> int:
    return main(["embed", "--modality", "text", "--checkpoint", str(checkpoint), "-o", str(tmp_path / "o.npy"),
                 *extra, "a dog"])


def test_missing_directory(tmp_path, capsys):
    assert embed(tmp_path / "nowhere", tmp_path) == 1
    assert "nowhere" in one_error_line(capsys)


def test_manifest_of_another_model(onnx_dir, tmp_path, capsys):
    import bindspace
    from bindspace.errors import CheckpointError

    with pytest.raises(CheckpointError, match="holds an export of 'imagebind_tiny_test', not 'imagebind_huge'"):
        bindspace.create_model("imagebind_huge", checkpoint=onnx_dir)
    assert embed(onnx_dir, tmp_path, "--model", "imagebind_huge") == 1
    assert "not 'imagebind_huge'" in one_error_line(capsys)


def test_tampered_weights_file(copy_of, tmp_path, capsys):
    data = copy_of / "text.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, one byte changed
    data.write_bytes(bytes(raw))
    assert embed(copy_of, tmp_path) == 1
    err = one_error_line(capsys)
    assert "text.onnx.data" in err and "sha256 does not match" in err


def test_missing_graph_file(copy_of, tmp_path, capsys):
    (copy_of / "text.onnx").unlink()
    assert embed(copy_of, tmp_path) == 1
    assert "text.onnx: listed in the manifest for text but missing" in one_error_line(capsys)


@pytest.mark.parametrize("opset", [99, 7, "18"])
def test_wrong_opset_in_manifest(copy_of, tmp_path, capsys, opset):
    manifest = json.loads((copy_of / "manifest.json").read_text())
    manifest["opset"] = opset
    (copy_of / "manifest.json").write_text(json.dumps(manifest))
    assert embed(copy_of, tmp_path) == 1
    err = one_error_line(capsys)
    assert f"exported with ONNX opset {opset!r}" in err and "this installation runs opsets 18-" in err


def test_corrupt_manifest(copy_of, tmp_path, capsys):
    (copy_of / "manifest.json").write_text('{"format": "bindspace-onnx", "version": 1, "towers": ')
    assert embed(copy_of, tmp_path) == 1
    one_error_line(capsys)


def test_tower_not_exported(tmp_path, tiny_model, capsys):
    from bindspace.export import export_onnx

    only_imu = export_onnx(tiny_model, tmp_path / "imu-only", modalities=["imu"], check=False)
    assert embed(only_imu, tmp_path) == 1
    assert "has no ONNX graph for text (has: imu)" in one_error_line(capsys)


def test_export_command_usage_errors(tmp_path, tiny_model_dir, onnx_dir, capsys):
    out = tmp_path / "out"
    assert main(["export", "--checkpoint", str(tiny_model_dir), "--opset", "12", "-o", str(out)]) == 2
    assert "--opset 12" in one_error_line(capsys)
    assert main(["export", "--checkpoint", str(onnx_dir), "-o", str(out)]) == 1
    assert "already an exported ONNX directory" in one_error_line(capsys)
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["export", "--checkpoint", str(tiny_model_dir), "--modalities", "imu", "-o", str(out)]) == 1
    assert "not an empty directory" in one_error_line(capsys)
    assert (out / "keep.txt").read_text() == "mine"
