"""Half precision, gradients, grad checkpointing and train-only randomness, for every tower."""
from typing import cast

import pytest
import torch

import bindspace
from bindspace.layers import Transformer
from bindspace.layers.block import Block
from bindspace.model.imagebind import ImageBindModel

MODALITIES = ["vision", "text", "audio", "depth", "thermal", "imu"]
INPUTS = {
    "text": "text.tokens", "vision": "vision.pixels", "audio": "audio.mel",
    "depth": "depth.input", "thermal": "thermal.input", "imu": "imu.input",
}


def _input(goldens, modality, n=2):
    x = goldens[INPUTS[modality]][:n]
    return x[:, 0] if modality == "audio" else x  # one clip per audio item keeps it fast


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("modality", MODALITIES)
def test_half_precision_close_to_fp32(tiny_state, goldens, modality, dtype):
    model = bindspace.create_model("imagebind_tiny_test", modalities=[modality])
    model.load_state_dict({k: v for k, v in tiny_state.items() if k.split(".")[1] == modality})
    x = _input(goldens, modality)
    with torch.no_grad():
        ref = model.encode(modality, x)
        half = model.to(dtype).encode(modality, x)  # float32 input accepted
    assert half.dtype == torch.float32
    cosine = (ref * half).sum(-1)
    assert cosine.min().item() >= 0.999


@pytest.mark.parametrize("modality", MODALITIES)
def test_gradients_reach_every_parameter_and_no_nans(tiny_state, goldens, modality):
    model = bindspace.create_model("imagebind_tiny_test", modalities=[modality])
    model.load_state_dict({k: v for k, v in tiny_state.items() if k.split(".")[1] == modality})
    # eval mode: imu's drop-path (0.7) could drop a whole block for a 2-item batch
    out = model.encode(modality, _input(goldens, modality))
    assert torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        if "log_logit_scale" not in name:  # encode() renormalises, so the scale gets no gradient
            assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("modality", MODALITIES)
def test_grad_checkpointing_gives_identical_outputs_and_grads(tiny_state, goldens, modality):
    def run(checkpointing):
        model = bindspace.create_model("imagebind_tiny_test", modalities=[modality])
        assert isinstance(model, ImageBindModel)  # torch towers (not ONNX): their layers are reachable
        model.load_state_dict({k: v for k, v in tiny_state.items() if k.split(".")[1] == modality})
        model.set_grad_checkpointing(checkpointing)
        out = model.encode(modality, _input(goldens, modality))  # eval mode: no dropout randomness
        out.sum().backward()
        grads = {n: p.grad for n, p in model.named_parameters()}
        assert all(g is not None for g in grads.values())
        return out.detach(), {n: g.clone() for n, g in grads.items() if g is not None}

    out_a, grads_a = run(False)
    out_b, grads_b = run(True)
    torch.testing.assert_close(out_a, out_b, atol=0, rtol=0)
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], atol=1e-6, rtol=1e-5)


def test_dropout_and_drop_path_only_in_train(tiny_state, goldens):
    model = bindspace.create_model("imagebind_tiny_test", modalities=["imu"])
    assert isinstance(model, ImageBindModel)  # torch towers (not ONNX): their layers are reachable
    model.load_state_dict({k: v for k, v in tiny_state.items() if k.split(".")[1] == "imu"})
    x = goldens["imu.input"]
    with torch.no_grad():
        assert torch.equal(model.encode("imu", x), model.encode("imu", x))
        model.train()
        torch.manual_seed(0)
        a = model.encode("imu", x)
        b = model.encode("imu", x)
    assert not torch.allclose(a, b)  # imu drop-path 0.7 and head dropout 0.5 are active
    rates = [cast(Block, block).drop_path.rate for block in cast(Transformer, model.modality_trunks["imu"]).blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.7)


def test_no_weight_decay_names(tiny_model):
    names = tiny_model.no_weight_decay()
    assert "modality_preprocessors.vision.cls_token" in names
    assert "modality_trunks.audio.blocks.0.attn.bias_k" in names
    assert "modality_trunks.text.blocks.0.norm_1.weight" in names
    assert "modality_trunks.text.blocks.0.mlp.fc1.weight" not in names


def test_random_init_is_finite_and_distinct():
    model = bindspace.create_model("imagebind_tiny_test", modalities=["depth"])
    with torch.no_grad():
        out = model.encode("depth", torch.randn(4, 1, 224, 224))
    assert torch.isfinite(out).all()
    assert (out @ out.T - torch.eye(4)).abs().max() < 0.9999
