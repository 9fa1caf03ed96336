"""Which embedding space a bridge was trained in: the encoder's weights fingerprint, name and width."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckpointError


@dataclass
class SpaceInfo:
    """The encoder a projector was trained on; a bridge refuses an encoder whose fingerprint differs."""

    fingerprint: str
    name: str
    embed_dim: int
    checkpoint: str | None = None  # where it was loaded from (absolute), to find it again by default

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpaceInfo:
        """Inverse of `to_dict`."""
        return cls(str(data["fingerprint"]), str(data["name"]), int(data["embed_dim"]), data.get("checkpoint"))


def space_of(checkpoint: str | os.PathLike[str], name: str, embed_dim: int) -> SpaceInfo:
    """The SpaceInfo of an encoder checkpoint (the fingerprint covers every tower it holds)."""
    from ..index.fingerprint import model_fingerprint

    return SpaceInfo(model_fingerprint(None, checkpoint), name, embed_dim, str(Path(checkpoint).resolve()))


def check_space(expected: SpaceInfo, checkpoint: str | os.PathLike[str], where: str) -> None:
    """Raise CheckpointError unless `checkpoint` holds the weights the bridge was trained with."""
    from ..index.fingerprint import model_fingerprint

    found = model_fingerprint(None, checkpoint)
    if found != expected.fingerprint:
        raise CheckpointError(
            f"{where}: this bridge was trained in another embedding space ({expected.name}, fingerprint "
            f"{expected.fingerprint}); {checkpoint} has fingerprint {found}. Use the encoder it was trained "
            "with, or train a bridge for this one")
