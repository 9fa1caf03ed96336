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


class _State:
    """What model_fingerprint reads from a model in memory: its state dict (the torch path)."""

    def __init__(self, state):
        self.state = state

    def state_dict(self):
        return self.state


def _awkward_state():
    """Tensors of every safetensors dtype the numpy path reads, with bfloat16 rounding ties, infinities,
    0-d, 1-d, empty and wide shapes."""
    gen = torch.Generator().manual_seed(0)
    ties = torch.tensor([1.0 + 2**-8, 1.0 + 3 * 2**-8, -(1.0 + 2**-8), 3.4e38, -3.4e38, float("inf"),
                         float("-inf"), 1e-40, -0.0, 0.0], dtype=torch.float32)  # exact halfway cases round to even
    return {
        "a.f32": torch.randn(7, 300, generator=gen),
        "b.ties": ties.repeat(5, 1),
        "c.f16": torch.randn(3, 4, 5, generator=gen).to(torch.float16),
        "d.bf16": torch.randn(9, 33, generator=gen).to(torch.bfloat16),
        "e.f64": torch.randn(6, 10, generator=gen, dtype=torch.float64) * 1e30,
        "f.i64": torch.arange(-(2**40), 2**40, 2**37, dtype=torch.int64).reshape(4, -1),
        "g.bool": torch.rand(5, 5, generator=gen) > 0.5,
        "h.u8": torch.arange(0, 250, dtype=torch.uint8).reshape(10, 25),
        "i.scalar": torch.tensor(2.718281828),
        "j.vector": torch.randn(11, generator=gen),
        "k.empty_rows": torch.zeros(0, 4),
        "l.empty_row": torch.zeros(3, 0),
    }


def test_numpy_fingerprint_of_safetensors_equals_the_torch_one(tmp_path):
    """Model directories are fingerprinted without torch; the digest must be the torch path's, bit for bit."""
    from safetensors.torch import save_file

    from bindspace.model.fingerprint import _numpy_fingerprint

    state = _awkward_state()
    file = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(file))
    quick = _numpy_fingerprint(file)
    assert quick is not None  # every tensor here is read without torch
    assert quick == model_fingerprint(_State(state)) == model_fingerprint(None, file)


def test_numpy_fingerprint_of_model_dirs_and_where_it_leaves_it_to_torch(tmp_path, tiny_model, tiny_model_dir):
    from safetensors.torch import save_file

    from bindspace.model.checkpoint import save_model_dir
    from bindspace.model.fingerprint import _numpy_fingerprint

    assert _numpy_fingerprint(tiny_model_dir) == model_fingerprint(tiny_model)
    bf16_dir = tmp_path / "bf16"
    save_model_dir({k: v.to(torch.bfloat16) if v.is_floating_point() else v
                              for k, v in tiny_model.state_dict().items()}, tiny_model.config, bf16_dir)
    assert _numpy_fingerprint(bf16_dir) == model_fingerprint(tiny_model)
    with_nan = {"w": torch.tensor([[1.0, float("nan")], [2.0, 3.0]])}
    nan_file = tmp_path / "nan.safetensors"
    save_file(with_nan, str(nan_file))
    assert _numpy_fingerprint(nan_file) is None  # torch's bfloat16 NaN bits depend on its kernel: torch decides
    assert model_fingerprint(None, nan_file) == model_fingerprint(_State(with_nan))
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(nan_file.read_bytes()[:-4])
    assert _numpy_fingerprint(truncated) is None  # a damaged file gets the torch path's error


def test_sampled_positions_are_numpys_linspace_rounded():
    # Indexes written before record fingerprints over np.linspace's points: the positions must stay
    # exactly those (rounded half to even) for any tensor length, or every index would be refused.
    import random

    import numpy as np

    from bindspace.model.fingerprint import PER_ROW, ROWS, _positions

    lengths = [*range(0, 3000), *random.Random(0).sample(range(3000, 1 << 40), 3000), 2**31 - 1, 2**53]
    for n in lengths:
        for k in (ROWS, PER_ROW):
            expected = sorted({int(round(x)) for x in np.linspace(0, n - 1, num=min(n, k))}) if n > 0 else []
            assert _positions(n, k) == expected, (n, k)
