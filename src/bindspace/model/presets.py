"""Named model presets, read from the JSON files in `bindspace/model/configs/`."""
from __future__ import annotations

import json
from functools import cache
from importlib import resources

from ..config import ModelConfig
from ..errors import ConfigError

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
