"""Our SDPA attention against torch's own nn.MultiheadAttention, the oracle."""
import pytest
import torch
from torch import nn

from bindspace.layers import SelfAttention


def _pair(dim, heads, add_bias_kv):
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(dim, heads, add_bias_kv=add_bias_kv, batch_first=True)
    if add_bias_kv:  # torch initialises these; make them clearly non-zero
        assert ref.bias_k is not None and ref.bias_v is not None
        nn.init.normal_(ref.bias_k)
        nn.init.normal_(ref.bias_v)
    nn.init.normal_(ref.in_proj_bias)
    ours = SelfAttention(dim, heads, add_bias_kv=add_bias_kv)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref.eval(), ours.eval()


@pytest.mark.parametrize("add_bias_kv", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_matches_torch_multihead_attention(add_bias_kv, causal):
    ref, ours = _pair(32, 4, add_bias_kv)
    x = torch.randn(3, 9, 32)
    mask = torch.full((9, 9), float("-inf")).triu_(1) if causal else None
    with torch.no_grad():
        expected, _ = ref(x, x, x, attn_mask=mask, need_weights=False)
        got = ours(x, causal=causal)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_state_dict_names_match_multihead_attention():
    ref, ours = _pair(16, 2, True)
    assert set(ours.state_dict()) == set(ref.state_dict())


def test_causal_output_ignores_later_positions():
    _, ours = _pair(16, 2, False)
    x = torch.randn(2, 7, 16)
    y = x.clone()
    y[:, 5:] = torch.randn(2, 2, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, causal=True)[:, :5], ours(y, causal=True)[:, :5])


@pytest.mark.parametrize("dim, heads", [(64, 3), (10, 4), (8, 0)])
def test_a_width_that_does_not_split_into_the_heads_is_a_one_line_config_error(dim: int, heads: int) -> None:
    from bindspace.errors import ConfigError

    with pytest.raises(ConfigError, match=f"attention width {dim} does not split into {heads} heads"):
        SelfAttention(dim, heads)
