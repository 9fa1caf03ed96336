"""Prompt templates that turn class labels into sentences for the text tower.

Zero-shot classification compares an item with the text embedding of each label;
a sentence ("the sound of rain.") matches the training captions far better than a
bare word, and averaging several phrasings per label (a prompt *ensemble*) smooths
out the quirks of any single one. Every template holds one `{}` for the label.

The lists below are our own short selections; the comment above each says which
published practice it follows.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..errors import BindspaceError

PLACEHOLDER = "{}"

# Images and video frames: the style of CLIP's ImageNet prompt ensemble (Radford et al.
# 2021, "Prompt engineering and ensembling": photo-quality and size variations of
# "a photo of a {}."). A short subset-style list of our own, not CLIP's 80 prompts.
VISION_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a photo of the large {}.",
    "a photo of the small {}.",
    "a cropped photo of a {}.",
    "a close-up photo of a {}.",
    "a bright photo of a {}.",
    "a dark photo of a {}.",
    "a blurry photo of a {}.",
    "a good photo of the {}.",
)

# Audio: "the sound of {}." / "this is a sound of {}." as in common audio-text zero-shot
# practice (CLAP-style models evaluate ESC-50 with "this is a sound of {}." prompts).
AUDIO_TEMPLATES: tuple[str, ...] = (
    "the sound of {}.",
    "the sound of a {}.",
    "this is a sound of {}.",
    "a recording of {}.",
    "an audio recording of a {}.",
)

# Depth: the CLIP photo template with "depth" inserted, as depth zero-shot work does
# (ImageBind and Omnivore evaluate scene classes from depth with photo-style prompts).
DEPTH_TEMPLATES: tuple[str, ...] = (
    "a depth photo of a {}.",
    "a depth photo of the {}.",
    "a depth image of a {}.",
    "a depth map of a {}.",
)

# Thermal: the CLIP photo template with "thermal"/"infrared" inserted (the same
# convention as depth, used for LLVIP-style person/background classification).
THERMAL_TEMPLATES: tuple[str, ...] = (
    "a thermal photo of a {}.",
    "a thermal photo of the {}.",
    "a thermal image of a {}.",
    "an infrared photo of a {}.",
)

# IMU: activity labels ("walking", "cutting vegetables") read as what a person does,
# in the style of Ego4D narrations ("#C C picks a cup") that IMU-text models train on.
IMU_TEMPLATES: tuple[str, ...] = (
    "a person {}.",
    "a person is {}.",
    "someone {}.",
)

# Text classified against text labels, or no modality known: the label itself plus the
# plainest sentence (CLIP's baseline prompt without the word "photo").
GENERIC_TEMPLATES: tuple[str, ...] = (
    "{}",
    "a {}.",
)

_DEFAULTS: dict[str, tuple[str, ...]] = {
    "vision": VISION_TEMPLATES,
    "image": VISION_TEMPLATES,
    "video": VISION_TEMPLATES,
    "audio": AUDIO_TEMPLATES,
    "depth": DEPTH_TEMPLATES,
    "thermal": THERMAL_TEMPLATES,
    "imu": IMU_TEMPLATES,
    "text": GENERIC_TEMPLATES,
}


def default_templates(modality: str | None) -> tuple[str, ...]:
    """The default prompt ensemble for a modality name ("image", "video", "audio", ...; None: generic)."""
    if modality is None:
        return GENERIC_TEMPLATES
    key = str(modality).strip().lower()
    if key not in _DEFAULTS:
        raise BindspaceError(f"unknown modality {modality!r} (choose from {', '.join(sorted(_DEFAULTS))})")
    return _DEFAULTS[key]


def check_templates(templates: Iterable[str]) -> tuple[str, ...]:
    """Validate user templates: a non-empty list of strings, each with exactly one `{}`."""
    if isinstance(templates, str):
        templates = [templates]
    out = tuple(templates)
    if not out:
        raise BindspaceError("no prompt templates given (need at least one, e.g. 'a photo of a {}.')")
    for template in out:
        if not isinstance(template, str):
            raise BindspaceError(f"prompt template {template!r} is not a string")
        if template.count(PLACEHOLDER) != 1:
            raise BindspaceError(
                f"prompt template {template!r} must contain '{{}}' exactly once (where the label goes)")
    return out


def fill(template: str, label: str) -> str:
    """The template with the label in place of `{}` (other braces are kept as written)."""
    return template.replace(PLACEHOLDER, label, 1)


def prompts(labels: Sequence[str], templates: Sequence[str]) -> list[str]:
    """All label x template sentences, label-major: row `l * len(templates) + t`."""
    return [fill(template, label) for label in labels for template in templates]
