"""`bindspace.train.train` and `bindspace train` end to end on tiny files: train, resume, export, load."""
from __future__ import annotations

import importlib.util
import json

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
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
    assert {"t2a_r@1", "a2t_r@1", "val_loss"} <= set(out.result.eval_metrics)
    assert json.loads((run / "config.json").read_text())["target"]["modality"] == "audio"
    if importlib.util.find_spec("tensorboard"):
        assert list((run / "tensorboard").glob("events.out.tfevents.*"))

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
