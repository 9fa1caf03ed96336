"""`compile_towers`: the compiled model gives the eager model's embeddings."""
from __future__ import annotations

import copy

import pytest
import torch


@pytest.mark.slow
def test_compiled_towers_match_eager(tiny_model):
    model = copy.deepcopy(tiny_model)
    short = torch.zeros(2, 77, dtype=torch.long)
    short[:, :4] = torch.tensor([49406, 320, 1929, 49407])  # start, "a", "dog", end
    long = torch.randint(1, 49000, (3, 77))
    audio = torch.randn(2, 1, 128, 204, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = [tiny_model.encode("text", short), tiny_model.encode("text", long),
                    tiny_model.encode("audio", audio)]
        assert model.compile_towers() is model
        got = [model.encode("text", short), model.encode("text", long), model.encode("audio", audio)]
    assert all(getattr(trunk, "_compiled_call_impl", None) is not None for trunk in model.modality_trunks.values())
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-5)
