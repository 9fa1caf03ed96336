"""IMU loader: orientation, CSV columns, resampling, cut/pad, units, errors."""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from bindspace.errors import InputError
from bindspace.preprocess.imu import CHANNELS, imu, load_imu

MEDIA = Path(__file__).resolve().parents[1] / "fixtures" / "media"
FIXTURE = np.load(MEDIA / "imu_1.npy")  # (6, 2000) float32


def write_csv(path: Path, header: list[str] | None, columns: list[np.ndarray], delimiter: str = ",") -> Path:
    """Write columns (each (T,)) as CSV; repr keeps float32 values exact."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        if header is not None:
            writer.writerow(header)
        writer.writerows(zip(*[[repr(float(v)) for v in column] for column in columns]))
    return path


def ramps(count: int) -> np.ndarray:
    """(6, count) float ramps, channel c holding k + 1000 c at sample k."""
    return np.arange(count, dtype=np.float64)[None, :] + 1000.0 * np.arange(6)[:, None]


def test_fixture_npy_unchanged() -> None:
    out = load_imu(MEDIA / "imu_1.npy")
    assert out.shape == (6, 2000) and out.dtype == torch.float32
    assert torch.equal(out, torch.from_numpy(FIXTURE))


def test_time_major_arrays_are_transposed() -> None:
    assert torch.equal(load_imu(FIXTURE.T), torch.from_numpy(FIXTURE))
    assert torch.equal(load_imu(torch.from_numpy(FIXTURE.T.copy())), torch.from_numpy(FIXTURE))


def test_csv_with_shuffled_and_aliased_columns_matches_npy(tmp_path: Path) -> None:
    names = ["gyroscope_z", "Acc_X (m/s^2)", "temperature", "gx", "ay", "accelerometer_z", "Gyro-Y"]
    sources = [5, 0, None, 3, 1, 2, 4]
    columns = [FIXTURE[s] if s is not None else np.zeros(2000) for s in sources]
    path = write_csv(tmp_path / "imu.csv", names, columns)
    assert torch.equal(load_imu(path), load_imu(MEDIA / "imu_1.npy"))


@pytest.mark.parametrize("delimiter", [";", "\t", " "])
def test_other_delimiters(tmp_path: Path, delimiter: str) -> None:
    path = write_csv(tmp_path / "imu.txt", list(CHANNELS), list(FIXTURE), delimiter)
    assert torch.equal(load_imu(path), torch.from_numpy(FIXTURE))


def test_headerless_six_columns_in_channel_order(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "imu.csv", None, list(FIXTURE))
    assert torch.equal(load_imu(path), torch.from_numpy(FIXTURE))


def test_100hz_ramp_resampled_to_200hz_stays_a_ramp(tmp_path: Path) -> None:
    values = ramps(1000)
    times = np.arange(1000) / 100.0
    path = write_csv(tmp_path / "imu.csv", ["time", *CHANNELS], [times, *values])
    out = load_imu(path)
    # 1000 samples over 9.99 s -> 1999 samples at 200 Hz, then one zero of padding
    expected = np.arange(1999) / 2.0 + 1000.0 * np.arange(6)[:, None]
    assert np.allclose(out[:, :1999].numpy(), expected)
    assert (out[:, 1999] == 0).all()
    assert torch.allclose(load_imu(values, sample_rate=100.0), out)
    in_ms = write_csv(tmp_path / "ms.csv", ["timestamp (ms)", *CHANNELS], [times * 1000, *values])
    assert torch.allclose(load_imu(in_ms), out)


def test_400hz_ramp_downsampled_and_irregular_times(tmp_path: Path) -> None:
    out = load_imu(ramps(4000), sample_rate=400.0)  # 10 s -> 2000 samples at 200 Hz
    assert np.allclose(out.numpy(), ramps(4000)[:, ::2][:, :2000])
    jittered = np.arange(3000) / 200.0 + np.tile([0.0, 0.001], 1500)
    values = np.tile(jittered * 5.0, (6, 1))  # a linear signal of time, sampled irregularly
    path = write_csv(tmp_path / "jitter.csv", ["t", *CHANNELS], [jittered, *values])
    resampled = load_imu(path)[0].double().numpy()
    start = (3000 - 2000) // 2  # 14.996 s -> 3000 grid samples at 200 Hz; keep the centre 2000
    assert np.allclose(resampled, (np.arange(start, start + 2000) / 200.0) * 5.0, atol=1e-3)


def test_centre_cut_and_end_padding() -> None:
    long = load_imu(ramps(3001))
    assert torch.equal(long, torch.from_numpy(ramps(3001)[:, 500:2500]).float())
    short = load_imu(ramps(1000))
    assert torch.equal(short[:, :1000], torch.from_numpy(ramps(1000)).float())
    assert (short[:, 1000:] == 0).all()
    assert load_imu(ramps(50), length=100, min_length=10).shape == (6, 100)


def test_units() -> None:
    ones = np.ones((6, 2000))
    out = load_imu(ones, accel_units="g", gyro_units="deg/s")
    assert torch.allclose(out[:3], torch.full((3, 2000), 9.80665))
    assert torch.allclose(out[3:], torch.full((3, 2000), math.pi / 180))


def test_batch() -> None:
    assert imu([FIXTURE, MEDIA / "imu_1.npy"]).shape == (2, 6, 2000)
    with pytest.raises(InputError, match="empty batch"):
        imu([])


def test_array_errors_name_the_input() -> None:
    with pytest.raises(InputError, match=r"rec: expected 6 channels .*\(5, 2000\)"):
        load_imu(np.zeros((5, 2000)), "rec")
    with pytest.raises(InputError, match=r"rec: expected 6 channels"):
        load_imu(np.zeros((2, 6, 2000)), "rec")
    bad = np.zeros((6, 2000))
    bad[4, 7] = np.nan
    with pytest.raises(InputError, match=r"<ndarray #1>: contains NaN.*gyro_y: 1"):
        imu([np.zeros((6, 2000)), bad])
    with pytest.raises(InputError, match=r"rec: too short: 100 samples"):
        load_imu(np.zeros((6, 100)), "rec")
    with pytest.raises(InputError, match=r"rec: empty recording"):
        load_imu(np.zeros((0, 6)), "rec")
    with pytest.raises(InputError, match=r"sample_rate must be > 0"):
        load_imu(np.zeros((6, 2000)), sample_rate=0)


def test_csv_errors_name_the_input_and_the_problem(tmp_path: Path) -> None:
    def expect(path: Path, problem: str) -> None:
        with pytest.raises(InputError, match=re.escape(str(path)) + ": " + problem):
            load_imu(path)

    missing = write_csv(tmp_path / "missing.csv", ["ax", "ay", "az", "gx", "gy"], list(FIXTURE[:5]))
    expect(missing, r"CSV is missing column\(s\) gyro_z")
    seven = write_csv(tmp_path / "seven.csv", None, [*FIXTURE, FIXTURE[0]])
    expect(seven, "CSV without a header must have exactly 6 columns")
    text = tmp_path / "text.csv"
    text.write_text("ax,ay,az,gx,gy,gz\n" + "1,2,3,4,5,6\n" * 300 + "1,2,abc,4,5,6\n")
    expect(text, "line 302, column 'az': cannot read 'abc' as a number")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("ax,ay,az,gx,gy,gz\n1,2,3\n")
    expect(ragged, "line 2 has 3 fields")
    header_only = tmp_path / "header.csv"
    header_only.write_text("ax,ay,az,gx,gy,gz\n")
    expect(header_only, "CSV has a header but no data rows")
    blank = tmp_path / "blank.csv"
    blank.write_text("\n# nothing\n")
    expect(blank, r"empty CSV")
    binary = tmp_path / "imu.bin"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 10)
    expect(binary, "neither a .npy array nor UTF-8 CSV text")
    twice = write_csv(tmp_path / "twice.csv", ["ax", "acc_x", "ay", "az", "gx", "gy", "gz"], [*FIXTURE[:1], *FIXTURE])
    expect(twice, "two columns for acc_x")
    times = np.arange(2000) / 200.0
    times[10] = times[9]
    backwards = write_csv(tmp_path / "backwards.csv", ["time", *CHANNELS], [times, *FIXTURE])
    expect(backwards, r"time column is not strictly increasing \(data row 11\)")
    nanos = write_csv(tmp_path / "nanos.csv", ["timestamp", *CHANNELS], [np.arange(2000) * 5e6, *FIXTURE])
    expect(nanos, "time column implies a sample rate of 2e-07 Hz")
    expect(tmp_path / "absent.csv", "no such file")
