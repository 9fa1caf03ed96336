"""AudioSet adapter: each clip's video frames are the anchor, its own soundtrack the target.

Layout: a folder, searched recursively, of downloaded clips in any container holding both
video and audio (.mp4, .mkv, .webm, ...). If the files are whole YouTube videos named by
their YouTube id (`-0RWZT-miFs.mp4`), pass the official segments CSV
(`balanced_train_segments.csv`, ...) and each row gets the labelled 10-second window as
`start`/`end`; files already cut to the segment need no CSV. During training a 2-second
clip is drawn at the same random place inside the window for both sides.
"""
from __future__ import annotations

import csv
from pathlib import Path

from ...errors import InputError
from ...kinds import VIDEO_EXTENSIONS
from .manifest import check_root, write_split


def read_segments(path: Path) -> dict[str, tuple[float, float]]:
    """YouTube id -> (start, end) seconds from an AudioSet segments CSV (`# ...` lines are comments)."""
    windows = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(str(path), f"cannot read segments CSV ({exc.strerror or exc})") from None
    for number, row in enumerate(csv.reader((line for line in lines if line.strip() and not line.startswith("#")),
                                            skipinitialspace=True), start=1):
        try:
            windows[row[0]] = (float(row[1]), float(row[2]))
        except (IndexError, ValueError):
            raise InputError(str(path), f"row {number}: expected YTID, start_seconds, end_seconds, labels") from None
    return windows


def prepare(root: Path, manifest: Path, *, segments: str | None = None, val_fraction: float = 0.0) -> int:
    """Write {"video", "audio"[, "start", "end"]} rows for every clip under `root`."""
    check_root(root)
    windows = read_segments(Path(segments)) if segments else {}
    rows = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()):
        row: dict = {"video": str(path.resolve()), "audio": str(path.resolve())}
        if path.stem in windows:
            row["start"], row["end"] = windows[path.stem]
        elif windows:
            continue  # not one of the listed segments
        rows.append(row)
    return write_split(rows, manifest, val_fraction)
