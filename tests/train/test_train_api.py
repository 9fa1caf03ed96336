"""`bindspace.train.train` and `bindspace train` end to end on tiny files: train, resume, export, load."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bindspace.cli import main
from bindspace.model import checkpoint as ckpt
from bindspace.model.factory import create_model
from bindspace.train.api import export_checkpoint, train

from .conftest import train_toml


@pytest.fixture()
def config_file(small_base_dir, pair_files, tmp_path):
    path = tmp_path / "bind.toml"
    path.write_text(train_toml(small_base_dir, pair_files, tmp_path / "run",
                               data={"val": [str(pair_files / "val.jsonl")]},
                               run={"eval_every": 2, "tensorboard": True}))
    return path


def test_train_exports_a_model_directory_every_loader_accepts(config_file, small_base_dir, tmp_path):
    out = train(config_file)
    run = tmp_path / "run"
    assert out.result.steps == 3 and out.model_dir == run / "model"
    assert out.model_dir is not None
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
    assert {"t2a_r@1", "a2t_r@1", "val_loss"} <= set(out.result.eval_metrics)
    assert json.loads((run / "config.json").read_text())["target"]["modality"] == "audio"
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))  # tensorboard is in the [train] extra

    base = ckpt.load_state_dict(small_base_dir)
    exported = ckpt.load_state_dict(out.model_dir)
    assert set(exported) == set(base)
    for key in base:
        trained = ckpt.key_modality(key) == "audio" and not key.endswith("log_logit_scale")  # a fixed buffer
        assert torch.equal(base[key], exported[key]) != trained, key  # only the audio tower changed
    model = create_model(checkpoint=out.model_dir)  # no preset name needed
    assert set(model.modalities) == {"vision", "text", "audio"}
    manifest = json.loads((out.model_dir / "manifest.json").read_text())
    assert manifest["training"]["steps"] == 3 and manifest["training"]["target"] == "audio"

    again = train(config_file)  # the same command resumes, finds the run complete
    assert again.result.steps == 3 and again.result.history == []
    redo = export_checkpoint(config_file, out_dir=tmp_path / "re-export")
    assert all(torch.equal(v, exported[k]) for k, v in ckpt.load_state_dict(redo).items())


def test_cli_train_check_recipe_and_errors(config_file, tmp_path, capsys):
    assert main(["train", str(config_file), "--check", "--set", "optim.lr=0.5"]) == 0
    assert json.loads(capsys.readouterr().out)["optim"]["lr"] == 0.5

    assert main(["train", str(config_file), "--steps", "1", "--out-dir", str(tmp_path / "cli"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "trained 1 steps" in printed and f"model directory: {tmp_path / 'cli' / 'model'}" in printed

    assert main(["train", "--recipe", "llvip"]) == 0
    assert 'modality = "thermal"' in capsys.readouterr().out

    assert main(["train", str(tmp_path / "missing.toml")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"bindspace train: error: {tmp_path / 'missing.toml'}: config file not found"

    assert main(["train", str(config_file), "--set", "optim.lr=-1"]) == 1
    assert capsys.readouterr().err.strip().endswith("optim.lr: must be > 0, got -1.0")

    assert main(["train", "--recipe", "nope"]) == 1
    assert "unknown recipe 'nope'" in capsys.readouterr().err


def _val_manifest(pair_files: Path, folder: Path, count: int) -> Path:
    path = folder / "val6.jsonl"
    path.write_text("".join(json.dumps({"image": str(pair_files / f"img{i}.png"),
                                        "audio": str(pair_files / f"snd{i}.wav")}) + "\n" for i in range(count)))
    return path


def test_cli_validates_every_pair_and_a_rerun_says_the_run_was_complete(small_base_dir, pair_files, tmp_path, capsys):
    # 6 validation pairs in batches of 4: the short last batch counts too (it used to be dropped: 4 pairs)
    val = _val_manifest(pair_files, tmp_path, 6)
    config = tmp_path / "bind.toml"
    config.write_text(train_toml(small_base_dir, pair_files, tmp_path / "run", data={"val": [str(val)]},
                                 run={"steps": 2}))
    assert main(["train", str(config), "--quiet"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("trained 2 steps in ") and "val_pairs 6.0000" in first
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_pairs"] for r in records if "val_pairs" in r] == [6.0]

    assert main(["train", str(config), "--quiet"]) == 0  # the same command again: nothing left to do
    again = capsys.readouterr().out.splitlines()
    assert again[0].startswith("already complete: all 2 steps were trained by an earlier run (")
    assert "step_00000002.pt" in again[0] and "nothing to train" in again[0]
    assert again[1].startswith("exported the final checkpoint again: ")
    assert not any(line.startswith("trained") for line in again)

    assert main(["train", str(config), "--quiet", "--steps", "3", "--resume", "never",
                 "--out-dir", str(tmp_path / "run3"), "--set", "run.save_every=2"]) == 0
    capsys.readouterr()
    (tmp_path / "run3" / "checkpoints" / "step_00000003.pt").unlink()  # as if killed after step 2
    (tmp_path / "run3" / "checkpoints" / "latest").unlink()
    assert main(["train", str(config), "--quiet", "--steps", "3", "--out-dir", str(tmp_path / "run3")]) == 0
    resumed = capsys.readouterr().out.splitlines()[0]
    assert resumed.startswith("trained 1 steps in ") and "(resumed at step 2; now 3 of 3)" in resumed


def _digit_pairs(folder: Path, count: int) -> Path:
    """16x16 RGB images paired with depth maps (.npy, metres); returns the manifest."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(3)
    rows = []
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"rgb{i}.png")
        np.save(folder / f"depth{i}.npy", (rng.random((16, 16)) * 4).astype(np.float32))
        rows.append({"image": f"rgb{i}.png", "depth": f"depth{i}.npy"})
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_model_directory_is_the_frozen_anchor_of_a_new_modality(tmp_path, capsys):
    """Bind depth to the 64-d demo space, which is no preset: `anchor.model` names its directory."""
    from bindspace.model.checkpoint import save_model_dir
    from bindspace.model.imagebind import ImageBindModel
    from bindspace.train.demo import demo_config

    torch.manual_seed(0)
    demo = ImageBindModel(demo_config())
    demo.init_weights()
    space = save_model_dir(demo.state_dict(), demo_config(), tmp_path / "demo-model")  # as `bindspace demo --out`
    manifest = _digit_pairs(tmp_path, 8)
    config = tmp_path / "depth.toml"
    config.write_text(f"""
[anchor]
modality = "vision"
model = "{space}"
[target]
modality = "depth"
model = "imagebind_tiny_test"
overrides = {{ input_size = [16, 16], patch_size = [8, 8] }}
[data]
train = ["{manifest}"]
num_workers = 0
[run]
out_dir = "{tmp_path / 'run'}"
steps = 2
batch_size = 4
tensorboard = false
""")
    assert main(["train", str(config), "--quiet"]) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    exported = tmp_path / "run" / "model"
    model = create_model(checkpoint=exported)
    assert model.config.embed_dim == 64 and set(model.modalities) == {"vision", "text", "audio", "depth"}
    base, out = ckpt.load_state_dict(space), ckpt.load_state_dict(exported)
    assert all(torch.equal(base[k], out[k]) for k in base)  # the demo's towers, untouched
    assert main(["embed", "--checkpoint", str(exported), "--modality", "depth", str(tmp_path / "depth0.npy"),
                 "-o", str(tmp_path / "e.npy")]) == 0
    import numpy as np

    assert np.load(tmp_path / "e.npy").shape == (1, 64)
    capsys.readouterr()

    config.write_text(config.read_text().replace(str(space), str(tmp_path / "nowhere")))
    assert main(["train", str(config), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"bindspace train: error: {config}: anchor.model: '{tmp_path / 'nowhere'}' is neither "
                          "a preset (imagebind_huge, ")
    assert err.endswith("nor a model directory (a folder with manifest.json)")
