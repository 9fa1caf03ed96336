"""Recipes for the paper's four pairings: a config file plus a dataset adapter that writes the pair manifest.

    bindspace train --prepare audioset /data/audioset --manifest data/audioset_train.jsonl
    bindspace train --recipe audioset > audioset_audio.toml     # then edit paths and run it

| recipe   | pairs                          | target tower        |
|----------|--------------------------------|---------------------|
| audioset | video frame <-> audio (AudioSet) | audio, from scratch |
| sunrgbd  | image <-> depth (SUN RGB-D)     | depth, from scratch |
| llvip    | RGB <-> thermal (LLVIP)         | thermal, from scratch |
| ego4d    | video <-> IMU (Ego4D)           | imu, from scratch   |
| lora     | your pairs, LoRA on a released tower | any           |
| llm      | media <-> instruction rows     | a bridge to a language model (docs/llm.md) |
| detect   | images with boxes (COCO-style JSON) | an open-vocabulary detector (docs/detect.md) |
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ...errors import ConfigError


@dataclass(frozen=True)
class Recipe:
    """A named config file and (for the paper's datasets) the adapter that builds its manifest."""

    name: str
    config_file: str
    adapter: str | None  # module in this package with `prepare(root, manifest, **options) -> int`
    summary: str


RECIPES = {
    "audioset": Recipe("audioset", "audioset_audio.toml", "audioset", "AudioSet: video frame <-> audio"),
    "sunrgbd": Recipe("sunrgbd", "sunrgbd_depth.toml", "sunrgbd", "SUN RGB-D: image <-> depth"),
    "llvip": Recipe("llvip", "llvip_thermal.toml", "llvip", "LLVIP: RGB <-> thermal (infrared)"),
    "ego4d": Recipe("ego4d", "ego4d_imu.toml", "ego4d", "Ego4D: egocentric video <-> IMU"),
    "lora": Recipe("lora", "lora_audio.toml", None, "LoRA fine-tuning of a released tower on your own pairs"),
    "llm": Recipe("llm", "llm_bridge.toml", None, "a bridge from the embeddings to a language model (docs/llm.md)"),
    "detect": Recipe("detect", "detect_coco.toml", None,
                     "an open-vocabulary detector from a COCO-style manifest (docs/detect.md)"),
}


def get_recipe(name: str) -> Recipe:
    """The recipe called `name`, or a ConfigError listing them."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; available: {', '.join(RECIPES)}")
    return RECIPES[name]


def recipe_text(name: str) -> str:
    """The recipe's config file, as text."""
    return resources.files(__name__).joinpath(get_recipe(name).config_file).read_text(encoding="utf-8")


def prepare(name: str, root: str | Path, manifest: str | Path, **options: Any) -> int:
    """Run a recipe's dataset adapter: scan `root`, write the JSONL `manifest`; returns the number of pairs."""
    recipe = get_recipe(name)
    if recipe.adapter is None:
        raise ConfigError(f"recipe {name!r} has no dataset adapter: write a CSV/JSONL manifest of your pairs")
    module = importlib.import_module(f".{recipe.adapter}", __name__)
    fn: Callable[..., int] = module.prepare
    return fn(Path(root), Path(manifest), **options)
