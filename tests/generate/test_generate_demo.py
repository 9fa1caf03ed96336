"""`bindspace demo generate` through the real commands: digits drawn from tones the generator never saw."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from bindspace.cli import main


def read_digit(path) -> torch.Tensor:
    """A PNG written by `bindspace generate` (8x8 enlarged 8x, dark ink on white) -> the 64 values in [-1, 1]."""
    with Image.open(path) as image:
        grey = np.asarray(image.convert("L"), dtype=np.float32)
    step = grey.shape[0] // 8
    ink = 1 - grey[::step, ::step] / 255  # nearest-neighbour enlargement: every step-th pixel is the original
    return torch.from_numpy(ink * 2 - 1).flatten()


@pytest.mark.slow
def test_demo_generate_draws_recognisable_digits_from_tones(tmp_path, capsys):
    from bindspace.generate.digits_demo import CLASSIFIER_FILE, load_classifier

    out = tmp_path / "demo"
    capsys.readouterr()
    assert main(["demo", "generate", "--out", str(out), "--json", "--min-accuracy", "0.8"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tone_accuracy"] >= 0.8  # chance: 0.1
    assert report["classifier_accuracy"] >= 0.9
    with Image.open(report["contact_sheet"]) as sheet:
        assert sheet.format == "PNG" and sheet.width > 300

    # The same `bindspace generate` command, one PNG per tone file, read by the demo's classifier.
    classifier = load_classifier(out / CLASSIFIER_FILE)
    digits = []
    for d in range(10):
        png = tmp_path / f"digit_{d}.png"
        assert main(["generate", "--pipeline", str(out / "generator"), "--audio",
                     str(out / "examples" / f"tone_{d}.wav"), "-o", str(png), "--quiet"]) == 0
        digits.append(read_digit(png))
    with torch.no_grad():
        read = classifier(torch.stack(digits)).argmax(dim=1)
    assert int((read == torch.arange(10)).sum()) >= 8
