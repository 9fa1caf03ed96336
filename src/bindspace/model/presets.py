"""Model configs: the named presets (JSON files in `bindspace/model/configs/`) and a model directory's own."""
from __future__ import annotations

import json
import os
from functools import cache
from importlib import resources

from ..config import ModelConfig
from ..errors import ConfigError
from .model_dir import read_manifest
from .onnx_manifest import is_onnx_dir, onnx_config

_EXTRA: dict[str, ModelConfig] = {}


@cache
def _builtin() -> dict[str, ModelConfig]:
    configs = {}
    for entry in resources.files("bindspace.model.configs").iterdir():
        if entry.name.endswith(".json"):
            config = ModelConfig.from_dict(json.loads(entry.read_text()))
            configs[config.name] = config
    return configs


def list_models() -> list[str]:
    """Names of all presets, sorted."""
    return sorted({**_builtin(), **_EXTRA})


def get_config(name: str) -> ModelConfig:
    """The preset called `name`."""
    configs = {**_builtin(), **_EXTRA}
    if name not in configs:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(configs))}")
    return configs[name]


def register_model(config: ModelConfig) -> None:
    """Add a preset at run time (e.g. a trained tower's config)."""
    _EXTRA[config.name] = config


def manifest_config(path: str | os.PathLike[str]) -> ModelConfig:
    """The model config stored in a model directory (safetensors, or exported by `bindspace export`)."""
    if is_onnx_dir(path):
        return onnx_config(path)
    return ModelConfig.from_dict(read_manifest(path)["config"])
