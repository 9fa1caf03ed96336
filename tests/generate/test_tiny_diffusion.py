"""The tiny diffusion generator: deterministic sampling, conditioning, ink convention, saving and loading."""
from __future__ import annotations

import pytest
import torch

from bindspace.errors import BindspaceError
from bindspace.generate.tiny_diffusion import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    TinyDiffusion,
    TinyDiffusionConfig,
    load_generator,
    save_generator,
    to_uint8,
)


def small() -> TinyDiffusion:
    torch.manual_seed(0)
    return TinyDiffusion(TinyDiffusionConfig(embed_dim=8, hidden=32, layers=1)).eval()


def test_sampling_is_seeded_and_conditioned():
    model = small()
    cond = torch.nn.functional.normalize(torch.randn(2, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    a = model.sample(cond, steps=5, generator=torch.Generator().manual_seed(0))
    b = model.sample(cond, steps=5, generator=torch.Generator().manual_seed(0))
    c = model.sample(cond.flip(0), steps=5, generator=torch.Generator().manual_seed(0))
    assert a.shape == (2, 1, 8, 8) and a.abs().max() <= 1
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


def test_training_step_reduces_the_loss_on_a_fixed_batch():
    model = small().train()
    images, cond = torch.rand(16, 64) * 2 - 1, torch.nn.functional.normalize(torch.randn(16, 8), dim=1)
    optim = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model.loss(images, cond, torch.Generator().manual_seed(0), drop=0.0)  # same noise every step
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_ink_convention():
    images = torch.tensor([-1.0, 1.0]).view(1, 1, 1, 2)  # no ink, full ink
    assert to_uint8(images, "dark-on-light").flatten().tolist() == [255, 0]
    assert to_uint8(images, "light-on-dark").flatten().tolist() == [0, 255]


def test_save_and_load_round_trip(tmp_path):
    model = small()
    folder = save_generator(model, tmp_path / "gen", extra={"checkpoint": ".."})
    loaded, meta = load_generator(folder)
    assert meta["checkpoint"] == ".." and loaded.config == model.config
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)


def test_corrupt_generator_files_are_one_line_errors(tmp_path):
    folder = save_generator(small(), tmp_path / "gen")
    (folder / WEIGHTS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(BindspaceError, match="generator.safetensors: unreadable generator weights"):
        load_generator(folder)
    (folder / CONFIG_FILE).write_text("{")
    with pytest.raises(BindspaceError, match="generator.json: unreadable generator config"):
        load_generator(folder)
    (folder / CONFIG_FILE).write_text('{"kind": "something else", "config": {}}')
    with pytest.raises(BindspaceError, match="not a bindspace generator"):
        load_generator(folder)
