"""COCO-style detection manifests: images, boxes and category names, checked before any training.

The JSON holds `images` [{id, file_name, width, height}], `annotations` [{image_id, bbox
[x, y, w, h] in pixels, category_id}] and `categories` [{id, name}], as COCO's instances files
do. `file_name` is relative to the manifest's folder (or to `root`). Annotations with
`iscrowd: 1` are left out (COCO's crowd regions are not single objects); images without
annotations are kept as scenes with nothing to find. Every problem is one line naming the
manifest and what is wrong.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

# Boxes may overhang the image by this many pixels (rounding in real annotation tools); they are clipped.
EDGE_TOLERANCE = 1.0


@dataclass(frozen=True)
class CocoImage:
    """One image and its objects: boxes (K, 4) as x0, y0, x1, y1 in the image's pixels, class indices (K,)."""

    path: Path
    width: int
    height: int
    boxes: np.ndarray  # (K, 4) float32
    labels: np.ndarray  # (K,) int64, indices into CocoSet.names


@dataclass(frozen=True)
class CocoSet:
    """A manifest's images and its classes (categories in the order of their ids)."""

    source: Path
    images: list[CocoImage]
    names: list[str]
    category_ids: list[int]


def read_coco(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None,
              check_files: bool = True) -> CocoSet:
    """Read and check a COCO-style manifest; InputError (one line, naming the file) on any problem."""
    source = Path(path)
    where = str(source)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(where, "manifest not found") from None
    except IsADirectoryError:
        raise InputError(where, "is a folder, not a JSON manifest") from None
    except UnicodeDecodeError:
        raise InputError(where, "not a JSON manifest (not UTF-8 text)") from None
    except ValueError as exc:
        raise InputError(where, f"not valid JSON ({exc})") from None
    except OSError as exc:
        raise InputError(where, f"cannot read ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise InputError(where, f"the top level must be an object with images, annotations and categories, "
                                f"not {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise InputError(where, f"no {key!r} list (a COCO manifest has images, annotations and categories)")
        if not isinstance(data[key], list):
            raise InputError(where, f"{key!r} must be a list, not {type(data[key]).__name__}")
    base = Path(root) if root is not None else source.parent
    names, category_ids = _categories(where, data["categories"])
    index_of = {cid: i for i, cid in enumerate(category_ids)}
    images, sizes = _images(where, data["images"], base, check_files)
    objects: dict[Any, list[tuple[list[float], int]]] = {key: [] for key in images}
    for n, ann in enumerate(data["annotations"]):
        what = f"annotations[{n}]"
        _need(where, what, ann, ("image_id", "bbox", "category_id"))
        if ann.get("iscrowd", 0):
            continue
        image_id, category = ann["image_id"], ann["category_id"]
        if image_id not in images:
            raise InputError(where, f"{what}: image_id {image_id!r} is not among the images")
        if category not in index_of:
            raise InputError(where, f"{what}: category_id {category!r} is not among the categories "
                                    f"({', '.join(map(str, category_ids))})")
        objects[image_id].append((_box(where, what, ann["bbox"], *sizes[image_id]), index_of[category]))
    out = []
    for image_id, file in images.items():
        width, height = sizes[image_id]
        found = objects[image_id]
        boxes = np.asarray([box for box, _ in found], dtype=np.float32).reshape(-1, 4)
        labels = np.asarray([label for _, label in found], dtype=np.int64)
        out.append(CocoImage(file, width, height, boxes, labels))
    if not out:
        raise InputError(where, "has no images")
    return CocoSet(source, out, names, category_ids)


def _need(where: str, what: str, item: Any, keys: tuple[str, ...]) -> None:
    if not isinstance(item, dict):
        raise InputError(where, f"{what} must be an object, not {type(item).__name__}")
    for key in keys:
        if key not in item:
            raise InputError(where, f"{what} has no {key!r}")


def _categories(where: str, items: list[Any]) -> tuple[list[str], list[int]]:
    if not items:
        raise InputError(where, "'categories' is empty: name at least one class")
    seen: dict[int, str] = {}
    for n, cat in enumerate(items):
        _need(where, f"categories[{n}]", cat, ("id", "name"))
        cid, name = cat["id"], cat["name"]
        if not isinstance(cid, int) or isinstance(cid, bool):
            raise InputError(where, f"categories[{n}]: id must be an integer, got {cid!r}")
        if not isinstance(name, str) or not name.strip():
            raise InputError(where, f"categories[{n}]: name must be a non-empty string, got {name!r}")
        if cid in seen:
            raise InputError(where, f"categories[{n}]: id {cid} is used twice")
        seen[cid] = name.strip()
    ids = sorted(seen)
    return [seen[cid] for cid in ids], ids


def _images(where: str, items: list[Any], base: Path,
            check_files: bool) -> tuple[dict[Any, Path], dict[Any, tuple[int, int]]]:
    files: dict[Any, Path] = {}
    sizes: dict[Any, tuple[int, int]] = {}
    for n, image in enumerate(items):
        what = f"images[{n}]"
        _need(where, what, image, ("id", "file_name", "width", "height"))
        image_id, name = image["id"], image["file_name"]
        if image_id in files:
            raise InputError(where, f"{what}: id {image_id!r} is used twice")
        if not isinstance(name, str) or not name:
            raise InputError(where, f"{what}: file_name must be a non-empty string, got {name!r}")
        width, height = image["width"], image["height"]
        for side, value in (("width", width), ("height", height)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(where, f"{what}: {side} must be a positive integer, got {value!r}")
        file = base / name
        if check_files and not file.is_file():
            raise InputError(where, f"{what}: image file {name!r} not found (looked for {file})")
        files[image_id] = file
        sizes[image_id] = (width, height)
    return files, sizes


def _box(where: str, what: str, bbox: Any, width: int, height: int) -> list[float]:
    """COCO's [x, y, w, h] -> [x0, y0, x1, y1], checked to lie in the image (clipped within EDGE_TOLERANCE)."""
    if (not isinstance(bbox, list) or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)):
        raise InputError(where, f"{what}: bbox must be [x, y, width, height] (4 finite numbers), got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        raise InputError(where, f"{what}: bbox {bbox} has no area (width and height must be > 0)")
    tol = EDGE_TOLERANCE
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        raise InputError(where, f"{what}: bbox {bbox} lies outside its {width}x{height} image")
    box = [max(x, 0.0), max(y, 0.0), min(x + w, float(width)), min(y + h, float(height))]
    if box[2] <= box[0] or box[3] <= box[1]:
        raise InputError(where, f"{what}: bbox {bbox} lies outside its {width}x{height} image")
    return box
