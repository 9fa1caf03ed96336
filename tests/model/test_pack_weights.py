"""`ImageBindModel.pack_weights`: every tower on packed GEMM weights still gives the original's embeddings."""
from __future__ import annotations

from typing import cast

import pytest
import torch

import bindspace
from bindspace.layers.packed_linear import PackedLinear, mkl_packing_available
from bindspace.model.imagebind import ImageBindModel
from testkit import packed_towers

pytestmark = pytest.mark.skipif(not mkl_packing_available(), reason="this torch build has no MKL packed GEMM")

INPUTS = {"vision": "vision.pixels", "audio": "audio.mel", "depth": "depth.input",
          "thermal": "thermal.input", "imu": "imu.input"}


@pytest.fixture(scope="module")
def packed_model(tiny_state):
    model = cast(ImageBindModel, bindspace.create_model("imagebind_tiny_test"))
    model.load_state_dict(tiny_state)
    model.eval()
    assert model.pack_weights(INPUTS) > 0
    return model


def test_each_tower_packs_for_its_own_sequence_length(packed_model):
    rows = {name.split(".")[1]: module.rows for name, module in packed_model.named_modules()
            if isinstance(module, PackedLinear)}
    for modality in INPUTS:
        assert rows[modality] == 1 + packed_model.tower_config(modality).num_patches, modality  # patches + class


@pytest.mark.parametrize("modality", list(INPUTS))
def test_packed_towers_match_the_original_and_the_plain_model(packed_model, tiny_model, goldens, modality):
    x = goldens[INPUTS[modality]]
    with torch.inference_mode():
        packed = packed_model({modality: x})[modality]
        plain = tiny_model({modality: x})[modality]
    torch.testing.assert_close(packed, goldens[f"{modality}.embedding"], atol=1e-4, rtol=0)  # the original's
    torch.testing.assert_close(packed, plain, atol=1e-5, rtol=1e-5)
    assert modality in packed_towers(packed_model)
    assert not any(type(m) is torch.nn.Linear for name, m in packed_model.named_modules()
                   if name.startswith(f"modality_trunks.{modality}."))


def test_only_the_named_towers_are_packed(tiny_state):
    model = cast(ImageBindModel, bindspace.create_model("imagebind_tiny_test", modalities=["vision", "text"]))
    model.load_state_dict({k: v for k, v in tiny_state.items() if k.split(".")[1] in ("vision", "text")})
    assert model.pack_weights(["vision"]) > 0
    assert packed_towers(model) == {"vision"}
    with pytest.raises(ValueError, match="many lengths"):
        model.pack_weights(["text"])
    assert any(k.startswith("modality_trunks.text.") and k.endswith("in_proj_weight") for k in model.state_dict())


def test_a_packed_tower_keeps_no_view_of_the_loaded_weights(tiny_state):
    """Views into a checkpoint's memory map would keep all of its pages alive next to the packed copies."""
    model = cast(ImageBindModel, bindspace.create_model("imagebind_tiny_test", modalities=["vision", "text"]))
    state = {k: v.clone() for k, v in tiny_state.items() if k.split(".")[1] in ("vision", "text")}
    model.load_state_dict(state, assign=True)  # as create_model loads a checkpoint: the tensors themselves
    loaded = {v.untyped_storage().data_ptr() for v in state.values()}

    def storages(tower: str) -> set[int]:
        return {t.untyped_storage().data_ptr() for name, t in [*model.named_parameters(), *model.named_buffers()]
                if f".{tower}" in name and not t.is_mkldnn}

    model.pack_weights(["vision"])
    assert storages("vision") and storages("vision").isdisjoint(loaded)
    assert storages("text") <= loaded  # a tower not packed is left as it was
