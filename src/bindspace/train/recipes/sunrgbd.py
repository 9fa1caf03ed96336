"""SUN RGB-D adapter: RGB images are the anchor, the registered depth maps the target.

Layout (as released): scene folders anywhere under `<root>` holding `image/*.jpg` and
`depth_bfx/*.png` (refined depth) and/or `depth/*.png` (raw). The PNGs store millimetres
with their 16 bits rotated by 3 (the SUN RGB-D toolbox undoes it with
`bitor(bitshift(d, -3), bitshift(d, 13))`), which our depth loader cannot know, so the
adapter writes each map once as float32 metres in a `.npy` next to the manifest.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import InputError
from .manifest import check_root, write_split


def sunrgbd_depth_metres(path: Path) -> np.ndarray:
    """A SUN RGB-D depth PNG as float32 metres (0 = no measurement)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            raw = np.asarray(image).astype(np.uint16)
    except OSError as exc:
        raise InputError(str(path), f"not a readable depth PNG ({exc})") from None
    rotated = ((raw >> 3) | (raw << 13)).astype(np.uint16)  # undo the 3-bit rotation
    return rotated.astype(np.float32) / 1000.0


def prepare(root: Path, manifest: Path, *, refined: bool = True, depth_dir: str | None = None,
            val_fraction: float = 0.0) -> int:
    """Write {"image", "depth"} rows; depth maps are converted to .npy metres in `depth_dir`."""
    check_root(root)
    out = Path(depth_dir) if depth_dir else manifest.with_name(f"{manifest.stem}_depth")
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    for image_dir in sorted(root.rglob("image")):
        scene = image_dir.parent
        choices = ("depth_bfx", "depth") if refined else ("depth", "depth_bfx")
        depth_folder = next((scene / c for c in choices if (scene / c).is_dir()), None)
        images = sorted(p for p in image_dir.glob("*.jpg"))
        depths = sorted(depth_folder.glob("*.png")) if depth_folder else []
        if not images or not depths:
            continue
        target = out / f"{len(rows):06d}.npy"
        np.save(target, sunrgbd_depth_metres(depths[0]))
        rows.append({"image": str(images[0].resolve()), "depth": str(target.resolve()), "scene": str(scene)})
    return write_split(rows, manifest, val_fraction)
