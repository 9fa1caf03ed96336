"""`kind = "detect"` recipes of `bindspace train`: fit a detector's region network on a COCO-style manifest.

    kind = "detect"
    [detect]
    encoder = "runs/demo/model"        # the frozen bindspace model: its text tower embeds the class names
    prompt = "a photo of a {name}"     # how a category name becomes a text ("{name}": the name as given)
    [data]
    train = ["train.json"]             # COCO-style: images, annotations (bbox x, y, w, h), categories
    [run]
    steps = 2000

The bindspace model stays frozen and is only used once, to embed the class names; the region
network (backbone, objectness, boxes, region embeddings, classifier scale and bias) is what
trains, with the shared Trainer (checkpoints, resume, metrics.jsonl, `--export-only`).
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputError
from ..modality import Modality
from ..train.api import TrainOutput
from ..train.config import TrainConfig, TrainKind, build_section, register_kind, validate_run
from ..train.loss import StepLoss
from .coco import CocoImage, CocoSet, read_coco
from .config import DetectorConfig
from .detector import DetectionClass, Detector, SpaceInfo, class_embeddings, normalized, resized_image, save_detector
from .evaluate import recall_precision
from .network import RegionNetwork
from .objective import LossWeights, SceneTargets, detection_loss

log = logging.getLogger("bindspace.detect")
DETECTOR_SUBDIR = "detector"
PROMPT = "a photo of a {name}"
# Decoded, resized training images are kept in memory up to this many bytes (then decoded every time).
CACHE_BYTES = 1 << 30


@dataclass
class DetectRecipe:
    """The `[detect]` section: which space, how names become texts, the network's shape."""

    encoder: str = ""  # a bindspace model directory, or a .pth with encoder_model naming its preset
    encoder_model: str | None = None
    prompt: str = PROMPT  # "{name}" is replaced by each category's name; "{name}" alone: the names as given
    image_size: int = 64  # images are resized to image_size squared
    stride: int = 4
    channels: int = 64
    box_prior: float = 4.0
    threshold: float = 0.3  # the score a box needs to count in validation recall
    detector_dir: str | None = None  # default: run.out_dir/detector


def recipe_of(config: TrainConfig, source: str = "config") -> DetectRecipe:
    """The parsed, typed `[detect]` section."""
    return cast(DetectRecipe, build_section(DetectRecipe, config.detect, source, "detect"))


def network_config(recipe: DetectRecipe, embed_dim: int) -> DetectorConfig:
    """The region network's shape for a recipe in a space of `embed_dim` dimensions."""
    return DetectorConfig(embed_dim=embed_dim, image_size=recipe.image_size, stride=recipe.stride,
                          channels=recipe.channels, box_prior=recipe.box_prior)


def validate_recipe(config: TrainConfig, source: str = "config") -> None:
    """What a detect recipe must have; ConfigError naming the setting otherwise (manifests are read at training)."""
    def fail(where: str, problem: str) -> None:
        raise ConfigError(f"{source}: {where}: {problem}")

    recipe = recipe_of(config, source)
    if not recipe.encoder:
        fail("detect.encoder", "is required: the bindspace model whose text tower embeds the class names "
                               "(a model directory, or a .pth with encoder_model)")
    if "{name}" not in recipe.prompt:
        fail("detect.prompt", f"must contain {{name}} (the category's name), got {recipe.prompt!r}")
    try:
        recipe.prompt.format(name="x")
    except (IndexError, KeyError, ValueError) as exc:
        fail("detect.prompt", f"is not a valid template ({exc}); write literal braces as {{{{ }}}}")
    try:
        network_config(recipe, 1)
    except ConfigError as exc:
        fail("detect", str(exc))
    if not 0 <= recipe.threshold <= 1:
        fail("detect.threshold", f"must be in [0, 1], got {recipe.threshold}")
    if not config.data.train:
        fail("data.train", "give at least one COCO-style JSON manifest (images, annotations, categories)")
    validate_run(config, source)


def class_texts(recipe: DetectRecipe, names: Sequence[str]) -> list[str]:
    """The texts that stand for the categories: the prompt with each name in it."""
    return [recipe.prompt.format(name=name) for name in names]


def read_manifests(paths: Sequence[str], root: str | None) -> tuple[list[CocoImage], list[str]]:
    """All images of the manifests and their shared class names (every manifest must name the same categories)."""
    sets: list[CocoSet] = [read_coco(path, root) for path in paths]
    first = sets[0] if sets else None
    for other in sets[1:]:
        assert first is not None
        if (other.category_ids, other.names) != (first.category_ids, first.names):
            raise InputError(str(other.source), f"its categories differ from those of {first.source}; every "
                                                "manifest of a run must list the same ids and names")
    return [image for s in sets for image in s.images], (first.names if first else [])


# ----------------------------------------------------------------------------- data


@dataclass
class DetectBatch:
    """Normalised pixels (B, 3, S, S) and each image's targets (boxes as fractions of the side)."""

    pixels: torch.Tensor
    targets: list[SceneTargets]

    def to(self, device: torch.device | str) -> DetectBatch:
        """The batch on `device`."""
        return DetectBatch(self.pixels.to(device), [
            SceneTargets(t.boxes.to(device), t.labels.to(device)) for t in self.targets])

    def __len__(self) -> int:
        return self.pixels.shape[0]


class ImageStore:
    """Manifest images resized to the network's side, decoded once while they fit `CACHE_BYTES`."""

    def __init__(self, images: Sequence[CocoImage], size: int) -> None:
        self.images = list(images)
        self.size = size
        self._cache: dict[int, np.ndarray] = {}
        self._cache_slots = CACHE_BYTES // (size * size * 3)

    def pixels(self, i: int) -> np.ndarray:
        """Image i as (S, S, 3) uint8; one line naming the file when it cannot be decoded or is not its size."""
        if i in self._cache:
            return self._cache[i]
        image = self.images[i]
        pixels, (width, height) = resized_image(image.path, self.size, str(image.path))
        if (width, height) != (image.width, image.height):
            raise InputError(str(image.path), f"is {width}x{height} pixels but its manifest says "
                                              f"{image.width}x{image.height}")
        if len(self._cache) < self._cache_slots:
            self._cache[i] = pixels
        return pixels

    def targets(self, i: int) -> SceneTargets:
        """Image i's boxes as fractions of its sides, and its class indices."""
        image = self.images[i]
        scale = torch.tensor([image.width, image.height, image.width, image.height], dtype=torch.float32)
        return SceneTargets(torch.from_numpy(image.boxes) / scale, torch.from_numpy(image.labels))

    def batch(self, indices: Sequence[int]) -> DetectBatch:
        """The images at `indices` as a training batch."""
        pixels = normalized(np.stack([self.pixels(i) for i in indices]))  # (B, S, S, 3) -> (B, 3, S, S)
        return DetectBatch(pixels, [self.targets(i) for i in indices])


class ImageSource:
    """Shuffled batches of manifest images for the Trainer: this rank's share of each epoch's permutation."""

    def __init__(self, store: ImageStore, *, batch_size: int, seed: int = 0, rank: int = 0, world: int = 1,
                 shuffle: bool = True) -> None:
        self.store = store
        self.batch_size, self.seed, self.rank, self.world, self.shuffle = batch_size, seed, rank, world, shuffle
        per_rank = math.ceil(len(store.images) / world)
        self.batches_per_epoch: int | None = max(math.ceil(per_rank / batch_size), 1)

    def batches(self, epoch: int, start: int) -> Iterator[DetectBatch]:
        """Batches of `epoch` from the `start`-th on."""
        count = len(self.store.images)
        order = (np.random.default_rng([self.seed, epoch]).permutation(count) if self.shuffle
                 else np.arange(count))
        mine = order[self.rank::self.world]
        for b in range(start, self.batches_per_epoch or 0):
            chunk = mine[b * self.batch_size:(b + 1) * self.batch_size]
            if len(chunk):
                yield self.store.batch([int(i) for i in chunk])


# ----------------------------------------------------------------------------- objective


class DetectorObjective(nn.Module):
    """The region network and the frozen class embeddings; `forward(batch)` returns the detection loss."""

    computes_loss = True  # the Trainer calls forward(batch) instead of InfoNCE on two towers

    def __init__(self, network: RegionNetwork, classes: torch.Tensor, weights: LossWeights = LossWeights()) -> None:
        super().__init__()
        self.network = network
        self.weights = weights
        # A buffer, not a parameter: the class embeddings are the frozen space's, never trained.
        self.register_buffer("classes", F.normalize(classes.detach().float(), dim=-1))

    def forward(self, batch: DetectBatch) -> StepLoss:
        """Loss and class accuracy of one batch."""
        classes = cast(torch.Tensor, self.classes)
        losses = detection_loss(self.network, self.network(batch.pixels), batch.targets, classes, self.weights)
        return StepLoss(losses["total"], losses["accuracy"].detach())

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The region network's weights (everything that trains)."""
        return {name: p.detach() for name, p in self.network.named_parameters()}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore `trainable_state_dict`; the key sets and shapes must match."""
        try:
            self.network.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ConfigError("training checkpoint does not match this detector (was the [detect] section "
                              f"changed?): {' '.join(str(exc).split())[:300]}") from None


# ----------------------------------------------------------------------------- training


class DetectOutput(TrainOutput):
    """A detector run's result: `model_dir` is the detector directory."""

    accuracy_name = "class accuracy at object centres"
    output_line = "detector directory: {dir}  (use bindspace detect --detector {dir})"


def encoder_of(recipe: DetectRecipe) -> tuple[str | None, Path, int]:
    """(preset name or None for a model directory, the encoder's path, its space's width)."""
    from ..model.factory import encoder_config

    name, path, config = encoder_config(recipe.encoder, recipe.encoder_model, "detect.encoder")
    return name, path, config.embed_dim


def _space(name: str | None, encoder_path: Path, embed_dim: int) -> SpaceInfo:
    """The space a detector trained on this encoder lives in (its width, path, weights fingerprint, preset)."""
    from ..model.fingerprint import model_fingerprint

    return SpaceInfo(embed_dim, str(encoder_path.resolve()), model_fingerprint(None, encoder_path),
                     {"model": name} if name else {})


def train_detector(config: TrainConfig, *, evaluate: Callable[[Any], dict[str, float]] | None = None,
                   max_steps: int | None = None) -> DetectOutput:
    """Embed the class names once, train the region network with the shared Trainer, save the detector directory."""
    from ..model import create_model
    from ..train.api import seed_everything
    from ..train.distributed import init_distributed, shutdown_distributed
    from ..train.loop import train_run

    recipe = recipe_of(config)
    images, names = read_manifests(config.data.train, config.data.root)
    val_images, val_names = read_manifests(config.data.val, config.data.root)
    if config.data.val and val_names != names:
        raise InputError(str(config.data.val[0]), f"its categories differ from those of {config.data.train[0]}")
    name, encoder_path, embed_dim = encoder_of(recipe)
    dist = init_distributed(config.run.device)
    try:
        seed_everything(config.run.seed)
        encoder = create_model(name, checkpoint=str(encoder_path), modalities=[Modality.TEXT], device=dist.device)
        texts = class_texts(recipe, names)
        with torch.no_grad():
            classes = class_embeddings(encoder, [DetectionClass(n, (("text", t),)) for n, t in zip(names, texts)])
        del encoder
        log.info("classes: %d category names embedded by the frozen text tower (%s)", len(names), recipe.prompt)
        network = RegionNetwork(network_config(recipe, embed_dim))
        objective = DetectorObjective(network, classes)
        store = ImageStore(images, recipe.image_size)
        source = ImageSource(store, batch_size=config.run.batch_size, seed=config.run.seed, rank=dist.rank,
                             world=dist.world_size)
        if evaluate is None and val_images:
            evaluate = _val_recall(val_images, classes, names, recipe.threshold)
        result = train_run(cast(Any, objective), cast(Any, source), config, dist, evaluate, max_steps)
        detector_dir = None
        if dist.is_main and not result.stopped_early:
            detector = Detector(network.cpu(), _space(name, encoder_path, embed_dim))
            detector_dir = save_detector(detector, _detector_dir(config, recipe),
                                         training=_training_record(config, recipe, names, texts, result.steps))
            log.info("detector directory: %s  (bindspace detect --detector %s ...)", detector_dir, detector_dir)
        return DetectOutput(result, detector_dir, None)
    finally:
        shutdown_distributed()


def _training_record(config: TrainConfig, recipe: DetectRecipe, names: list[str], texts: list[str],
                     steps: int) -> dict[str, Any]:
    return {"recipe": asdict(recipe), "manifests": [str(p) for p in config.data.train], "classes": names,
            "class_texts": texts, "steps": steps}


def _detector_dir(config: TrainConfig, recipe: DetectRecipe) -> Path:
    folder = Path(recipe.detector_dir) if recipe.detector_dir else Path(config.run.out_dir) / DETECTOR_SUBDIR
    folder.parent.mkdir(parents=True, exist_ok=True)
    return folder


def _val_recall(images: Sequence[CocoImage], classes: torch.Tensor, names: list[str],
                threshold: float) -> Callable[[Any], dict[str, float]]:
    def evaluate(objective: Any) -> dict[str, float]:
        network: RegionNetwork = objective.network
        detector = Detector(network, SpaceInfo(network.config.embed_dim))
        found = []
        for start in range(0, len(images), 32):
            files = [image.path for image in images[start:start + 32]]  # boxes come back in their pixels
            found += detector.detect(files, classes, names, threshold=threshold, names=[str(f) for f in files])
        recall, precision = recall_precision(images, found)
        return {"val_recall": recall, "val_precision": precision}

    return evaluate


def export_detector_checkpoint(config: TrainConfig, checkpoint: str | os.PathLike[str] | None = None,
                               out_dir: str | os.PathLike[str] | None = None) -> Path:
    """Rebuild the region network of `config`, load a training checkpoint (default: the latest), save the detector."""
    from ..train.loop import checkpoint_to_export, load_trained_weights

    recipe = recipe_of(config)
    path = checkpoint_to_export(config.run, checkpoint)
    name, encoder_path, embed_dim = encoder_of(recipe)
    network = RegionNetwork(network_config(recipe, embed_dim))
    steps = load_trained_weights(cast(Any, DetectorObjective(network, torch.zeros(1, embed_dim))), path)
    folder = Path(out_dir) if out_dir else _detector_dir(config, recipe)
    detector = Detector(network, _space(name, encoder_path, embed_dim))
    return save_detector(detector, folder, training={"steps": steps, "checkpoint": str(path)})


register_kind("detect", TrainKind(validate_recipe, train_detector, export_detector_checkpoint))
