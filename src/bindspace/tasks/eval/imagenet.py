"""ImageNet-style image folders: zero-shot image classification (IN-1k val in the paper).

Layout (torchvision's ImageFolder convention; ImageNet val must be sorted into class folders):

    ROOT/<class folder>/<image>     .JPEG .jpg .jpeg .png .bmp .webp

Classes are the folders in sorted order. Each class's prompt name comes from a class-name
map when there is one, else from the folder name (underscores as spaces). The map is
`--class-names FILE`, or the first of ROOT/classnames.txt, ROOT/classnames.json,
ROOT/LOC_synset_mapping.txt, ROOT/../LOC_synset_mapping.txt. Formats: JSON
{"folder": "name"} or a JSON list in folder order; text lines "folder name" or
"folder<TAB>name" or "folder,name" (the first comma-separated synonym is used, so Kaggle's
LOC_synset_mapping.txt "n01440764 tench, Tinca tinca" gives "tench"); or one name per line
in folder order. ImageNet's raw synset names are ambiguous ("crane" the bird and the
machine); cleaned names (as in CLIP's evaluation) matter for the paper's 77.7.
"""
from __future__ import annotations

import json
from pathlib import Path

from .base import ClassificationSet, EvalOptions, LayoutError, Sample, Skipped, evenly_spaced, prompt_name, require_dir

NAME = "imagenet"
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp")
MAP_CANDIDATES = ("classnames.txt", "classnames.json", "LOC_synset_mapping.txt", "../LOC_synset_mapping.txt")


def read_class_names(path: Path, folders: list[str]) -> dict[str, str]:
    """folder -> prompt name from a class-name map file (formats in the module docstring)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LayoutError(f"{NAME}: cannot read class-name map {path} ({exc})") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LayoutError(f"{NAME}: class-name map {path} is not valid JSON ({exc.msg})") from None
        if isinstance(data, list):
            return _positional([str(x) for x in data], folders, path)
        if isinstance(data, dict):
            return {str(k): str(v).strip() for k, v in data.items()}
        raise LayoutError(f"{NAME}: class-name map {path} must be a JSON object or list")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    known = set(folders)
    keyed: dict[str, str] = {}
    for line in lines:
        for sep in ("\t", ",", " "):
            key, _, rest = line.partition(sep)
            if rest and key.strip() in known:
                keyed[key.strip()] = rest.split(",")[0].strip()
                break
    if keyed:
        return keyed
    return _positional(lines, folders, path)


def _positional(names: list[str], folders: list[str], path: Path) -> dict[str, str]:
    if len(names) != len(folders):
        raise LayoutError(
            f"{NAME}: class-name map {path} names no class folder and has {len(names)} entries for "
            f"{len(folders)} folders (a positional list must match them one to one)"
        )
    return {folder: name.split(",")[0].strip() for folder, name in zip(folders, names)}


def _find_map(root: Path, options: EvalOptions) -> Path | None:
    if options.class_names:
        path = Path(options.class_names)
        if not path.is_file():
            raise LayoutError(f"{NAME}: class-name map {path} not found")
        return path
    return next((root / c for c in MAP_CANDIDATES if (root / c).is_file()), None)


def load(root: Path, options: EvalOptions) -> ClassificationSet:
    """List the images of every class folder."""
    require_dir(root, "dataset root", NAME)
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) < 2:
        raise LayoutError(f"{NAME}: need at least 2 class folders under {root}, found {len(folders)}")
    map_path = _find_map(root, options)
    names = read_class_names(map_path, folders) if map_path else {}
    entries: list[tuple[Path, int]] = []
    for c, folder in enumerate(folders):
        for path in sorted((root / folder).iterdir()):
            if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
                entries.append((path, c))
    if not entries:
        raise LayoutError(f"{NAME}: no images ({', '.join(IMAGE_EXTENSIONS)}) in the class folders under {root}")
    samples: list[Sample] = []
    skipped: list[Skipped] = []
    for i in evenly_spaced(len(entries), options.limit):
        path, c = entries[i]
        label = f"{folders[c]}/{path.name}"
        if path.stat().st_size == 0:
            skipped.append(Skipped(label, "empty file"))
        else:
            samples.append(Sample(label, str(path), c))
    prompt_names = [names.get(f) or prompt_name(f) for f in folders]
    return ClassificationSet(
        samples=samples, classes=folders, prompt_names=prompt_names, skipped=skipped, total=len(entries),
        notes={"class_names": str(map_path) if map_path else "folder names",
               "unnamed_classes": sum(1 for f in folders if f not in names) if names else len(folders)},
    )
