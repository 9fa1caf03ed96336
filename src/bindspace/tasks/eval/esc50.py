"""ESC-50: zero-shot environmental sound classification, 50 classes, 2,000 five-second clips.

Layout (the published repository, github.com/karolpiczak/ESC-50, unzipped):

    ROOT/meta/esc50.csv     columns filename,fold,target,category,esc10,src_file,take
    ROOT/audio/<filename>   e.g. 1-100032-A-0.wav

ROOT may also be the folder that holds ESC-50-master/. Protocol (the paper's zero-shot
setting): every clip of all 5 folds is classified among the 50 categories (nothing is
trained, so no fold is held out); accuracy is reported over all clips and per fold. The
prompt name of a class is its category with underscores as spaces ("chirping birds").
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

NAME = "esc50"
COLUMNS = ("filename", "fold", "target", "category")


def dataset_root(root: Path) -> Path:
    """ROOT itself, or ROOT/ESC-50-master when the zip was unpacked into ROOT."""
    if not (root / "meta").is_dir() and (root / "ESC-50-master" / "meta").is_dir():
        return root / "ESC-50-master"
    return root


def load(root: Path, options: EvalOptions) -> ClassificationSet:
    """Read ESC-50's CSV and list its clips (missing or empty clips are skipped)."""
    root = dataset_root(require_dir(root, "dataset root", NAME))
    rows = read_csv(require_file(root / "meta" / "esc50.csv", "meta/esc50.csv", NAME), COLUMNS, NAME)
    audio = require_dir(root / "audio", "audio/ folder", NAME)
    if not rows:
        raise LayoutError(f"{NAME}: meta/esc50.csv lists no clips")
    categories: dict[int, str] = {}
    parsed: list[tuple[str, int, int] | Skipped] = []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        name = row["filename"] or f"meta/esc50.csv line {line}"
        try:
            target, fold = int(row["target"]), int(row["fold"])
        except ValueError:
            parsed.append(Skipped(name, f"meta/esc50.csv line {line}: target/fold is not an integer"))
            continue
        category = row["category"]
        if categories.setdefault(target, category) != category:
            raise LayoutError(
                f"{NAME}: meta/esc50.csv gives target {target} two categories "
                f"({categories[target]!r} and {category!r}, line {line})"
            )
        parsed.append((row["filename"], target, fold))
    targets = sorted(categories)
    position = {t: i for i, t in enumerate(targets)}  # class index in target order
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    for i in evenly_spaced(len(parsed), options.limit):
        entry = parsed[i]
        if isinstance(entry, Skipped):
            skipped.append(entry)
            continue
        filename, target, fold = entry
        sample = file_sample(audio / filename, filename, position[target], f"fold {fold}")
        if isinstance(sample, Skipped):
            skipped.append(sample)
        else:
            samples.append(sample)
    classes = [categories[t] for t in targets]
    return ClassificationSet(
        samples=samples, classes=classes, prompt_names=[prompt_name(c) for c in classes], skipped=skipped,
        total=len(parsed), notes={"protocol": "all folds, zero-shot over all categories"},
    )
