"""Typed configuration of the model: one TowerConfig per modality, one ModelConfig."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .modality import Modality, as_modality


@dataclass(frozen=True)
class TowerConfig:
    """One modality encoder: patch stem, transformer trunk, head and output scale."""

    width: int
    layers: int
    heads: int
    # Stem geometry. Images/spectrograms: input_size=(H, W); IMU: (time steps,);
    # text: (context length,). Vision's patch_size is (time, height, width).
    input_size: tuple[int, ...]
    patch_size: tuple[int, ...]
    patch_stride: tuple[int, ...] | None = None  # None: equal to patch_size
    in_channels: int = 1
    vocab_size: int = 0  # text only
    mlp_ratio: float = 4.0
    add_bias_kv: bool = False
    pre_norm: bool = False  # LayerNorm before the first block (vision only in ImageBind)
    drop_path: float = 0.0  # largest stochastic-depth rate, reached at the last block
    head_dropout: float = 0.0
    logit_scale: float | None = None  # None: L2-normalise only (vision)
    learnable_logit_scale: bool = False
    max_logit_scale: float = 100.0

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ConfigError(f"width {self.width} is not divisible by heads {self.heads}")
        if len(self.input_size) != len(self.patch_size) - (1 if len(self.patch_size) == 3 else 0):
            raise ConfigError(f"input_size {self.input_size} does not match patch_size {self.patch_size}")

    @property
    def stride(self) -> tuple[int, ...]:
        """Patch stride (defaults to the patch size)."""
        return self.patch_stride or self.patch_size

    @property
    def grid(self) -> tuple[int, ...]:
        """Number of patches along each spatial (or temporal) axis of one item."""
        spatial_patch = self.patch_size[-len(self.input_size):]
        spatial_stride = self.stride[-len(self.input_size):]
        return tuple((n - p) // s + 1 for n, p, s in zip(self.input_size, spatial_patch, spatial_stride))

    @property
    def num_patches(self) -> int:
        """Tokens produced by the stem (excluding the cls token)."""
        return math.prod(self.grid)


@dataclass(frozen=True)
class ModelConfig:
    """The whole model: a shared output width and the towers present."""

    name: str
    embed_dim: int
    towers: Mapping[Modality, TowerConfig] = field(default_factory=dict)

    def tower(self, modality: str | Modality) -> TowerConfig:
        """The config of one tower, or a ConfigError naming the available ones."""
        key = as_modality(modality)
        if key not in self.towers:
            have = ", ".join(self.towers) or "none"
            raise ConfigError(f"model {self.name!r} has no {key} tower (has: {have})")
        return self.towers[key]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (the format of `configs/*.json` and model directories)."""
        return {
            "name": self.name,
            "embed_dim": self.embed_dim,
            "towers": {str(m): _tower_to_dict(t) for m, t in self.towers.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Parse and validate the JSON form."""
        try:
            towers = {as_modality(m): _tower_from_dict(t) for m, t in data["towers"].items()}
            return cls(name=str(data["name"]), embed_dim=int(data["embed_dim"]), towers=towers)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid model config: {exc}") from None


def _tower_to_dict(tower: TowerConfig) -> dict[str, Any]:
    out = dataclasses.asdict(tower)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _tower_from_dict(data: Mapping[str, Any]) -> TowerConfig:
    names = {f.name for f in dataclasses.fields(TowerConfig)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown tower fields {sorted(unknown)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return TowerConfig(**kwargs)
