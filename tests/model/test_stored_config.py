"""A model directory always loads with the config it stores, even when its name is a preset's."""
from __future__ import annotations

import dataclasses

import torch

from bindspace.config import ModelConfig, TowerConfig
from bindspace.modality import Modality
from bindspace.model import create_model
from bindspace.model.checkpoint import save_model_dir
from bindspace.model.imagebind import ImageBindModel
from bindspace.model.presets import get_config


def _variant() -> ModelConfig:
    """The tiny preset's name, but towers that differ without changing any weight shape (heads, scale)."""
    preset = get_config("imagebind_tiny_test")
    towers: dict[str | Modality, TowerConfig] = {m: cfg for m, cfg in preset.towers.items()}
    towers[Modality.TEXT] = dataclasses.replace(preset.towers[Modality.TEXT], heads=2, logit_scale=5.0)
    towers[Modality.VISION] = dataclasses.replace(preset.towers[Modality.VISION], heads=1)
    return preset.with_towers(towers)


def test_a_directory_named_like_a_preset_loads_with_its_own_towers(tmp_path):
    variant = _variant()
    assert variant.name == "imagebind_tiny_test" and variant.towers != get_config("imagebind_tiny_test").towers
    torch.manual_seed(0)
    reference = ImageBindModel(variant, [Modality.TEXT, Modality.VISION])
    reference.init_weights()
    folder = save_model_dir(reference.state_dict(), variant, tmp_path / "finetuned")

    loaded = create_model("imagebind_tiny_test", checkpoint=folder, modalities=["text", "vision"])
    assert loaded.config.towers[Modality.TEXT].heads == 2 and loaded.config.towers[Modality.VISION].heads == 1
    ids = torch.randint(1, 100, (2, 77))
    ids[:, 10] = 49407  # end of text
    pixels = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        for tower, x in (("text", ids), ("vision", pixels)):
            torch.testing.assert_close(loaded.encode(tower, x), reference.encode(tower, x))
        # the stored text scale (5), not the preset's
        torch.testing.assert_close(loaded({"text": ids})["text"].norm(dim=-1), torch.full((2,), 5.0))
