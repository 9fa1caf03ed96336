"""model_fingerprint: the same weights agree across formats and dtypes; other weights differ."""
from __future__ import annotations

import torch

import bindspace
from bindspace.index.store import model_fingerprint


def test_same_weights_same_fingerprint_in_every_format(tiny_model, tiny_pth, tiny_model_dir):
    from_model = model_fingerprint(tiny_model)
    assert from_model.startswith("w1-")
    assert model_fingerprint(None, tiny_pth) == from_model
    assert model_fingerprint(None, tiny_model_dir) == from_model
    assert model_fingerprint(tiny_model, checkpoint=tiny_pth) == from_model


def test_bfloat16_copy_agrees_other_weights_differ(tiny_model, tiny_state):
    reference = model_fingerprint(tiny_model)
    half = bindspace.create_model("imagebind_tiny_test")
    half.load_state_dict(tiny_state)
    assert model_fingerprint(half.to(torch.bfloat16)) == reference
    changed = {k: v.clone() for k, v in tiny_state.items()}
    key = next(k for k in changed if k.startswith("modality_trunks.vision") and changed[k].ndim == 2)
    changed[key] = changed[key] * 1.5  # a "fine-tuned" tower
    other = bindspace.create_model("imagebind_tiny_test")
    other.load_state_dict(changed)
    assert model_fingerprint(other) != reference
    assert model_fingerprint(bindspace.create_model("imagebind_tiny_test")) != reference  # random init


def test_checkpoint_fingerprint_covers_all_towers(tiny_pth):
    # a model holding only the text tower still gets the checkpoint's fingerprint when the path is given
    text_only = bindspace.create_model("imagebind_tiny_test", checkpoint=tiny_pth, modalities=["text"])
    assert model_fingerprint(text_only, tiny_pth) == model_fingerprint(None, tiny_pth)
    assert model_fingerprint(text_only) != model_fingerprint(None, tiny_pth)
