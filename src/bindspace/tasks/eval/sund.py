"""SUN RGB-D: zero-shot scene classification from depth alone, 19 classes.

Layout (the published SUNRGBD.zip, unpacked): one folder per sample, at any depth below ROOT
(e.g. ROOT/kv1/NYUdata/NYU0001/):

    <sample>/depth/<name>.png   16-bit PNG as released: millimetres rotated by 3 bits
    <sample>/scene.txt          the scene type, e.g. "bedroom"

Depth values are decoded as the SUN RGB-D toolbox does (`(v >> 3) | (v << 13)` on 16 bits,
millimetres, capped at 8 m) and converted to disparity by `bindspace.preprocess.load_depth`.
Protocol (the paper's, after Song et al. 2015): the 19 scene classes with enough samples;
samples of other scenes are left out (counted in the report's notes). `--split FILE`
restricts to a list of sample folders, one per line, relative to ROOT or as the toolbox's
absolute paths (matched from the part after "SUNRGBD/"): pass the official test list
(5,050 samples) to reproduce the paper's setting; without it every sample is used.
"""
from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ...errors import InputError
from .base import ClassificationSet, EvalOptions, LayoutError, Sample, Skipped, evenly_spaced, prompt_name, require_dir

NAME = "sund"
CLASSES = (
    "bathroom", "bedroom", "classroom", "computer_room", "conference_room", "corridor", "dining_area",
    "dining_room", "discussion_area", "furniture_store", "home_office", "kitchen", "lab", "lecture_theatre",
    "library", "living_room", "office", "rest_space", "study_space",
)
MAX_DEPTH_MM = 8000  # the toolbox caps depth at 8 m


def decode_depth_png(data: bytes, name: str) -> np.ndarray:
    """A SUN RGB-D depth PNG as uint16 millimetres (0 = no reading)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            raw = np.asarray(image)
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(name, f"not a readable depth PNG ({exc})") from None
    if raw.ndim != 2 or raw.dtype.kind not in "ui" or raw.dtype.itemsize < 2:
        raise InputError(name, f"expected a 16-bit single-channel depth PNG, got {raw.dtype} {raw.shape}")
    v = raw.astype(np.uint32) & 0xFFFF
    mm = ((v >> 3) | (v << 13)) & 0xFFFF  # undo the release's 3-bit rotation
    return np.minimum(mm, MAX_DEPTH_MM).astype(np.uint16)


def _depth_loader(path: Path, name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(name, f"cannot read {path.name} ({exc.strerror or exc})") from None
        if not data:
            raise InputError(name, f"{path.name} is empty")
        return decode_depth_png(data, name)

    return load


def _key(line: str) -> str:
    text = line.strip().replace("\\", "/").rstrip("/")
    if "SUNRGBD/" in text:
        text = text.rsplit("SUNRGBD/", 1)[1]
    return text.lstrip("/")


def _suffixes(rel: str) -> list[str]:
    parts = rel.split("/")
    return ["/".join(parts[i:]) for i in range(len(parts))]


def _read_split(path_text: str, root: Path) -> set[str]:
    path = Path(path_text)
    if not path.is_absolute() and not path.is_file():
        path = root / path_text
    if not path.is_file():
        raise LayoutError(f"{NAME}: split list {path_text} not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise LayoutError(f"{NAME}: cannot read split list {path} ({exc})") from None
    keys = {_key(line) for line in lines if line.strip() and not line.lstrip().startswith("#")}
    if not keys:
        raise LayoutError(f"{NAME}: split list {path} is empty")
    return keys


def find_samples(root: Path) -> list[Path]:
    """Every folder below ROOT with a scene.txt and a depth/ folder, in sorted order."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        if "scene.txt" in files and "depth" in dirs:
            found.append(Path(folder))
            dirs[:] = []  # samples do not nest: skip the image/depth/annotation trees
    return sorted(found)


def load(root: Path, options: EvalOptions) -> ClassificationSet:
    """Find the samples, keep those of the 19 classes (and of the split list), list their depth maps."""
    require_dir(root, "dataset root", NAME)
    folders = find_samples(root)
    if not folders:
        raise LayoutError(f"{NAME}: no sample folders (with scene.txt and depth/) under {root}")
    wanted = _read_split(options.split, root) if options.split else None
    eligible: list[tuple[str, Path, int] | Skipped] = []
    other_scenes = 0
    matched: set[str] = set()
    # a split entry may be longer than our relative path (absolute toolbox paths): index its suffixes
    by_suffix = {suffix: key for key in (wanted or ()) for suffix in _suffixes(key)}
    for folder in folders:
        rel = folder.relative_to(root).as_posix()
        if wanted is not None:
            hits = [s for s in _suffixes(rel) if s in wanted]
            if rel in by_suffix:
                hits.append(by_suffix[rel])
            if not hits:
                continue
            matched.update(hits)
        try:
            scene = (folder / "scene.txt").read_text(encoding="utf-8", errors="replace").strip().lower()
        except OSError as exc:
            eligible.append(Skipped(rel, f"cannot read scene.txt ({exc.strerror or exc})"))
            continue
        scene = "_".join(scene.split())
        if scene not in CLASSES:
            other_scenes += 1
            continue
        pngs = sorted(p for p in (folder / "depth").iterdir() if p.suffix.lower() == ".png")
        if not pngs:
            eligible.append(Skipped(rel, "no PNG in depth/"))
            continue
        eligible.append((rel, pngs[0], CLASSES.index(scene)))
    if not eligible:
        raise LayoutError(f"{NAME}: no sample under {root} has one of the 19 scene classes"
                          + (" (and is in the split list)" if wanted is not None else ""))
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    for i in evenly_spaced(len(eligible), options.limit):
        entry = eligible[i]
        if isinstance(entry, Skipped):
            skipped.append(entry)
            continue
        rel, png, target = entry
        samples.append(Sample(rel, _depth_loader(png, rel), target))
    notes = {"protocol": "19 scene classes; other scenes left out", "other_scenes_left_out": other_scenes,
             "split": options.split or "all samples"}
    if wanted is not None:
        notes["split_entries_not_found"] = len(wanted - matched)
    return ClassificationSet(
        samples=samples, classes=list(CLASSES), prompt_names=[prompt_name(c) for c in CLASSES],
        skipped=skipped, total=len(eligible), notes=notes,
    )
