"""The accelerator benchmark's CPU mode (`gpu.sh --device cpu`): one table with every row, and its FLOP count."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import device_bench  # noqa: E402


def test_vision_flops_match_the_published_vit_h_count():
    """ViT-H/14 at 224 px is 167.4 GMACs in timm's tables: 2 FLOPs per multiply-accumulate."""
    from bindspace.model.presets import get_config

    flops = device_bench.tower_flops(get_config("imagebind_huge"), "vision")
    assert flops == pytest.approx(2 * 167.4e9, rel=0.01)


def test_targets_are_marked_met_or_missed_from_the_rows():
    Row = device_bench.Row
    rows = [Row("vision", "plain fp32 eager", 256, rate=400.0), Row("vision", "bf16 SDPA flash", 256, rate=1400.0,
                                                                    cosine=0.9995),
            Row("vision", "bf16 torch.compile", 256, rate=1800.0, cosine=0.9991),
            Row("text", "bf16 SDPA flash", 256, rate=12_000.0, cosine=0.9999),
            Row("end to end: JPEG files", "bf16", 256, rate=1500.0, cosine=0.9989)]
    notes = {r.path: r.note for r in device_bench.target_rows(rows)}
    assert notes["ViT-H bf16 >= 1,500 images/s at batch 256"] == "met: 1,800 images/s"  # the best bf16 path
    assert notes[">= 3x plain fp32 eager at batch 256"] == "met: 4.5x"
    assert notes["text >= 10,000 prompts/s"] == "met: 12,000 prompts/s"
    assert notes["end-to-end images >= 80 % of model-only (bf16, batch 256)"] == "met: 83 %"
    assert notes["8-minute video (vision + audio, all segments) < 60 s"] == "not measured: -"
    assert notes["cosine >= 0.999 to fp32 on every reduced-precision path"] == "MISSED: lowest 0.998900"


@pytest.mark.slow
def test_cpu_mode_prints_one_table_with_every_row(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "BINDSPACE_GPU_SECONDS": "400"}
    proc = subprocess.run(["bash", str(BENCH / "gpu.sh"), "--device", "cpu", "--model", "imagebind_tiny_test",
                           "--root", str(tmp_path / "bench"), "--json", str(tmp_path / "rows.json")],
                          capture_output=True, text=True, env=env, timeout=420)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert out.startswith("Device: ") and "\nCPU: " in out and "flags: " in out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert len(table) == len([line for line in out.splitlines() if line.startswith("|")]) - 1  # one table
    rows = json.loads((tmp_path / "rows.json").read_text())["rows"]
    assert len(table) == len(rows) + 1  # the header, then one line per row
    failed = [r for r in rows if r["note"].startswith(("failed", "killed", "time limit", "skipped"))]
    assert not failed, failed

    batches = device_bench.CPU_PROFILE.batches
    for tower in device_bench.TOWERS:
        for path in device_bench.PATHS:
            for batch in batches:
                [row] = [r for r in rows if (r["section"], r["path"], r["batch"]) == (tower, path, batch)]
                if path in ("bf16 CUDA graph", "bf16 torch.compile"):  # CUDA only / off on CPU: said so
                    assert row["rate"] is None and row["note"]
                    continue
                assert row["rate"] > 0 and row["ms"] > 0
                if path != "plain fp32 eager":
                    assert row["cosine"] >= 0.999, row  # every faster path computes the same embeddings
    loads = [r for r in rows if r["section"] == "load"]
    assert len(loads) == 6 and all(r["seconds"] > 0 for r in loads)
    e2e = {r["section"]: r for r in rows if r["section"].startswith("end to end")}
    assert e2e["end to end: JPEG files"]["rate"] > 0 and e2e["end to end: JPEG files"]["cosine"] >= 0.999
    assert e2e["end to end: WAV files"]["rate"] > 0 and e2e["end to end: WAV files"]["cosine"] >= 0.999
    [video] = [r for name, r in e2e.items() if name.endswith("MP4")]
    assert video["seconds"] > 0 and "2 vision + 2 audio segments" in video["note"]  # 12 s in 10 s windows
    assert [r for r in rows if r["section"] == "setup"][0]["seconds"] > 0
    assert sum(r["section"] == "summary" for r in rows) == 4
