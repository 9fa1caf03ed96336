"""LLVIP adapter: visible-light RGB images are the anchor, the aligned infrared images the target.

Layout (as released): `<root>/visible/{train,test}/NNNNNN.jpg` and
`<root>/infrared/{train,test}/NNNNNN.jpg`; pairs share the file name.
"""
from __future__ import annotations

from pathlib import Path

from ...errors import InputError
from .manifest import check_root, write_split

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def prepare(root: Path, manifest: Path, *, split: str = "train", val_fraction: float = 0.0) -> int:
    """Write {"image", "thermal"} rows for the `split` ("train", "test" or "all")."""
    check_root(root)
    splits = ("train", "test") if split == "all" else (split,)
    rows = []
    for name in splits:
        visible, infrared = root / "visible" / name, root / "infrared" / name
        if not visible.is_dir() or not infrared.is_dir():
            raise InputError(str(root), f"expected visible/{name} and infrared/{name} folders (LLVIP layout)")
        for image in sorted(p for p in visible.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            thermal = infrared / image.name
            if thermal.is_file():
                rows.append({"image": str(image.resolve()), "thermal": str(thermal.resolve())})
    return write_split(rows, manifest, val_fraction)
