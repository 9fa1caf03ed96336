"""InfoNCE against a hand computation, and temperature handling."""
from __future__ import annotations

import math

import pytest
import torch

from bindspace.errors import ConfigError
from bindspace.train.loss import Temperature, info_nce


def hand_info_nce(t: list[list[float]], a: list[list[float]], scale: float) -> float:
    """Symmetric InfoNCE written out with loops: mean over rows of -log softmax(diagonal), both ways."""
    n = len(t)

    def dot(u: list[float], v: list[float]) -> float:
        return sum(x * y for x, y in zip(u, v))

    def direction(q: list[list[float]], k: list[list[float]]) -> float:
        total = 0.0
        for i in range(n):
            logits = [scale * dot(q[i], k[j]) for j in range(n)]
            total += -logits[i] + math.log(sum(math.exp(x) for x in logits))
        return total / n

    return (direction(t, a) + direction(a, t)) / 2


def unit(rows: list[list[float]]) -> list[list[float]]:
    return [[x / math.sqrt(sum(y * y for y in r)) for x in r] for r in rows]


def test_matches_hand_computed_loss():
    t = unit([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.3, 0.9]])
    a = unit([[0.9, 0.1, 0.0], [0.0, 1.0, 0.2], [0.1, 0.0, 1.0]])
    out = info_nce(torch.tensor(t, dtype=torch.float64), torch.tensor(a, dtype=torch.float64), 10.0)
    assert out.loss.item() == pytest.approx(hand_info_nce(t, a, 10.0), rel=1e-12)


def test_asymmetric_pairs_and_directions():
    # 2 pairs, 2-D: the two directions differ, the loss is their mean.
    t = unit([[1.0, 0.0], [0.0, 1.0]])
    a = unit([[1.0, 1.0], [-1.0, 1.0]])
    out = info_nce(torch.tensor(t, dtype=torch.float64), torch.tensor(a, dtype=torch.float64), 2.0)
    # t->a row 0: logits [2*0.7071, -2*0.7071], target 0 ; row 1: [2*0.7071, 2*0.7071], target 1
    c = 2 / math.sqrt(2)
    t2a = ((-c + math.log(math.exp(c) + math.exp(-c))) + (-c + math.log(2 * math.exp(c)))) / 2
    assert out.target_to_anchor.item() == pytest.approx(t2a, rel=1e-12)
    assert out.loss.item() == pytest.approx(hand_info_nce(t, a, 2.0), rel=1e-12)
    assert out.accuracy.item() == pytest.approx(0.5)  # row 1 ties; argmax picks column 0


def test_perfect_alignment_gives_low_loss_and_full_accuracy():
    e = torch.eye(4, dtype=torch.float64)
    out = info_nce(e, e, 50.0)
    assert out.loss.item() == pytest.approx(math.log(1 + 3 * math.exp(-50)), abs=1e-12)
    assert out.accuracy.item() == 1.0


def test_temperature_scales_logits():
    torch.manual_seed(0)
    t = torch.nn.functional.normalize(torch.randn(5, 8, dtype=torch.float64), dim=-1)
    a = torch.nn.functional.normalize(torch.randn(5, 8, dtype=torch.float64), dim=-1)
    temp = Temperature(0.05)
    assert temp.scale().item() == pytest.approx(20.0)
    assert info_nce(t, a, temp.scale()).loss.item() == pytest.approx(hand_info_nce(t.tolist(), a.tolist(), 20.0))


def test_fixed_temperature_is_a_buffer_learnable_one_gets_gradients():
    fixed = Temperature(0.07)
    assert not list(fixed.parameters())
    learn = Temperature(0.07, learnable=True)
    (param,) = list(learn.parameters())
    t = torch.nn.functional.normalize(torch.randn(6, 4), dim=-1)
    a = torch.nn.functional.normalize(torch.randn(6, 4), dim=-1)
    info_nce(t, a, learn.scale()).loss.backward()
    assert param.grad is not None and param.grad.abs() > 0


def test_temperature_cap_and_validation():
    capped = Temperature(0.02, learnable=True, max_scale=100.0)
    with torch.no_grad():
        capped.log_logit_scale.fill_(math.log(1000.0))
    assert capped.scale().item() == pytest.approx(100.0)
    with pytest.raises(ConfigError, match="> 0"):
        Temperature(0.0)
    with pytest.raises(ConfigError, match="max_logit_scale"):
        Temperature(0.001, max_scale=100.0)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="equal shape"):
        info_nce(torch.zeros(3, 4), torch.zeros(2, 4), 1.0)
