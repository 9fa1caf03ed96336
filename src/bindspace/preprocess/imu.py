"""IMU recordings to the IMU encoder's input: (6, length) float32.

The original release ships no IMU loader; this is our own documented convention
(docs/inputs.md, "IMU"). Channels are accelerometer x, y, z (m/s^2) then gyroscope
x, y, z (rad/s). Recordings are resampled linearly to `target_rate` when their rate
is known, then centre cut or zero padded (at the end) to `length` samples.
"""
from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from ..errors import InputError
from .batching import NPY_MAGIC, load_batch
from .sources import Source, read_bytes, source_name

CHANNELS = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
STANDARD_GRAVITY = 9.80665  # m/s^2 per g
ImuInput = Source | np.ndarray | torch.Tensor

# Column names are compared after lower-casing, dropping "(...)"/"[...]" unit notes and
# every non-alphanumeric character: "Acc_X (m/s^2)" -> "accx".
_ACC_PREFIXES = ("a", "acc", "accel", "accelerometer", "acceleration")
_GYRO_PREFIXES = ("g", "gyr", "gyro", "gyroscope", "angvel", "angularvelocity")
_CHANNEL_KEYS = {
    f"{prefix}{axis}": f"{sensor}_{axis}"
    for sensor, prefixes in (("acc", _ACC_PREFIXES), ("gyro", _GYRO_PREFIXES))
    for prefix in prefixes
    for axis in "xyz"
}
# Time columns: base name plus optional unit suffix; bare names are seconds.
_TIME_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "seconds": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_TIME_KEYS = {f"{base}{unit}": factor for base in ("t", "time", "timestamp") for unit, factor in _TIME_UNITS.items()}
# Inferred rates outside this range almost always mean a time column in the wrong unit.
_PLAUSIBLE_RATES = (1.0, 100_000.0)


def load_imu(
    item: ImuInput,
    name: str | None = None,
    *,
    sample_rate: float | None = None,
    target_rate: float = 200.0,
    length: int = 2000,
    min_length: int = 200,
    accel_units: Literal["m/s^2", "g"] = "m/s^2",
    gyro_units: Literal["rad/s", "deg/s"] = "rad/s",
) -> torch.Tensor:
    """Load one IMU recording as a float32 tensor of shape (6, length)."""
    name = name or source_name(item)
    _check_options(name, sample_rate, target_rate, length, min_length, accel_units, gyro_units)
    values, times = _read(item, name)
    _check_finite(values, name)
    if accel_units == "g":
        values[:3] *= STANDARD_GRAVITY
    if gyro_units == "deg/s":
        values[3:] *= math.pi / 180.0
    if sample_rate is not None:  # an explicit rate overrides any time column
        times = np.arange(values.shape[1]) / sample_rate
    elif times is not None:
        _check_times(times, name)
    if times is not None:
        values = _resample(values, times, target_rate, length)
    return torch.from_numpy(_fit_length(values, name, target_rate, length, min_length))


def imu(items: Sequence[ImuInput], **options: Any) -> torch.Tensor:
    """Load several IMU recordings into one (N, 6, length) batch; options as for load_imu."""
    return load_batch("imu", items, load_imu, **options)


def _check_options(
    name: str,
    sample_rate: float | None,
    target_rate: float,
    length: int,
    min_length: int,
    accel_units: str,
    gyro_units: str,
) -> None:
    """Reject option values that would silently produce garbage."""
    if sample_rate is not None and not sample_rate > 0:
        raise InputError(name, f"sample_rate must be > 0 Hz, got {sample_rate}")
    if not target_rate > 0:
        raise InputError(name, f"target_rate must be > 0 Hz, got {target_rate}")
    if length < 1 or not 1 <= min_length <= length:
        raise InputError(name, f"need 1 <= min_length <= length, got min_length={min_length}, length={length}")
    if accel_units not in ("m/s^2", "g"):
        raise InputError(name, f"accel_units must be 'm/s^2' or 'g', got {accel_units!r}")
    if gyro_units not in ("rad/s", "deg/s"):
        raise InputError(name, f"gyro_units must be 'rad/s' or 'deg/s', got {gyro_units!r}")


def _read(item: ImuInput, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Values (6, T) float64 and, for CSVs with a time column, times (T,) in seconds."""
    if isinstance(item, torch.Tensor):
        return _channels_first(item.detach().cpu().numpy(), name), None
    if isinstance(item, np.ndarray):
        return _channels_first(item, name), None
    data = read_bytes(item, name)
    if data.startswith(NPY_MAGIC):
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(name, f"unreadable .npy array ({exc})") from None
        return _channels_first(array, name), None
    try:
        text = data.decode("utf-8-sig")  # utf-8-sig drops the BOM spreadsheet exports add
    except UnicodeDecodeError:
        raise InputError(name, "neither a .npy array nor UTF-8 CSV text") from None
    return _parse_csv(text, name)


def _channels_first(array: np.ndarray, name: str) -> np.ndarray:
    """(6, T) as is, (T, 6) transposed; (6, 6) counts as (6, T)."""
    if array.ndim != 2 or 6 not in array.shape:
        raise InputError(
            name, f"expected 6 channels (acc x,y,z, gyro x,y,z) as shape (6, T) or (T, 6), got {tuple(array.shape)}"
        )
    if array.dtype.kind not in "uif":
        raise InputError(name, f"unsupported data type {array.dtype} (need numbers)")
    values = array if array.shape[0] == 6 else array.T  # (T, 6) -> (6, T)
    if values.shape[1] == 0:
        raise InputError(name, "empty recording (0 samples)")
    return values.astype(np.float64)  # a copy: unit conversion scales it in place


def _parse_csv(text: str, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Parse CSV/TSV text with named columns (or exactly 6 unnamed ones) into (6, T) and times."""
    lines = [(number, line) for number, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise InputError(name, "empty CSV (no rows)")
    rows = _split(lines)
    header_number, header = rows[0]
    if all(_is_number(cell) for cell in header):
        if len(header) != 6:
            raise InputError(name, f"CSV without a header must have exactly 6 columns "
                             f"(acc x,y,z, gyro x,y,z), found {len(header)}; add a header row naming the columns")
        columns, time_column, body = list(range(6)), None, rows
        labels = list(CHANNELS)
    else:
        columns, time_column = _map_columns(header, name)
        labels = header
        body = rows[1:]
    if not body:
        raise InputError(name, "CSV has a header but no data rows")
    table = np.empty((len(body), len(labels)), dtype=np.float64)  # (T, columns in file)
    for row_index, (number, cells) in enumerate(body):
        if len(cells) != len(labels):
            raise InputError(name, f"line {number} has {len(cells)} fields, the header (line {header_number}) "
                             f"has {len(labels)}")
        for column, cell in enumerate(cells):
            try:
                table[row_index, column] = float(cell)
            except ValueError:
                raise InputError(name, f"line {number}, column {labels[column].strip()!r}: "
                                 f"cannot read {cell!r} as a number") from None
    values = table[:, columns].T  # (T, 6) -> (6, T) in CHANNELS order
    times = None
    if time_column is not None:
        index, factor = time_column
        times = table[:, index] * factor
    return np.ascontiguousarray(values), times


def _split(lines: list[tuple[int, str]]) -> list[tuple[int, list[str]]]:
    """Split lines on the delimiter the first line uses: comma, semicolon, tab, else whitespace."""
    first = lines[0][1]
    delimiter = next((d for d in (",", ";", "\t") if d in first), None)
    if delimiter is None:
        return [(number, line.split()) for number, line in lines]
    cells = csv.reader([line for _, line in lines], delimiter=delimiter)
    return [(number, [cell.strip() for cell in row]) for (number, _), row in zip(lines, cells)]


def _map_columns(header: list[str], name: str) -> tuple[list[int], tuple[int, float] | None]:
    """File column index for each of CHANNELS, and (index, seconds per unit) of a time column."""
    found: dict[str, int] = {}
    time_column: tuple[int, float] | None = None
    for index, label in enumerate(header):
        lower = label.strip().lower()
        key = re.sub(r"[^a-z0-9]", "", re.sub(r"[(\[].*?[)\]]", "", lower))
        channel = _CHANNEL_KEYS.get(key)
        if channel is not None:
            if channel in found:
                raise InputError(name, f"two columns for {channel}: {header[found[channel]]!r} and {label!r}")
            found[channel] = index
            continue
        # The unit may sit in brackets ("time (ms)"), so match time names with them kept.
        factor = _TIME_KEYS.get(re.sub(r"[^a-z0-9]", "", lower))
        if factor is not None:
            if time_column is not None:
                raise InputError(name, f"two time columns: {header[time_column[0]]!r} and {label!r}")
            time_column = (index, factor)
    missing = [channel for channel in CHANNELS if channel not in found]
    if missing:
        raise InputError(
            name,
            f"CSV is missing column(s) {', '.join(missing)} (found {', '.join(repr(h) for h in header)}); "
            "accepted names include acc_x/ax/accelerometer_x and gyro_x/gx/gyroscope_x",
        )
    return [found[channel] for channel in CHANNELS], time_column


def _is_number(cell: str) -> bool:
    """True if a CSV cell parses as a float (used to tell a header from data)."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _check_finite(values: np.ndarray, name: str) -> None:
    """Refuse NaN/inf: interpolation and the encoder would spread them everywhere."""
    bad = ~np.isfinite(values)
    if bad.any():
        counts = ", ".join(f"{CHANNELS[c]}: {int(n)}" for c, n in enumerate(bad.sum(axis=1)) if n)
        raise InputError(name, f"contains NaN or infinite values ({counts})")


def _check_times(times: np.ndarray, name: str) -> None:
    """A CSV time column must be finite, strictly increasing and in plausible units."""
    if not np.isfinite(times).all():
        raise InputError(name, "time column contains NaN or infinite values")
    if len(times) < 2:
        return
    steps = np.diff(times)
    if (steps <= 0).any():
        row = int(np.argmax(steps <= 0)) + 2  # 1-based data row of the offending sample
        raise InputError(name, f"time column is not strictly increasing (data row {row})")
    rate = 1.0 / float(np.median(steps))
    if not _PLAUSIBLE_RATES[0] <= rate <= _PLAUSIBLE_RATES[1]:
        raise InputError(name, f"time column implies a sample rate of {rate:.3g} Hz; if it is not in seconds, "
                         "name its unit (e.g. 'timestamp_ms', 'time_ns') or pass sample_rate=")


def _resample(values: np.ndarray, times: np.ndarray, target_rate: float, length: int) -> np.ndarray:
    """Linear interpolation of (6, T) samples at `times` onto a uniform target_rate grid (centre window)."""
    # The small epsilon keeps the last sample when duration * rate is a whole number
    # that floating point lands just below.
    count = int(math.floor((times[-1] - times[0]) * target_rate + 1e-6)) + 1
    # Only the centre `length` samples survive _fit_length: interpolate just those, so a
    # long recording (or one with a gap) never builds a huge grid.
    start = max(count - length, 0) // 2
    grid = times[0] + np.arange(start, start + min(count, length)) / target_rate
    return np.stack([np.interp(grid, times, channel) for channel in values])  # (6, min(count, length))


def _fit_length(values: np.ndarray, name: str, rate: float, length: int, min_length: int) -> np.ndarray:
    """Centre cut or zero pad (at the end) to `length` samples; float32 (6, length)."""
    count = values.shape[1]
    if count < min_length:
        raise InputError(name, f"too short: {count} samples ({count / rate:.2f} s at {rate:g} Hz), "
                         f"need at least {min_length} (min_length)")
    out = np.zeros((6, length), dtype=np.float32)
    if count >= length:
        start = (count - length) // 2
        out[:] = values[:, start : start + length]
    else:
        out[:, :count] = values
    return out
