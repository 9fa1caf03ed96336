"""`PackedLinear`: MKL-packed weights give `F.linear`'s rows, in the same bits whatever the batchmates."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bindspace.layers import SelfAttention
from bindspace.layers.packed_linear import PackedLinear, mkl_packing_available, pack_linears

needs_mkl = pytest.mark.skipif(not mkl_packing_available(), reason="this torch build has no MKL packed GEMM")


def _weights(out_features: int = 48, in_features: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(out_features, in_features, generator=g), torch.randn(out_features, generator=g)


@needs_mkl
def test_rows_match_a_plain_linear_for_any_row_count():
    weight, bias = _weights()
    layer = PackedLinear(weight, bias, rows=7)
    g = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        for shape in [(2, 7, 32), (3, 5, 32), (1, 7, 32), (10, 32), (4, 1, 9, 32)]:  # 15 rows: chunks 7, 7, 1
            x = torch.randn(*shape, generator=g)
            got = layer(x)
            assert got.shape == (*shape[:-1], 48)
            torch.testing.assert_close(got, F.linear(x, weight, bias), atol=1e-5, rtol=1e-5)


@needs_mkl
def test_a_rows_bits_do_not_depend_on_its_batchmates():
    weight, bias = _weights()
    layer = PackedLinear(weight, bias, rows=7)
    g = torch.Generator().manual_seed(2)
    item = torch.randn(1, 7, 32, generator=g)
    with torch.inference_mode():
        alone = layer(item)
        crowd = layer(torch.cat([torch.randn(3, 7, 32, generator=g), item]))  # (4, 7, 48)
        short = layer(item[:, :3])  # 3 rows padded to a call of 7
    assert torch.equal(crowd[3], alone[0])
    assert torch.equal(short[0], alone[0, :3])


@needs_mkl
def test_the_layer_keeps_no_view_of_the_weights_it_was_given():
    weight, bias = _weights()
    layer = PackedLinear(weight, bias, rows=4)
    assert layer.state_dict() == {}  # inference only: nothing to save or load
    given = {weight.untyped_storage().data_ptr(), bias.untyped_storage().data_ptr()}
    kept = {t.untyped_storage().data_ptr() for t in layer.buffers() if not t.is_mkldnn}
    assert kept and given.isdisjoint(kept)  # a view would keep a checkpoint's memory map alive


@needs_mkl
def test_inference_only():
    layer = PackedLinear(*_weights(), rows=3)
    with pytest.raises(RuntimeError, match="inference only"):
        layer(torch.randn(3, 32, requires_grad=True))


def test_only_fp32_cpu_weights_are_packed():
    with pytest.raises(ValueError, match="fp32"):
        PackedLinear(torch.zeros(4, 4, dtype=torch.bfloat16), None, rows=2)
    half = nn.Sequential(nn.Linear(8, 8).to(torch.bfloat16))
    assert pack_linears(half, rows=2) == 0 and type(half[0]) is nn.Linear


def test_no_mkl_means_no_packing(monkeypatch):
    monkeypatch.setattr(torch.backends.mkl, "is_available", lambda: False)
    assert mkl_packing_available() is False


@needs_mkl
def test_pack_linears_replaces_linears_and_attention_in_projections():
    torch.manual_seed(0)
    block = nn.ModuleDict({"attn": SelfAttention(32, 4, add_bias_kv=True), "fc": nn.Linear(32, 16)}).eval()
    x = torch.randn(2, 9, 32)
    with torch.inference_mode():
        expected = block["fc"](block["attn"](x))
        assert pack_linears(block, rows=9) == 3  # in-projection, out_proj, fc
        got = block["fc"](block["attn"](x))
    assert isinstance(block["attn"].in_proj, PackedLinear) and isinstance(block["fc"], PackedLinear)
    assert {"attn.in_proj_weight", "attn.in_proj_bias", "fc.weight"}.isdisjoint(block.state_dict())
    assert "attn.bias_k" in block.state_dict()  # what is not a linear stays as it was
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert pack_linears(block, rows=9) == 0  # packing twice changes nothing
