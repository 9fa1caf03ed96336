"""Typed configuration of the model: one TowerConfig per modality, one ModelConfig.

Both are immutable (frozen dataclasses; `ModelConfig.towers` is a read-only mapping), so a
preset handed out by `get_config` can be shared: derive a variant with `dataclasses.replace`
or `ModelConfig.with_towers`, never by editing one in place.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .modality import Modality, as_modality


class FrozenMapping(Mapping[Modality, "TowerConfig"]):
    """A read-only, picklable, deep-copyable mapping (MappingProxyType is neither picklable nor copyable)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[Modality, TowerConfig] | None = None) -> None:
        self._data: dict[Modality, TowerConfig] = dict(data or {})

    def __getitem__(self, key: Modality) -> TowerConfig:
        return self._data[key]

    def __iter__(self) -> Iterator[Modality]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(tuple(self._data.items()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._data,))

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenMapping:
        return self  # immutable, and its values are frozen dataclasses


def _positive_ints(name: str, values: tuple[int, ...]) -> None:
    if not values or not all(isinstance(v, int) and v > 0 for v in values):
        raise ConfigError(f"{name} must be positive integers, got {values!r}")


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
        for name in ("input_size", "patch_size", "patch_stride"):  # lists (e.g. from JSON) become tuples
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        for name in ("width", "layers", "heads"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        _positive_ints("input_size", self.input_size)
        _positive_ints("patch_size", self.patch_size)
        if self.patch_stride is not None:
            _positive_ints("patch_stride", self.patch_stride)
        if not 0.0 <= self.drop_path <= 1.0:
            raise ConfigError(f"drop_path must be in [0, 1], got {self.drop_path}")
        if not 0.0 <= self.head_dropout < 1.0:
            raise ConfigError(f"head_dropout must be in [0, 1), got {self.head_dropout}")
        if not self.mlp_ratio > 0:
            raise ConfigError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        if self.logit_scale is not None and not self.logit_scale > 0:
            raise ConfigError(f"logit_scale must be > 0 (or None), got {self.logit_scale}")
        if not self.max_logit_scale > 0:
            raise ConfigError(f"max_logit_scale must be > 0, got {self.max_logit_scale}")
        if self.vocab_size < 0:
            raise ConfigError(f"vocab_size must be >= 0, got {self.vocab_size}")
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
    towers: Mapping[Modality, TowerConfig] = field(default_factory=FrozenMapping)

    def __post_init__(self) -> None:
        if not isinstance(self.embed_dim, int) or self.embed_dim < 1:
            raise ConfigError(f"embed_dim must be an integer >= 1, got {self.embed_dim!r}")
        # A private read-only copy: the caller's dict can change later without changing this config.
        object.__setattr__(self, "towers", FrozenMapping({as_modality(m): t for m, t in self.towers.items()}))

    def with_towers(self, towers: Mapping[str | Modality, TowerConfig], *, name: str | None = None) -> ModelConfig:
        """A new config with these towers (e.g. a subset: `{m: c.towers[m] for m in wanted}`)."""
        return ModelConfig(name=self.name if name is None else name, embed_dim=self.embed_dim,
                           towers={as_modality(m): t for m, t in towers.items()})

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
        except ConfigError as exc:
            raise ConfigError(f"invalid model config: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"invalid model config: {type(exc).__name__}: {exc}") from None


def _tower_to_dict(tower: TowerConfig) -> dict[str, Any]:
    out = dataclasses.asdict(tower)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _tower_from_dict(data: Mapping[str, Any]) -> TowerConfig:
    names = {f.name for f in dataclasses.fields(TowerConfig)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown tower fields {sorted(unknown)}")
    kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return TowerConfig(**kwargs)
