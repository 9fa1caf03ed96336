"""LLVIP: zero-shot person vs background classification of thermal (infrared) crops.

Layout (the published LLVIP.zip, unpacked):

    ROOT/infrared/test/<id>.jpg    infrared images (1280x1024)
    ROOT/Annotations/<id>.xml      Pascal VOC boxes, objects named "person"

Protocol (the paper's binary task, made explicit here): from every test image, each
"person" box (clipped to the image, at least 8 px on each side) is cropped as a *person*
item, and for each person box one *background* box of the same size is placed uniformly at
random where it overlaps no person box (100 tries; when none fits, that background crop is
not made and the count is in the report's notes). The random positions come from
numpy's default_rng([seed, image index]), so `--seed` (default 0) makes them repeatable
and `--limit` (a number of images) does not move the crops of the images it keeps. Each
crop is classified between the prompt names "person" and "background"; top-1 accuracy.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError
from .base import ClassificationSet, EvalOptions, LayoutError, Sample, Skipped, evenly_spaced, require_dir

NAME = "llvip"
CLASSES = ("background", "person")
MIN_BOX = 8
TRIES = 100
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

Box = tuple[int, int, int, int]  # left, top, right, bottom (right/bottom exclusive)


@dataclass(frozen=True)
class Annotation:
    """The image size and the person boxes of one infrared image."""

    width: int
    height: int
    persons: list[Box]


def parse_annotation(data: bytes, name: str, size: tuple[int, int] | None = None) -> Annotation:
    """Person boxes from a VOC XML file, clipped to the image; `size` (w, h) overrides the XML's."""
    try:
        tree = ET.fromstring(data)
    except ET.ParseError as exc:
        raise InputError(name, f"invalid annotation XML ({exc})") from None
    width: int | None
    height: int | None
    if size is not None:
        width, height = size
    else:
        width, height = _int(tree.findtext("size/width")), _int(tree.findtext("size/height"))
    if not width or not height or width <= 0 or height <= 0:
        raise InputError(name, "annotation has no valid <size> and the image size is unknown")
    persons = []
    for obj in tree.iter("object"):
        if (obj.findtext("name") or "").strip().lower() != "person":
            continue
        coords = [_int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
        left, top, right, bottom = coords
        if left is None or top is None or right is None or bottom is None:
            continue
        left, top = max(0, left), max(0, top)
        right, bottom = min(width, right), min(height, bottom)
        if right - left >= MIN_BOX and bottom - top >= MIN_BOX:
            persons.append((left, top, right, bottom))
    return Annotation(width, height, persons)


def _int(text: str | None) -> int | None:
    try:
        return int(round(float(text))) if text is not None else None
    except ValueError:
        return None


def _overlaps(box: Box, others: list[Box]) -> bool:
    return any(box[0] < o[2] and o[0] < box[2] and box[1] < o[3] and o[1] < box[3] for o in others)


def background_boxes(annotation: Annotation, rng: np.random.Generator) -> tuple[list[Box], int]:
    """One person-sized box per person box that overlaps no person; and how many could not be placed."""
    boxes, failed = [], 0
    for left, top, right, bottom in annotation.persons:
        w, h = right - left, bottom - top
        for _ in range(TRIES):
            x = int(rng.integers(0, annotation.width - w + 1))
            y = int(rng.integers(0, annotation.height - h + 1))
            box = (x, y, x + w, y + h)
            if not _overlaps(box, annotation.persons):
                boxes.append(box)
                break
        else:
            failed += 1
    return boxes, failed


class _LastImage:
    """Decodes an image once for all its crops (crops of one image are consecutive samples)."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.image: Any = None

    def get(self, path: Path, name: str) -> Any:
        if path != self.path:
            from PIL import Image

            try:
                with Image.open(path) as image:
                    image.load()
                    self.image = image.copy()
            except (OSError, SyntaxError, ValueError) as exc:
                raise InputError(name, f"not a readable image ({exc})") from None
            self.path = path
        return self.image


def _crop(cache: _LastImage, path: Path, name: str, box: Box) -> Callable[[], Any]:
    def load() -> Any:
        image = cache.get(path, name)
        if box[2] > image.width or box[3] > image.height:
            raise InputError(name, f"box {box} lies outside the {image.width}x{image.height} image")
        return image.crop(box)

    return load


def _image_size(path: Path) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(path) as image:  # reads the header only
            return image.size
    except (OSError, SyntaxError, ValueError):
        return None


def load(root: Path, options: EvalOptions) -> ClassificationSet:
    """List person and background crops of the infrared test images."""
    require_dir(root, "dataset root", NAME)
    images_dir = require_dir(root / "infrared" / "test", "infrared/test/ folder", NAME)
    notes_dir = require_dir(root / "Annotations", "Annotations/ folder", NAME)
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not images:
        raise LayoutError(f"{NAME}: no infrared images (.jpg) in {images_dir}")
    cache = _LastImage()
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    unplaced = persons = 0
    for index in evenly_spaced(len(images), options.limit):
        path = images[index]
        name = path.name
        xml = notes_dir / f"{path.stem}.xml"
        try:
            if not xml.is_file():
                raise InputError(name, f"no annotation Annotations/{xml.name}")
            annotation = parse_annotation(xml.read_bytes(), f"Annotations/{xml.name}")
            if annotation.persons:  # the XML's size may be wrong or missing: trust the image
                size = _image_size(path)
                if size is None:
                    raise InputError(name, "not a readable image")
                if size != (annotation.width, annotation.height):
                    annotation = parse_annotation(xml.read_bytes(), f"Annotations/{xml.name}", size)
        except InputError as exc:
            skipped.append(Skipped(exc.source, exc.problem))
            continue
        except OSError as exc:
            skipped.append(Skipped(name, f"cannot read ({exc.strerror or exc})"))
            continue
        backgrounds, failed = background_boxes(annotation, np.random.default_rng([options.seed, index]))
        unplaced += failed
        persons += len(annotation.persons)
        for k, box in enumerate(annotation.persons):
            samples.append(Sample(f"{name}#person{k}", _crop(cache, path, name, box), CLASSES.index("person")))
        for k, box in enumerate(backgrounds):
            samples.append(Sample(f"{name}#background{k}", _crop(cache, path, name, box), CLASSES.index("background")))
    return ClassificationSet(
        samples=samples, classes=list(CLASSES), prompt_names=list(CLASSES), skipped=skipped, total=len(images),
        notes={"protocol": "person box crops vs same-size random background crops", "seed": options.seed,
               "images": len(evenly_spaced(len(images), options.limit)), "person_crops": persons,
               "background_crops": persons - unplaced, "backgrounds_not_placed": unplaced},
    )
