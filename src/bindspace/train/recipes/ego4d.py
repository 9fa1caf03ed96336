"""Ego4D adapter: egocentric video clips are the anchor, the head-mounted IMU over the same window the target.

Layout: `<root>/**/full_scale/<video_uid>.mp4` and `<root>/**/imu/<video_uid>.csv`, the
IMU CSV having a millisecond timestamp column aligned with the video
(`canonical_timestamp_ms`) and accelerometer / gyroscope columns (`accl_x`..., `gyro_x`...),
assumed to be in m/s^2 and rad/s (the IMU loader's units).
Each video is cut into windows of `window_seconds` (default 10 s = the IMU tower's 2000
samples at 200 Hz); every window's IMU is resampled to 200 Hz and stored as a (6, 2000)
float32 `.npy`, and the row carries the window as `start`/`end` so the video clip is
drawn from the same stretch of time.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ...errors import InputError
from .manifest import check_root, write_split

RATE = 200.0


def read_imu_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(times in seconds (T,), values (6, T): acc xyz then gyro xyz) from an Ego4D-style IMU CSV."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise InputError(str(path), f"cannot read IMU CSV ({exc.strerror or exc})") from None
    if len(rows) < 2:
        raise InputError(str(path), "IMU CSV has no samples")
    header = [h.strip().lower() for h in rows[0]]

    def column(*prefixes: str, axis: str = "") -> int:
        for i, name in enumerate(header):
            if any(name.startswith(p) for p in prefixes) and name.endswith(axis):
                return i
        raise InputError(str(path), f"no column for {prefixes[0]}{axis} (columns: {', '.join(header)})")

    time_col = column("canonical_timestamp", "timestamp", "time")
    cols = [column("acc", axis=a) for a in "xyz"] + [column("gyr", axis=a) for a in "xyz"]
    try:
        data = np.array([[float(r[time_col])] + [float(r[c]) for c in cols] for r in rows[1:] if r], dtype=np.float64)
    except (ValueError, IndexError):
        raise InputError(str(path), "IMU CSV has non-numeric or missing values") from None
    scale = 1e-3 if "ms" in header[time_col] else 1.0
    return data[:, 0] * scale, data[:, 1:].T


def prepare(root: Path, manifest: Path, *, window_seconds: float = 10.0, stride_seconds: float | None = None,
            imu_dir: str | None = None, val_fraction: float = 0.0) -> int:
    """Write {"video", "imu", "start", "end"} rows, one per window of every video that has IMU."""
    from ...preprocess.video import video_info

    check_root(root)
    stride = stride_seconds or window_seconds
    out = Path(imu_dir) if imu_dir else manifest.with_name(f"{manifest.stem}_imu")
    out.mkdir(parents=True, exist_ok=True)
    imu_files = {p.stem: p for p in root.rglob("*.csv") if p.parent.name == "imu"}
    rows = []
    for video in sorted(p for p in root.rglob("*.mp4") if p.stem in imu_files):
        times, values = read_imu_csv(imu_files[video.stem])
        _, _, duration = video_info(str(video))
        first, last_start = max(times[0], 0.0), min(duration, times[-1]) - window_seconds
        k = 0
        while first + k * stride <= last_start:
            start = first + k * stride
            grid = start + np.arange(int(window_seconds * RATE)) / RATE  # 200 Hz sample times
            window = np.stack([np.interp(grid, times, channel) for channel in values]).astype(np.float32)  # (6, T)
            target = out / f"{video.stem}_{k:05d}.npy"
            np.save(target, window)
            rows.append({"video": str(video.resolve()), "imu": str(target.resolve()),
                         "start": round(start, 3), "end": round(start + window_seconds, 3)})
            k += 1
    return write_split(rows, manifest, val_fraction)
