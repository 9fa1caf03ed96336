"""Config files: TOML / YAML / JSON, overrides, and clear validation errors."""
from __future__ import annotations

import json
from typing import Any

import pytest
import tomllib

from bindspace.errors import ConfigError
from bindspace.train.config import TrainConfig, apply_override, load_config
from bindspace.train.recipes import RECIPES, recipe_text

MINIMAL: dict[str, dict[str, Any]] = {
    "anchor": {"modality": "image", "checkpoint": "base"},
    "target": {"modality": "audio", "model": "imagebind_huge"},
    "data": {"train": "pairs.jsonl"},
    "run": {"steps": 10},
}


def parse(data: dict) -> TrainConfig:
    return TrainConfig.from_dict(data, "cfg.toml")


def with_(**changes: dict) -> dict:
    data = json.loads(json.dumps(MINIMAL))
    for section, values in changes.items():
        data.setdefault(section, {}).update(values)
    return data


def test_minimal_config_defaults_and_resolution():
    config = parse(MINIMAL)
    assert config.anchor_modality == "vision" and config.target_modality == "audio"
    assert config.data.train == ("pairs.jsonl",)  # a single path becomes a list
    assert config.run.precision == "fp32" and config.optim.weight_decay == 0.05
    assert config.loss.temperature == "model"
    assert TrainConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()


def test_toml_yaml_and_json_files_read_the_same(tmp_path):
    import yaml  # in the [train] extra
    (tmp_path / "c.json").write_text(json.dumps(MINIMAL))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(MINIMAL))
    toml = "\n".join(f"[{s}]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in vals.items())
                     for s, vals in MINIMAL.items())
    (tmp_path / "c.toml").write_text(toml)
    dicts = [load_config(tmp_path / f"c.{ext}").to_dict() for ext in ("json", "yaml", "toml")]
    assert dicts[0] == dicts[1] == dicts[2]


@pytest.mark.parametrize("change, message", [
    ({"optim": {"lrr": 1}}, "cfg.toml: optim.lrr: unknown setting (did you mean 'lr'?)"),
    ({"optim": {"lr": "fast"}}, "cfg.toml: optim.lr: expected a number, got the string 'fast'"),
    ({"optim": {"lr": -1.0}}, "cfg.toml: optim.lr: must be > 0, got -1.0"),
    ({"run": {"steps": 10, "epochs": 2}}, "cfg.toml: run: set exactly one of steps and epochs"),
    ({"run": {"precision": "fp8"}}, "cfg.toml: run.precision: expected one of 'fp32', 'bf16', 'fp16', got 'fp8'"),
    ({"run": {"batch_size": 0}}, "cfg.toml: run.batch_size: must be >= 1, got 0"),
    ({"run": {"batch_size": True}}, "cfg.toml: run.batch_size: expected an integer, got true"),
    ({"target": {"modality": "smell"}}, "cfg.toml: target.modality: unknown modality 'smell'"),
    ({"target": {"modality": "vision"}}, "cfg.toml: target.modality: must differ from the anchor's (vision)"),
    ({"target": {"lora": {"rank": 4}}}, "cfg.toml: target.lora: LoRA adapts existing weights: give target.checkpoint"),
    ({"target": {"checkpoint": "c", "lora": {"targets": ["qkv"]}}},
     "cfg.toml: target.lora.targets: unknown target 'qkv'"),
    ({"target": {"overrides": {"layer": 2}}},
     "cfg.toml: target.overrides.layer: unknown tower field (did you mean 'layers'?)"),
    ({"anchor": {"checkpoint": None}}, "cfg.toml: anchor.model: a randomly initialised tower needs a preset"),
    ({"loss": {"temperature": "hot"}},
     "cfg.toml: loss.temperature: expected a number or one of 'model', got the string 'hot'"),
    ({"loss": {"learnable": True}}, "cfg.toml: loss.learnable: applies to a numeric temperature"),
    ({"augment": {"crop_scale": [0.9, 0.2]}}, "cfg.toml: augment.crop_scale: need 0 < min <= max <= 1"),
    ({"data": {"train": []}}, "cfg.toml: data.train: give at least one manifest"),
    ({"data": {"train": ["s.tar"]}, "run": {"steps": None, "epochs": 1}},
     "cfg.toml: run.steps: tar shards are streamed"),
    ({"bogus": {}}, "cfg.toml: bogus: unknown setting"),
    ({"target": {"checkpoint": "c", "lora": {"rank": "x"}}}, "cfg.toml: target.lora.rank: expected an integer"),
])
def test_errors_name_the_setting_and_the_problem(change, message):
    with pytest.raises(ConfigError) as info:
        parse(with_(**change))
    assert str(info.value).startswith(message), str(info.value)


def test_missing_and_unparsable_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nsteps = 1\n")
    with pytest.raises(ConfigError, match=r"bad.toml: cannot parse"):
        load_config(bad)
    (tmp_path / "c.ini").write_text("x")
    with pytest.raises(ConfigError, match="unknown config format"):
        load_config(tmp_path / "c.ini")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="top level must be a table"):
        load_config(tmp_path / "list.json")


def test_overrides_parse_values_and_create_sections(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(MINIMAL))
    config = load_config(path, ["run.steps=5", "optim.lr=3e-4", "run.precision=bf16", "data.num_workers=0",
                                "optim.betas=[0.9, 0.99]", "loss.temperature=0.05"])
    assert (config.run.steps, config.optim.lr, config.run.precision) == (5, 3e-4, "bf16")
    assert config.optim.betas == (0.9, 0.99) and config.loss.temperature == 0.05
    data: dict = {}
    apply_override(data, "target.lora.rank=4")
    assert data == {"target": {"lora": {"rank": 4}}}
    with pytest.raises(ConfigError, match="KEY.PATH=VALUE"):
        apply_override(data, "run.steps")


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipes_are_valid_configs(name):
    import bindspace.detect.recipe  # noqa: F401 - registers kind = "detect" (`bindspace train` imports it too)
    import bindspace.llm.recipe  # noqa: F401 - registers kind = "llm" (`bindspace train` imports it too)

    config = TrainConfig.from_dict(tomllib.loads(recipe_text(name)), name)
    if config.kind == "llm":  # a bridge: no anchor/target towers; the LM and the (frozen) encoder are named
        assert config.llm["model"] and config.llm["encoder"]
    elif config.kind == "detect":  # a detector: the frozen encoder names the classes; no towers train
        assert config.detect["encoder"] and "{name}" in config.detect["prompt"]
    else:
        assert config.anchor.freeze is not False and config.anchor.checkpoint


def test_a_recipe_kind_whose_package_is_not_loaded_is_a_one_line_error() -> None:
    from bindspace.train.config import train_kind

    with pytest.raises(ConfigError) as info:
        train_kind("speech", "recipe.toml")
    message = str(info.value)
    assert "\n" not in message and message.startswith("recipe.toml: kind = 'speech': no trainer registered")


def test_the_llm_package_registers_its_recipe_kind() -> None:
    from bindspace.llm import recipe
    from bindspace.train.config import train_kind

    kind = train_kind("llm")
    assert (kind.validate, kind.train, kind.export_checkpoint) == (
        recipe.validate_recipe, recipe.train_bridge, recipe.export_bridge_checkpoint)
