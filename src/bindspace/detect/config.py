"""The detector's shape: a frozen, typed value stored beside its weights."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True)
class DetectorConfig:
    """A small anchor-free (CenterNet-style) detector whose region embeddings live in a shared space.

    Images are resized to `image_size` squared; the backbone's output grid has one cell per
    `stride` pixels, and each cell predicts an objectness, a box and a unit embedding of width
    `embed_dim` (the space of the bindspace model whose class embeddings score the regions).
    """

    embed_dim: int
    image_size: int = 64
    stride: int = 4
    channels: int = 64
    # Box sizes are predicted as exp(t) * box_prior * stride pixels: the prior centres the range.
    box_prior: float = 4.0

    def __post_init__(self) -> None:
        for name in ("embed_dim", "image_size", "stride", "channels"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"detector {name} must be positive, got {getattr(self, name)}")
        if self.stride not in (1, 2, 4, 8, 16):
            raise ConfigError(f"detector stride must be 1, 2, 4, 8 or 16, got {self.stride}")
        if self.channels % 16:
            raise ConfigError(f"detector channels must be a multiple of 16 (group norm of 8 groups at half width), "
                              f"got {self.channels}")
        if self.image_size % self.stride:
            raise ConfigError(f"detector image_size {self.image_size} is not a multiple of its stride {self.stride}")
        if not self.box_prior > 0:
            raise ConfigError(f"detector box_prior must be positive, got {self.box_prior}")

    @property
    def grid(self) -> int:
        """Cells per side of the output grid."""
        return self.image_size // self.stride

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the stored form)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorConfig:
        """The config back from `to_dict`'s form; unknown keys are an error, not ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown detector config keys: {', '.join(unknown)}")
        return cls(**data)
