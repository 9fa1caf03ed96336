"""`bindspace eval` through the real CLI with the tiny preset on synthetic datasets.

With random-ish weights the numbers are near chance, so these tests check what cannot
drift: report structure, counts, skipped items, exit codes, and that the numbers agree
with each other and with an independent re-computation of the protocol.
"""
import json

import numpy as np
import pytest
import torch

from bindspace import preprocess
from bindspace.cli import main
from tasks.synthetic import (
    ESC50_ROWS,
    make_audiocaps,
    make_clotho,
    make_esc50,
    make_imagenet,
    make_llvip,
    make_nyud,
    make_sund,
)


def run_eval(tiny_pth, tmp_path, *args):
    report = tmp_path / "report.json"
    code = main(["eval", *args, "--report", str(report), "--model", "imagebind_tiny_test",
                 "--checkpoint", str(tiny_pth)])
    return code, (json.loads(report.read_text()) if report.exists() else None)


def check_classification(data, evaluated, classes):
    counts = data["counts"]
    assert counts["evaluated"] == evaluated and counts["classes"] == classes
    assert counts["skipped"] == len(data["skipped"])
    assert set(data["metrics"]) >= {"top1", "mean_per_class_top1"}
    # accuracies are whole numbers of items: top1 x n / 100 is an integer everywhere
    correct = data["metrics"]["top1"] * evaluated / 100
    assert correct == pytest.approx(round(correct), abs=1e-3)
    per_class = data["per_class"]
    assert sum(v["n"] for v in per_class.values()) == evaluated
    assert sum(v["top1"] * v["n"] / 100 for v in per_class.values()) == pytest.approx(correct, abs=1e-3)
    assert data["ours"] == data["metrics"]["top1"] and 0 <= data["ours"] <= 100
    assert len(data["templates"]) >= 1


def test_esc50(tiny_pth, tiny_model, tmp_path, capsys):
    root = make_esc50(tmp_path / "ESC-50-master")
    code, data = run_eval(tiny_pth, tmp_path, "esc50", "--root", str(root))
    assert code == 0
    out = capsys.readouterr().out
    assert "66.90" in out and "fold 5" in out
    assert data["benchmark"] == "esc50" and data["paper_value"] == 66.9
    assert data["counts"]["listed"] == 12 and data["counts"]["selected"] == 12
    check_classification(data, evaluated=10, classes=3)
    assert {s["name"] for s in data["skipped"]} == {"1-7-A-41.wav", "5-9-A-0.wav"}
    groups = data["groups"]
    assert list(groups) == [f"fold {k}" for k in range(1, 6)] and all(g["n"] == 2 for g in groups.values())
    by_folds = sum(g["top1"] * g["n"] for g in groups.values()) / 10
    assert by_folds == pytest.approx(data["metrics"]["top1"], abs=1e-3)
    assert data["model"]["name"] == "imagebind_tiny_test"

    # independent re-computation: mean of unit prompt embeddings per class, argmax of cosine
    categories = ["dog", "chirping birds", "chainsaw"]
    with torch.inference_mode():
        prototypes = []
        for c in categories:
            e = tiny_model.encode("text", preprocess.text([t.replace("{}", c) for t in data["templates"]]))
            prototypes.append(torch.nn.functional.normalize(e.mean(0), dim=0))
        protos = torch.stack(prototypes)
        good = [(n, cat) for n, _, _, cat in ESC50_ROWS if n not in ("1-7-A-41.wav", "5-9-A-0.wav")]
        x = torch.stack([preprocess.load_audio(root / "audio" / n) for n, _ in good])
        predicted = (tiny_model.encode("audio", x) @ protos.T).argmax(1).tolist()
    truth = [["dog", "chirping_birds", "chainsaw"].index(cat) for _, cat in good]
    expected = 100 * np.mean([p == t for p, t in zip(predicted, truth)])
    assert data["metrics"]["top1"] == pytest.approx(expected, abs=1e-3)


def test_esc50_json_limit_templates(tiny_pth, tmp_path, capsys):
    root = make_esc50(tmp_path / "esc")
    code, data = run_eval(tiny_pth, tmp_path, "esc50", "--root", str(root), "--limit", "4", "--json",
                          "--template", "a {} sound", "--template", "{}")
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["metrics"] == data["metrics"] and printed["templates"] == ["a {} sound", "{}"]
    assert data["counts"]["selected"] == 4 and data["options"]["limit"] == 4


def test_clotho(tiny_pth, tmp_path):
    code, data = run_eval(tiny_pth, tmp_path, "clotho", "--root", str(make_clotho(tmp_path / "clotho")))
    assert code == 0
    assert data["counts"]["evaluated"] == 4 and data["counts"]["queries_evaluated"] == 20
    assert [s["name"] for s in data["skipped"]] == ["gone.wav"]
    m = data["metrics"]
    assert m["R@1"] <= m["R@5"] <= m["R@10"] == 100.0  # 4 clips: every caption's clip is in its top 10
    assert 1 <= m["median_rank"] <= 4 and data["paper"] == {"R@10": 28.4}
    assert m["R@1"] * 20 / 100 == pytest.approx(round(m["R@1"] * 20 / 100), abs=1e-3)


def test_audiocaps(tiny_pth, tmp_path):
    code, data = run_eval(tiny_pth, tmp_path, "audiocaps", "--root", str(make_audiocaps(tmp_path / "ac")))
    assert code == 0
    assert data["counts"]["evaluated"] == 3 and data["counts"]["queries_evaluated"] == 6
    assert data["notes"]["clips_not_found"] == 1 and data["paper_value"] == 42.3


def test_nyud(tiny_pth, tmp_path):
    code, data = run_eval(tiny_pth, tmp_path, "nyud", "--root", str(make_nyud(tmp_path / "nyu")))
    assert code == 0
    check_classification(data, evaluated=5, classes=10)
    assert "top5" in data["metrics"] and data["paper_value"] == 54.0


def test_sund(tiny_pth, tmp_path):
    code, data = run_eval(tiny_pth, tmp_path, "sund", "--root", str(make_sund(tmp_path / "SUNRGBD")))
    assert code == 0
    check_classification(data, evaluated=4, classes=19)
    assert data["notes"]["other_scenes_left_out"] == 1 and data["paper_value"] == 35.1


def test_llvip(tiny_pth, tmp_path):
    code, data = run_eval(tiny_pth, tmp_path, "llvip", "--root", str(make_llvip(tmp_path / "LLVIP")))
    assert code == 0
    check_classification(data, evaluated=6, classes=2)
    assert data["per_class"]["person"]["n"] == 3 and data["per_class"]["background"]["n"] == 3
    assert data["listed_unit"] == "images" and data["paper_value"] == 63.4


def test_imagenet(tiny_pth, tmp_path):
    code, data = run_eval(tiny_pth, tmp_path, "imagenet", "--root", str(make_imagenet(tmp_path / "val")))
    assert code == 0
    check_classification(data, evaluated=7, classes=3)
    assert data["paper_value"] == 77.7


def test_missing_layout_is_one_line(tiny_pth, tmp_path, capsys):
    code, data = run_eval(tiny_pth, tmp_path, "esc50", "--root", str(tmp_path / "nothing"))
    assert code == 1 and data is None
    err = capsys.readouterr().err.strip()
    assert err.startswith("bindspace eval: error: esc50: missing") and "\n" not in err
    (tmp_path / "esc" / "meta").mkdir(parents=True)
    code, _ = run_eval(tiny_pth, tmp_path, "esc50", "--root", str(tmp_path / "esc"))
    assert code == 1 and "meta/esc50.csv" in capsys.readouterr().err


def test_nothing_readable_is_an_error_with_a_report(tiny_pth, tmp_path, capsys):
    root = make_esc50(tmp_path / "esc")
    for wav in (root / "audio").iterdir():
        wav.write_bytes(b"not audio at all")
    code, data = run_eval(tiny_pth, tmp_path, "esc50", "--root", str(root))
    assert code == 1 and data["counts"]["evaluated"] == 0 and data["metrics"] == {}
    assert "nothing could be evaluated" in capsys.readouterr().err


def test_usage_errors(tiny_pth, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["eval", "cifar10", "--root", str(tmp_path)])
    assert info.value.code == 2
    code, _ = run_eval(tiny_pth, tmp_path, "esc50", "--root", str(tmp_path), "--template", "no placeholder")
    assert code == 2


def test_unwritable_report_fails_before_the_model_loads(tiny_pth, tmp_path, readonly_dir, no_model_load, capsys):
    root = make_esc50(tmp_path / "esc")
    code = main(["eval", "esc50", "--root", str(root), "--report", str(readonly_dir / "r.json"),
                 "--model", "imagebind_tiny_test", "--checkpoint", str(tiny_pth)])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"bindspace eval: error: {readonly_dir}: cannot write the report there (")
    assert err.count("\n") == 1 and no_model_load == []
