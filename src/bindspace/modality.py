"""The six modalities of the shared embedding space."""
from __future__ import annotations

import enum
import sys

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:

    class StrEnum(str, enum.Enum):
        def __str__(self) -> str:
            return self.value


class Modality(StrEnum):
    """A modality name; equal to its string, so `Modality.AUDIO == "audio"`."""

    VISION = "vision"
    TEXT = "text"
    AUDIO = "audio"
    DEPTH = "depth"
    THERMAL = "thermal"
    IMU = "imu"


ALL_MODALITIES: tuple[Modality, ...] = tuple(Modality)


def as_modality(value: str | Modality) -> Modality:
    """Parse a modality name (accepting the aliases `image` and `video` for vision)."""
    if isinstance(value, Modality):
        return value
    name = str(value).strip().lower()
    if name in ("image", "video"):
        return Modality.VISION
    try:
        return Modality(name)
    except ValueError:
        choices = ", ".join(m.value for m in Modality)
        raise ValueError(f"unknown modality {value!r} (choose from {choices}, image, video)") from None
