"""Model configs: immutable presets, validated ranges, and DropPath at its extremes."""
from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
import torch

import bindspace
from bindspace.config import ModelConfig, TowerConfig
from bindspace.errors import ConfigError
from bindspace.layers.drop_path import DropPath

TINY = "imagebind_tiny_test"


def test_presets_cannot_be_changed_by_a_caller():
    config = bindspace.get_config(TINY)
    with pytest.raises((TypeError, AttributeError)):
        config.towers.pop("imu")  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        config.towers["imu"] = config.tower("text")  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.embed_dim = 3  # type: ignore[misc]
    assert "imu" in bindspace.get_config(TINY).towers and len(bindspace.get_config(TINY).towers) == 6


def test_config_keeps_a_private_copy_of_the_towers_dict():
    towers = dict(bindspace.get_config(TINY).towers)
    config = ModelConfig(name="mine", embed_dim=24, towers=towers)
    towers.pop(bindspace.Modality.IMU)
    assert bindspace.Modality.IMU in config.towers


def test_derived_configs_pickle_copy_and_compare():
    base = bindspace.get_config(TINY)
    subset = base.with_towers({m: base.tower(m) for m in ("text", "audio")}, name="pair")
    assert list(subset.towers) == ["text", "audio"] and subset.name == "pair"
    assert len(base.towers) == 6
    assert pickle.loads(pickle.dumps(base)) == base
    assert copy.deepcopy(base) == base and hash(base) == hash(copy.deepcopy(base))
    assert ModelConfig.from_dict(base.to_dict()) == base
    wider = dataclasses.replace(base.tower("text"), drop_path=0.2)
    assert wider.drop_path == 0.2 and base.tower("text").drop_path == 0.0


@pytest.mark.parametrize("field, value", [
    ("drop_path", 1.5), ("drop_path", -0.1), ("head_dropout", 1.0), ("width", 0), ("layers", 0),
    ("heads", -4), ("mlp_ratio", 0.0), ("logit_scale", -1.0), ("input_size", (0,)), ("patch_size", ()),
])
def test_tower_values_out_of_range_are_refused(field, value):
    text = bindspace.get_config(TINY).tower("text")
    with pytest.raises(ConfigError, match=field):
        dataclasses.replace(text, **{field: value})


def test_invalid_json_config_names_the_problem():
    data = bindspace.get_config(TINY).to_dict()
    data["towers"]["text"]["drop_path"] = 2.0
    with pytest.raises(ConfigError, match="invalid model config: drop_path must be in"):
        ModelConfig.from_dict(data)
    data["towers"]["text"]["drop_path"] = 0.0
    data["embed_dim"] = 0
    with pytest.raises(ConfigError, match="embed_dim"):
        ModelConfig.from_dict(data)


def test_drop_path_one_drops_the_whole_branch():
    layer = DropPath(1.0).train()
    x = torch.randn(4, 3, 8, requires_grad=True)
    out = layer(x)
    assert torch.equal(out, torch.zeros_like(x))  # not NaN
    out.sum().backward()
    assert x.grad is not None and torch.equal(x.grad, torch.zeros_like(x))


def test_drop_path_rescales_kept_samples_and_is_identity_in_eval():
    torch.manual_seed(0)
    x = torch.ones(2000, 4)
    out = DropPath(0.25).train()(x)
    rows = out[:, 0]
    assert sorted(rows.unique().tolist()) == [0.0, pytest.approx(1 / 0.75)]
    assert abs((rows == 0).float().mean().item() - 0.25) < 0.05
    assert torch.equal(DropPath(1.0).eval()(x), x)
    with pytest.raises(ValueError, match="drop path rate"):
        DropPath(1.5)


def test_model_with_full_drop_path_trains_without_nans(tiny_state):
    base = bindspace.get_config(TINY)
    text = dataclasses.replace(base.tower("text"), drop_path=1.0)
    model = bindspace.create_model(base.with_towers({"text": text}))
    model.train()
    out = model.encode("text", torch.randint(1, 100, (2, 77)))
    assert torch.isfinite(out).all()
    assert TowerConfig.__dataclass_params__.frozen  # type: ignore[attr-defined]
