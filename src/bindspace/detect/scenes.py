"""Scenes for the digits world: several handwritten digits placed apart on a larger sheet of paper.

How a scene is drawn (so other code can make the same ones): a white `canvas` x `canvas` RGB
sheet; k digits, k uniform in [min_objects, max_objects]; each an 8x8 scikit-learn digit
rendered dark-on-white (`render_digit`), resized to s x s pixels (s uniform in
[min_size, max_size], bilinear) and placed at a uniform random position such that its square,
grown by `margin` pixels, overlaps no earlier one (up to 200 tries each: a digit that finds no
place is left out). Ink darkens the paper (pixel-wise minimum). Its box is the whole s x s
square, (x0, y0, x1, y1) in pixels with exclusive ends. Everything is drawn from one
`numpy.random.Generator`, so a seed gives the same scene.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SceneSpec:
    """Canvas size, how many digits and how large."""

    canvas: int = 64
    min_objects: int = 2
    max_objects: int = 4
    min_size: int = 14
    max_size: int = 22
    margin: int = 1


@dataclass
class Scene:
    """One drawn scene: the picture, each digit's box (K, 4) in pixels, its class (K,) and source image index (K,)."""

    image: np.ndarray  # (canvas, canvas, 3) uint8
    boxes: np.ndarray  # (K, 4) float32
    labels: np.ndarray  # (K,) int64
    sources: np.ndarray  # (K,) int64


def draw_scene(ink: np.ndarray, labels: np.ndarray, pool: np.ndarray, rng: np.random.Generator,
               spec: SceneSpec = SceneSpec()) -> Scene:
    """A scene of digits drawn from `pool` (indices into `ink` (N, 8, 8) and `labels` (N,))."""
    from PIL import Image

    from ..train.digits_world import render_digit

    sheet = np.full((spec.canvas, spec.canvas), 255, dtype=np.uint8)
    count = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    boxes: list[tuple[int, int, int, int]] = []
    sources: list[int] = []
    for _ in range(count):
        size = int(rng.integers(spec.min_size, spec.max_size + 1))
        source = int(pool[rng.integers(len(pool))])
        for _try in range(200):
            x0, y0 = (int(v) for v in rng.integers(0, spec.canvas - size + 1, size=2))
            box = (x0, y0, x0 + size, y0 + size)
            if all(_apart(box, other, spec.margin) for other in boxes):
                break
        else:
            continue
        glyph = np.asarray(Image.fromarray(render_digit(ink[source])).resize((size, size), Image.Resampling.BILINEAR))
        sheet[y0:y0 + size, x0:x0 + size] = np.minimum(sheet[y0:y0 + size, x0:x0 + size], glyph)
        boxes.append(box)
        sources.append(source)
    picked = np.asarray(sources, dtype=np.int64)
    return Scene(np.repeat(sheet[:, :, None], 3, axis=2), np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                 labels[picked].astype(np.int64), picked)


def _apart(a: tuple[int, int, int, int], b: tuple[int, int, int, int], margin: int) -> bool:
    return a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1]
