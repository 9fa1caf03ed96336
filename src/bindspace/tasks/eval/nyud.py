"""NYU-Depth v2: zero-shot scene classification from depth alone, 10 classes.

NYU-Depth v2 is published as one MATLAB file (nyu_depth_v2_labeled.mat: 1,449 depth maps
and a scene type each, 27 types) plus split indices (654 test images in the usual split).
We read an export of it as plain files, one folder per split:

    ROOT/<split>/depth/<file>      16-bit PNG, depth in millimetres (0 = no reading);
                                   a float .npy in metres works too
    ROOT/<split>/scenes.csv        columns file,scene   (file: a name in depth/)

`--split` picks the folder (default `test`). Protocol (the 10-class NYU scene setup the
paper follows): the 9 most frequent scene types keep their class and every other type
becomes "others". Depth is converted to disparity by `bindspace.preprocess.load_depth`
(Kinect focal length and baseline). Prompt names: underscores as spaces, and "others" is
prompted as "other room" (a bare "others" is not a scene).
"""
from __future__ import annotations

from pathlib import Path

from .base import (
    ClassificationSet,
    EvalOptions,
    LayoutError,
    Sample,
    Skipped,
    evenly_spaced,
    file_sample,
    prompt_name,
    read_csv,
    require_dir,
    require_file,
)

NAME = "nyud"
DEFAULT_SPLIT = "test"
CLASSES = (
    "bathroom", "bedroom", "bookstore", "classroom", "dining_room",
    "home_office", "kitchen", "living_room", "office", "others",
)
OTHER = "others"
PROMPT_OVERRIDES = {"others": "other room"}


def scene_class(scene: str) -> str:
    """The 10-class label of a raw NYU scene type ("Living Room" -> living_room; rare types -> others)."""
    key = "_".join(scene.strip().lower().replace("-", " ").split())
    return key if key in CLASSES else OTHER


def load(root: Path, options: EvalOptions) -> ClassificationSet:
    """Read ROOT/<split>/scenes.csv and list the depth maps."""
    require_dir(root, "dataset root", NAME)
    split = options.split or DEFAULT_SPLIT
    folder = require_dir(root / split, f"split folder {split}/", NAME)
    depth = require_dir(folder / "depth", f"{split}/depth/ folder", NAME)
    rows = read_csv(require_file(folder / "scenes.csv", f"{split}/scenes.csv", NAME), ("file", "scene"), NAME)
    if not rows:
        raise LayoutError(f"{NAME}: {split}/scenes.csv lists no depth maps")
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    merged = 0
    for i in evenly_spaced(len(rows), options.limit):
        row = rows[i]
        if not row["file"] or not row["scene"]:
            skipped.append(Skipped(row["file"] or f"{split}/scenes.csv line {i + 2}", "empty file or scene field"))
            continue
        label = scene_class(row["scene"])
        merged += label == OTHER and "_".join(row["scene"].lower().split()) != OTHER
        sample = file_sample(depth / row["file"], row["file"], CLASSES.index(label))
        if isinstance(sample, Skipped):
            skipped.append(sample)
        else:
            samples.append(sample)
    return ClassificationSet(
        samples=samples, classes=list(CLASSES),
        prompt_names=[PROMPT_OVERRIDES.get(c, prompt_name(c)) for c in CLASSES], skipped=skipped, total=len(rows),
        notes={"split": split, "protocol": "10 classes: 9 most frequent scene types + others",
               "merged_into_others": int(merged)},
    )
