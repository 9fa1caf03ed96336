"""`Detector`: find regions in images and name them with any classes of the shared space.

A class is one unit embedding: texts, audio clips, images, depth maps ... embedded by the
bindspace model and combined by weight exactly as search combines query parts. Swapping text
classes for audio classes needs no retraining: the network only ever sees class embeddings.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BindspaceError, CheckpointError, first_line
from .boxes import nms
from .config import DetectorConfig
from .network import RegionNetwork

FORMAT = "bindspace-detector"
CONFIG_FILE = "detector.json"
WEIGHTS_FILE = "weights.safetensors"

Part = tuple[str, Any]  # (kind, value): ("text", "a dog"), ("audio", "bark.wav")


@dataclass(frozen=True)
class DetectionClass:
    """A class to detect: a name and the query parts whose combined embedding stands for it."""

    name: str
    parts: tuple[Part, ...]
    weights: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Detection:
    """One detected box in the input image's pixels (x0, y0, x1, y1), with its class and score."""

    box: tuple[float, float, float, float]
    score: float
    label: str
    class_index: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"box": [round(v, 2) for v in self.box], "score": round(self.score, 4), "label": self.label,
                "class_index": self.class_index}


@dataclass
class SpaceInfo:
    """Which embedding space the detector was trained in (so classes from another space are refused)."""

    embed_dim: int
    checkpoint: str | None = None  # the model directory or preset it was trained with, as given
    fingerprint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def class_embeddings(embedder: Any, classes: Sequence[DetectionClass]) -> torch.Tensor:
    """Unit class embeddings (C, D): each class's parts embedded and combined as a search query is."""
    from ..generate.query import embed_query

    if not classes:
        raise BindspaceError("no classes to detect: give at least one text or media query part")
    rows = [embed_query(embedder, list(c.parts), list(c.weights) if c.weights is not None else None)
            for c in classes]
    return torch.from_numpy(np.stack(rows)).float()  # (C, D)


class Detector:
    """A trained region network plus the space it belongs to; `detect` turns images into named boxes."""

    def __init__(self, network: RegionNetwork, space: SpaceInfo) -> None:
        if network.config.embed_dim != space.embed_dim:
            raise BindspaceError(f"detector embeds in {network.config.embed_dim} dimensions but its space has "
                                 f"{space.embed_dim}")
        self.network = network.eval()
        self.space = space

    @property
    def config(self) -> DetectorConfig:
        """The network's config."""
        return self.network.config

    def prepare(self, images: Sequence[Any],
                names: Sequence[str] | None = None) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Images (paths, bytes, PIL, uint8 arrays) -> normalised pixels (B, 3, S, S) and each one's (width, height)."""
        batch, sizes = [], []
        for i, item in enumerate(images):
            pixels, size = resized_image(item, self.config.image_size, names[i] if names is not None else None)
            sizes.append(size)
            batch.append(normalized(pixels))
        if not batch:
            raise BindspaceError("no images to detect in")
        return torch.stack(batch), sizes

    @torch.no_grad()
    def detect(self, images: Sequence[Any], classes: torch.Tensor | np.ndarray, labels: Sequence[str], *,
               threshold: float = 0.3, iou: float = 0.5, max_detections: int = 100,
               names: Sequence[str] | None = None) -> list[list[Detection]]:
        """Boxes per image for unit class embeddings (C, D) named by `labels`, best score first."""
        device = next(self.network.parameters()).device
        class_matrix = self._check_classes(classes, labels).to(device)
        pixels, sizes = self.prepare(images, names)
        regions = self.network(pixels.to(device))
        out = []
        for b, (width, height) in enumerate(sizes):
            scores = self.scores(regions.objectness[b], regions.embeddings[b], class_matrix)  # (N, C)
            scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=device)
            out.append(select(regions.boxes[b] * scale, scores, labels, threshold, iou, max_detections))
        return out

    def scores(self, objectness: torch.Tensor, embeddings: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Detection scores (N, C): objectness at an object's centre peak times each class's probability."""
        grid = self.config.grid
        heat = torch.sigmoid(objectness).view(1, 1, grid, grid)
        # A cell counts only where its objectness is a local maximum (CenterNet's peak filter).
        peaks = (heat == F.max_pool2d(heat, 3, stride=1, padding=1)).flatten()  # (N,)
        probs = torch.sigmoid(self.network.class_logits(embeddings, classes))  # (N, C)
        return heat.flatten()[:, None] * probs * peaks[:, None]

    def _check_classes(self, classes: torch.Tensor | np.ndarray, labels: Sequence[str]) -> torch.Tensor:
        matrix = torch.as_tensor(np.asarray(classes, dtype=np.float32))
        if matrix.ndim != 2 or matrix.shape[0] == 0:
            raise BindspaceError(f"class embeddings must be (C, D) with C >= 1, got shape {tuple(matrix.shape)}")
        if matrix.shape[1] != self.space.embed_dim:
            raise BindspaceError(f"class embeddings have {matrix.shape[1]} dimensions; this detector's space has "
                                 f"{self.space.embed_dim} (were they made by another model?)")
        if len(labels) != matrix.shape[0]:
            raise BindspaceError(f"{len(labels)} labels for {matrix.shape[0]} classes")
        if not torch.isfinite(matrix).all():
            raise BindspaceError("class embeddings contain NaN or infinite values")
        return F.normalize(matrix, dim=-1)


def resized_image(item: Any, size: int, name: str | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """An image (path, bytes, PIL, uint8 array) as (size, size, 3) uint8 RGB pixels, and its own (width, height)."""
    from PIL import Image

    from ..preprocess.image import to_pil

    img = to_pil(item, name)
    resized = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8).copy(), img.size


def normalized(pixels: np.ndarray) -> torch.Tensor:
    """uint8 pixels (..., S, S, 3) -> the network's normalised input (..., 3, S, S)."""
    from ..preprocess.image import normalize

    tensor = torch.from_numpy(pixels)
    return normalize(tensor.movedim(-1, -3).float().div(255))


def select(boxes: torch.Tensor, scores: torch.Tensor, labels: Sequence[str], threshold: float, iou: float,
           max_detections: int) -> list[Detection]:
    """Detections from candidate boxes (N, 4) and scores (N, C): thresholded, per-class NMS, best first."""
    found: list[Detection] = []
    for c, label in enumerate(labels):
        rows = torch.nonzero(scores[:, c] >= threshold).flatten()
        if len(rows) == 0:
            continue
        for k in nms(boxes[rows], scores[rows, c], iou).tolist():
            r = int(rows[k])
            x0, y0, x1, y1 = (float(v) for v in boxes[r])
            found.append(Detection((x0, y0, x1, y1), float(scores[r, c]), label, c))
    found.sort(key=lambda d: -d.score)
    return found[:max_detections]


def save_detector(detector: Detector, out: str | os.PathLike[str], training: dict[str, Any] | None = None) -> Path:
    """Write the detector directory (detector.json + weights.safetensors); the folder may exist."""
    from safetensors.torch import save_file

    from ..fsio import atomic_write

    folder = Path(out)
    folder.mkdir(parents=False, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in detector.network.state_dict().items()}
    atomic_write(folder / WEIGHTS_FILE, lambda path: save_file(state, str(path)))
    space = detector.space
    meta = {"format": FORMAT, "version": 1, "config": detector.config.to_dict(),
            "space": {"embed_dim": space.embed_dim, "checkpoint": space.checkpoint, "fingerprint": space.fingerprint,
                      **space.extra},
            "training": training or {}}
    atomic_write(folder / CONFIG_FILE, json.dumps(meta, indent=1) + "\n")
    return folder


def is_detector_dir(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a folder holding a saved detector."""
    return (Path(path) / CONFIG_FILE).is_file()


def load_detector(path: str | os.PathLike[str]) -> Detector:
    """A detector from its directory; a missing, foreign or corrupt directory is one line of error."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..errors import ConfigError

    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such detector directory")
    try:
        meta = json.loads((folder / CONFIG_FILE).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: not a detector directory (no {CONFIG_FILE})") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder / CONFIG_FILE}: unreadable ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{folder / CONFIG_FILE}: not a bindspace detector")
    try:
        config = DetectorConfig.from_dict(meta["config"])
        space_data = dict(meta["space"])
        space = SpaceInfo(int(space_data.pop("embed_dim")), space_data.pop("checkpoint", None),
                          space_data.pop("fingerprint", None), space_data)
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{folder / CONFIG_FILE}: invalid detector description ({exc})") from None
    network = RegionNetwork(config)
    try:
        state = load_file(str(folder / WEIGHTS_FILE))
        network.load_state_dict(state, strict=True)
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: detector weights missing ({WEIGHTS_FILE})") from None
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise CheckpointError(f"{folder / WEIGHTS_FILE}: cannot load detector weights ({first_line(exc)})") from None
    return Detector(network, space)

