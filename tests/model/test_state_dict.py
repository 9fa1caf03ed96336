"""The module tree has exactly the released checkpoint's keys, shapes and parameter/buffer kinds."""
import torch

import bindspace
from bindspace.model.imagebind import ImageBindModel


def _table(fixtures_dir):
    rows = (fixtures_dir / "imagebind_huge_state_dict.tsv").read_text().splitlines()[1:]
    table = {}
    for row in rows:
        key, shape, kind = row.split("\t")
        table[key] = (() if shape == "scalar" else tuple(int(s) for s in shape.split("x")), kind)
    return table


def test_huge_state_dict_equals_released_table(fixtures_dir):
    table = _table(fixtures_dir)
    with torch.device("meta"):
        model = ImageBindModel(bindspace.get_config("imagebind_huge"))
    state = model.state_dict()
    assert list(state) == list(table)  # same keys in the same order as the released checkpoint
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: s for k, (s, _) in table.items()}
    params = dict(model.named_parameters())
    for key, (_, kind) in table.items():
        assert (key in params) == (kind == "parameter"), key
    assert sum(v.numel() for v in state.values()) == 1_200_786_990


def test_partial_build_has_only_requested_keys():
    with torch.device("meta"):
        model = ImageBindModel(bindspace.get_config("imagebind_huge"), ["text"])
    keys = model.state_dict().keys()
    assert keys and all(k.split(".")[1] == "text" for k in keys)
    assert model.modalities == (bindspace.Modality.TEXT,)


def test_presets_listed():
    names = bindspace.list_models()
    assert "imagebind_huge" in names and "imagebind_tiny_test" in names


def test_config_round_trips_through_json():
    config = bindspace.get_config("imagebind_huge")
    assert bindspace.ModelConfig.from_dict(config.to_dict()) == config
    assert config.tower("audio").num_patches == 12 * 19
    assert config.tower("vision").num_patches == 256
    assert config.tower("imu").num_patches == 250
