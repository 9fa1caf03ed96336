"""The demo world: real preprocessing for its audio, keypad tones that are DTMF, and emergent zero-shot."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bindspace.cli import main
from bindspace.train import demo, digits_world


def test_batched_demo_features_equal_the_standard_audio_loader():
    from bindspace.preprocess.audio import load_audio

    waves = digits_world.dtmf_waveforms(torch.tensor([1, 5, 0]), torch.Generator().manual_seed(0))
    feats = digits_world.audio_features(waves)
    assert feats.shape == (3, 1, 128, 204)
    for i in range(3):
        standard = load_audio((waves[i].numpy(), 16000))  # (3 clips, 1, 128, 204), all the same 2 s
        assert torch.allclose(feats[i], standard[0], atol=1e-4)
        assert torch.allclose(feats[i], standard[2], atol=1e-3)


@pytest.mark.parametrize("digit", [1, 5, 9, 0])
def test_tones_hold_the_two_keypad_frequencies(digit):
    wave = digits_world.dtmf_waveforms(torch.tensor([digit] * 4), torch.Generator().manual_seed(digit))
    spectrum = np.abs(np.fft.rfft(wave.double().numpy(), axis=1)).mean(axis=0)
    freqs = np.fft.rfftfreq(wave.shape[1], 1 / 16000)
    low_band, high_band = (freqs > 600) & (freqs < 1000), (freqs > 1150) & (freqs < 1700)
    low_peak = freqs[low_band][spectrum[low_band].argmax()]
    high_peak = freqs[high_band][spectrum[high_band].argmax()]
    expected = {1: (697, 1209), 5: (770, 1336), 9: (852, 1477), 0: (941, 1336)}[digit]
    assert abs(low_peak - expected[0]) / expected[0] < 0.02
    assert abs(high_peak - expected[1]) / expected[1] < 0.02


def test_demo_cli_rejects_bad_steps(capsys):
    assert main(["demo", "--steps", "many"]) == 2  # a usage error
    assert "expected S1,S2" in capsys.readouterr().err


@pytest.mark.slow
def test_short_demo_learns_emergent_audio_to_text(tmp_path):
    from bindspace.model.factory import create_model
    from bindspace.preprocess.image import load_image

    settings = demo.DemoSettings(stage1_steps=200, stage2_steps=150, train_tones=500, test_tones=200, progress=False)
    result = demo.run_demo(tmp_path / "model", settings, log=lambda message: None)
    assert result.image_to_text >= 0.6  # chance: 0.1
    assert result.audio_to_text >= 0.6  # audio was never paired with text
    assert result.saved_check is not None and result.saved_check >= 0.6

    model = create_model(checkpoint=tmp_path / "model")  # self-describing: no preset name
    assert model.config.name == "bindspace_demo" and set(model.modalities) == {"vision", "text", "audio"}
    examples = tmp_path / "model" / "examples"
    images = torch.stack([load_image(str(examples / f"digit_{d}.png"), size=16) for d in range(10)])
    with torch.no_grad():
        classes = demo._class_embeddings(model, digits_world.tokenized_prompts())
        predicted = (model.encode("vision", images) @ classes.T).argmax(dim=1)
    assert (predicted == torch.arange(10)).float().mean() >= 0.6
