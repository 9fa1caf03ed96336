"""Fixtures for the training tests: a very small three-tower model, its checkpoint, tiny media files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bindspace.config import ModelConfig, TowerConfig
from bindspace.modality import Modality

SMALL_NAME = "train_small_test"


def small_config(drop_path: float = 0.0) -> ModelConfig:
    """Vision 16x16 images, text, and audio with the standard 128 x 204 log-mel input; all 16 wide."""
    return ModelConfig(SMALL_NAME, 16, {
        Modality.VISION: TowerConfig(16, 1, 2, (16, 16), (2, 8, 8), in_channels=3, pre_norm=True),
        Modality.TEXT: TowerConfig(16, 1, 2, (77,), (1,), vocab_size=49408, logit_scale=14.0,
                                   learnable_logit_scale=True),
        Modality.AUDIO: TowerConfig(16, 1, 2, (128, 204), (128, 51), add_bias_kv=True, drop_path=drop_path,
                                    logit_scale=20.0),
    })


@pytest.fixture(scope="session", autouse=True)
def _register_small():
    from bindspace.model.presets import register_model

    register_model(small_config())


@pytest.fixture(scope="session")
def small_base_dir(tmp_path_factory) -> Path:
    """A model directory with random (seeded) weights for all three towers: the 'released' base."""
    from bindspace.model.checkpoint import save_model_dir
    from bindspace.model.imagebind import ImageBindModel

    torch.manual_seed(123)
    model = ImageBindModel(small_config())
    model.init_weights()
    return save_model_dir(model.state_dict(), small_config(), tmp_path_factory.mktemp("base") / "small")


def write_pairs(folder: Path, count: int, *, seed: int = 0, seconds: float = 2.5) -> list[dict]:
    """`count` (PNG image, WAV audio) pairs with distinct content; returns manifest rows (relative paths)."""
    import soundfile as sf
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
        t = np.arange(int(16000 * seconds)) / 16000
        wave = 0.3 * np.sin(2 * np.pi * (300 + 50 * i) * t) + 0.01 * rng.standard_normal(t.shape)
        sf.write(folder / f"snd{i}.wav", wave.astype(np.float32), 16000)
        rows.append({"image": f"img{i}.png", "audio": f"snd{i}.wav"})
    return rows


@pytest.fixture(scope="session")
def pair_files(tmp_path_factory) -> Path:
    """A folder with 12 image/audio pairs and train.jsonl / val.jsonl / train.csv manifests."""
    folder = tmp_path_factory.mktemp("pairs")
    rows = write_pairs(folder, 12)
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    (folder / "train.csv").write_text("image,audio\n" + "".join(f"{r['image']},{r['audio']}\n" for r in rows))
    return folder


def train_toml(base: Path, pairs: Path, out: Path, **sections: dict) -> str:
    """A config (TOML text) binding audio to the small base's frozen vision tower; sections override keys."""
    config: dict[str, dict] = {
        "anchor": {"modality": "vision", "checkpoint": str(base)},
        "target": {"modality": "audio", "checkpoint": str(base), "init": "random"},
        "data": {"train": [str(pairs / "train.jsonl")], "num_workers": 0},
        "optim": {"lr": 1e-3, "warmup_steps": 1},
        "run": {"out_dir": str(out), "steps": 3, "batch_size": 4, "log_every": 1, "save_every": 2,
                "progress": False, "tensorboard": False},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    lines = []
    for name, values in config.items():
        plain = {k: v for k, v in values.items() if not isinstance(v, dict)}
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in plain.items()]
        for sub, table in values.items():
            if isinstance(table, dict):
                lines.append(f"[{name}.{sub}]")
                lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"
