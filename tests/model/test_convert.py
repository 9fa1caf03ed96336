"""`bindspace convert`: .pth -> per-modality safetensors + manifest, loadable and verified."""
import json
import subprocess
import sys

import torch

import bindspace
from bindspace.cli import main
from bindspace.integrity import sha256_file


def test_convert_writes_verified_layout(tiny_pth, tiny_state, tmp_path, capsys):
    out = tmp_path / "converted"
    assert main(["convert", str(tiny_pth), str(out), "--model", "imagebind_tiny_test"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["name"] == "imagebind_tiny_test"
    assert set(manifest["files"]) == {"vision", "text", "audio", "depth", "thermal", "imu"}
    for entry in manifest["files"].values():
        assert sha256_file(out / entry["file"]) == entry["sha256"]
    model = bindspace.create_model(checkpoint=out)
    for key, value in model.state_dict().items():
        assert torch.equal(value, tiny_state[key])


def test_convert_wrong_model_is_one_line_error(tiny_pth, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bindspace.cli", "convert", str(tiny_pth), str(tmp_path / "o"),
         "--model", "imagebind_huge"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("bindspace convert: error:")
    assert not (tmp_path / "o" / "manifest.json").exists()
