"""How a bindspace embedding becomes the `image_embeds` an unCLIP pipeline expects.

ImageBind's vision tower is OpenCLIP ViT-H/14 with its projection, L2-normalised at the end.
Stable unCLIP (the "h" variant) was trained on the same projection's output WITHOUT that
normalisation: `CLIPVisionModelWithProjection(...).image_embeds`. So our unit vector has the
right direction and the wrong length. The transform is

    image_embeds = embed_norm * unit_query

with `embed_norm` the typical norm of the pipeline's own image embeddings. Directions are
kept (they carry the meaning; other modalities are bound to the image directions), and the
pipeline's `image_normalizer` (mean/std) and noise augmentation then see vectors of the size
they were trained on. `embed_norm` comes, in this order, from: the caller (`--embed-norm`);
`bindspace_generate.json` in the pipeline directory (written by `calibrate`, from your own
photos); or a measurement on the pipeline's own image encoder over the fixed procedural
calibration images below.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import BindspaceError, first_line
from ..fsio import atomic_write
from ..quiet import quiet

SETTINGS_FILE = "bindspace_generate.json"
CALIBRATION_IMAGES = 8


@dataclass
class EmbedNorm:
    """The norm to scale unit embeddings to, and where it came from."""

    value: float
    source: str  # "given", "settings file", "measured"
    std: float = 0.0  # spread of the measured norms (0 when not measured)
    images: int = 0  # how many images were measured


def to_image_embeds(unit: torch.Tensor, norm: float) -> torch.Tensor:
    """The pinned transform: (Q, D) unit vectors -> (Q, D) pipeline image embeddings of length `norm`."""
    return torch.nn.functional.normalize(unit.float(), dim=-1) * float(norm)


def calibration_images(count: int = CALIBRATION_IMAGES, size: int = 224, seed: int = 0) -> list[Any]:
    """Deterministic colour images with a natural-image (1/f) spectrum: no download, no bundled photos."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    radius[0, 0] = 1.0
    out = []
    for _ in range(count):
        slope = rng.uniform(1.6, 2.4) / 2  # amplitude ~ 1/f^(slope), power ~ 1/f^(2 slope)
        channels = []
        for _ in range(3):
            spectrum = (rng.normal(size=radius.shape) + 1j * rng.normal(size=radius.shape)) / radius**slope
            spectrum[0, 0] = 0
            field = np.fft.irfft2(spectrum, s=(size, size))
            channels.append((field - field.mean()) / (field.std() + 1e-8))
        mix = rng.normal(size=(3, 3)) * 0.4 + np.eye(3)  # correlated channels, as in photos
        rgb = np.tensordot(mix, np.stack(channels), axes=1)  # (3, H, W)
        rgb = 0.5 + 0.18 * rgb + rng.uniform(-0.15, 0.15, size=(3, 1, 1))
        out.append(Image.fromarray((np.clip(rgb, 0, 1).transpose(1, 2, 0) * 255).astype(np.uint8)))
    return out


@torch.no_grad()
def measure_norms(image_encoder: Any, feature_extractor: Any, images: list[Any]) -> np.ndarray:
    """Norms of the encoder's `image_embeds` for `images` (PIL images): what the pipeline was trained on."""
    param = next(image_encoder.parameters())
    pixels = feature_extractor(images=images, return_tensors="pt").pixel_values.to(param.device, param.dtype)
    embeds = image_encoder(pixels).image_embeds.float()  # (N, D), not normalised
    return embeds.norm(dim=-1).cpu().numpy()


def read_settings(pipeline_dir: str | Path) -> dict[str, Any]:
    """bindspace's notes about a pipeline directory ({} when there are none)."""
    path = Path(pipeline_dir) / SETTINGS_FILE
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BindspaceError(f"{path}: unreadable ({exc})") from None
    if not isinstance(settings, dict):
        raise BindspaceError(f"{path}: expected a JSON object")
    return settings


def resolve_embed_norm(pipeline_dir: str | Path, pipe: Any = None, given: float | None = None) -> EmbedNorm:
    """The norm for this pipeline: given > settings file > measured on `pipe`'s image encoder."""
    if given is not None:
        return EmbedNorm(_check_norm(given, "--embed-norm"), "given")
    settings = read_settings(pipeline_dir)
    if "embed_norm" in settings:
        return EmbedNorm(_check_norm(settings["embed_norm"], f"{Path(pipeline_dir) / SETTINGS_FILE}: embed_norm"),
                         "settings file", float(settings.get("embed_norm_std", 0.0)), int(settings.get("images", 0)))
    encoder = getattr(pipe, "image_encoder", None)
    extractor = getattr(pipe, "feature_extractor", None)
    if encoder is None or extractor is None:
        raise BindspaceError(f"{pipeline_dir}: no image encoder to measure the embedding norm on; "
                             f"pass --embed-norm or calibrate the pipeline once (see docs/generate.md)")
    norms = measure_norms(encoder, extractor, calibration_images())
    return EmbedNorm(float(norms.mean()), "measured", float(norms.std()), len(norms))


def calibrate(pipeline_dir: str | Path, images: list[Any] | None = None, *, write: bool = True) -> EmbedNorm:
    """Measure the pipeline encoder's norm on `images` (default: the procedural set); save it in the dir."""
    folder = Path(pipeline_dir)
    try:
        with quiet(hf=True, ignore=FutureWarning):
            from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

            encoder = CLIPVisionModelWithProjection.from_pretrained(folder / "image_encoder",
                                                                    use_safetensors=True).eval()
            extractor = CLIPImageProcessor.from_pretrained(folder / "feature_extractor")
    except (OSError, ValueError) as exc:
        raise BindspaceError(f"{folder}: cannot load the pipeline's image encoder ({first_line(exc)})") from None
    pictures = images if images is not None else calibration_images()
    norms = measure_norms(encoder, extractor, [_rgb(p) for p in pictures])
    result = EmbedNorm(float(norms.mean()), "measured", float(norms.std()), len(norms))
    if write:
        settings = {**read_settings(folder), "embed_norm": result.value, "embed_norm_std": result.std,
                    "images": result.images, "measured_on": "given images" if images is not None else "procedural"}
        atomic_write(folder / SETTINGS_FILE, json.dumps(settings, indent=1) + "\n")
    return result


def embed_norm_report(norm: EmbedNorm) -> dict[str, Any]:
    """JSON-ready description of the transform that was applied."""
    return {"transform": "image_embeds = embed_norm * unit_query", **asdict(norm)}


def _rgb(image: Any) -> Any:
    from PIL import Image

    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as handle:
                return handle.convert("RGB")
        except OSError as exc:
            raise BindspaceError(f"{image}: not a readable image ({exc})") from None
    return image.convert("RGB")


def _check_norm(value: Any, what: str) -> float:
    try:
        norm = float(value)
    except (TypeError, ValueError):
        raise BindspaceError(f"{what} must be a number, got {value!r}") from None
    if not (math.isfinite(norm) and norm > 0):
        raise BindspaceError(f"{what} must be a positive number, got {value!r}")
    return norm


