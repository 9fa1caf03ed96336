"""Loading checkpoints: .pth and model directories, partial loads, and every failure as a clear error."""
import json

import pytest
import torch

import bindspace
from bindspace.errors import CheckpointError
from bindspace.model.checkpoint import load_state_dict

TINY = "imagebind_tiny_test"


def _same_weights(model, state):
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], atol=0, rtol=0)


@pytest.mark.parametrize("source", ["tiny_pth", "tiny_model_dir"])
def test_full_load(request, tiny_state, source):
    model = bindspace.create_model(TINY, checkpoint=request.getfixturevalue(source))
    _same_weights(model, tiny_state)
    assert not model.training


@pytest.mark.parametrize("source", ["tiny_pth", "tiny_model_dir"])
def test_text_only_load_reads_only_text(request, tiny_state, goldens, source):
    model = bindspace.create_model(TINY, checkpoint=request.getfixturevalue(source), modalities=["text"])
    assert all(k.split(".")[1] == "text" for k in model.state_dict())
    _same_weights(model, tiny_state)
    with torch.no_grad():
        out = model({"text": goldens["text.tokens"]})["text"]
    torch.testing.assert_close(out, goldens["text.embedding"], atol=1e-4, rtol=0)


def test_model_dir_needs_no_name_and_reads_one_file(tiny_model_dir, monkeypatch):
    opened = []
    import bindspace.model.checkpoint as ckpt

    real = ckpt._load_safetensors
    def spy(path, *args):
        opened.append(path.name)
        return real(path, *args)

    monkeypatch.setattr(ckpt, "_load_safetensors", spy)
    model = bindspace.create_model(checkpoint=tiny_model_dir, modalities=["audio"])
    assert model.config.name == TINY
    assert opened == ["audio.safetensors"]


def test_missing_file():
    with pytest.raises(CheckpointError, match="not found"):
        bindspace.create_model(TINY, checkpoint="/nonexistent/imagebind.pth")


def test_truncated_pth(tiny_pth, tmp_path):
    data = tiny_pth.read_bytes()
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pth: not a readable PyTorch checkpoint"):
        bindspace.create_model(TINY, checkpoint=bad)


def test_garbage_and_empty_files(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint" * 100)
    with pytest.raises(CheckpointError, match="garbage.pth"):
        bindspace.create_model(TINY, checkpoint=garbage)
    empty = tmp_path / "empty.pth"
    empty.touch()
    with pytest.raises(CheckpointError, match="empty"):
        bindspace.create_model(TINY, checkpoint=empty)


def test_unsafe_pickle_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "unsafe.pth"
    torch.save({"x": Payload()}, bad)
    with pytest.raises(CheckpointError, match="unsafe.pth"):
        bindspace.create_model(TINY, checkpoint=bad)


def test_wrong_model_lists_mismatches(tiny_pth):
    with pytest.raises(CheckpointError) as info:
        bindspace.create_model("imagebind_huge", checkpoint=tiny_pth, modalities=["depth"], device="meta")
    message = str(info.value)
    expected = ("modality_preprocessors.depth.pos_embedding_helper.pos_embed: "
                "checkpoint (1, 197, 32) vs model (1, 197, 384)")
    assert "shape mismatches" in message and expected in message
    assert "missing keys" in message  # huge has 12 depth blocks, tiny has 2


def test_corrupted_model_dir_file_fails_sha256(tiny_model_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    path = copy / "imu.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        bindspace.create_model(checkpoint=copy, modalities=["imu"])
    bindspace.create_model(checkpoint=copy, modalities=["text"])  # other towers still load


def test_model_dir_without_requested_tower(tiny_state, tmp_path):
    from bindspace.model.checkpoint import save_model_dir

    text_only = {k: v for k, v in tiny_state.items() if k.split(".")[1] == "text"}
    out = save_model_dir(text_only, bindspace.get_config(TINY), tmp_path / "textonly")
    with pytest.raises(CheckpointError, match="has no weights for audio"):
        bindspace.create_model(checkpoint=out, modalities=["audio"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == {"text"}


def test_wrapped_state_dict_is_accepted(tiny_state, tmp_path):
    path = tmp_path / "wrapped.pth"
    torch.save({"model": {k: v for k, v in tiny_state.items() if ".imu" in k or k.split(".")[1] == "imu"}}, path)
    model = bindspace.create_model(TINY, checkpoint=path, modalities=["imu"])
    _same_weights(model, tiny_state)


def test_load_state_dict_filters_modalities(tiny_pth):
    state = load_state_dict(tiny_pth, ["depth", "thermal"])
    assert {k.split(".")[1] for k in state} == {"depth", "thermal"}


def test_pretrained_offline_message(monkeypatch, tmp_path):
    import bindspace.model.hub as hub

    monkeypatch.delenv("BINDSPACE_CHECKPOINT", raising=False)
    monkeypatch.setenv("BINDSPACE_CACHE", str(tmp_path))

    def offline(url, target, **kw):
        raise OSError("network unreachable")

    monkeypatch.setattr(hub, "download_file", offline)
    with pytest.raises(CheckpointError, match="BINDSPACE_CHECKPOINT") as info:
        bindspace.create_model("imagebind_huge", pretrained=True)
    assert str(tmp_path / "imagebind_huge.pth") in str(info.value)


def test_pretrained_uses_env_then_cache(monkeypatch, tmp_path, tiny_pth, tiny_model_dir):
    monkeypatch.setenv("BINDSPACE_CHECKPOINT", str(tiny_pth))
    assert bindspace.create_model(TINY, pretrained=True, modalities=["imu"]).modalities == ("imu",)
    monkeypatch.delenv("BINDSPACE_CHECKPOINT")
    import bindspace.model.hub as hub

    monkeypatch.setenv("BINDSPACE_CACHE", str(tmp_path))
    (tmp_path / "imagebind_huge").symlink_to(tiny_model_dir)
    assert hub.resolve_pretrained("imagebind_huge", download=False) == tmp_path / "imagebind_huge"


def test_legacy_pth_loads_and_fingerprints_like_zip(tiny_state, tiny_pth, tmp_path):
    """One .pth reader: a pre-1.6 (non-zip) file loads and fingerprints the same as the zip file."""
    import zipfile

    from bindspace.index.fingerprint import model_fingerprint
    from bindspace.model.checkpoint import read_pth

    legacy = tmp_path / "legacy.pth"
    torch.save({"model": tiny_state}, legacy, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(legacy) and zipfile.is_zipfile(tiny_pth)
    assert set(read_pth(legacy)) == set(tiny_state)
    model = bindspace.create_model(TINY, checkpoint=legacy, modalities=["depth"])
    _same_weights(model, tiny_state)
    assert model_fingerprint(None, legacy) == model_fingerprint(None, tiny_pth)


def test_pth_with_non_tensor_values_is_refused_everywhere(tiny_state, tmp_path):
    from bindspace.index.fingerprint import model_fingerprint

    bad = tmp_path / "mixed.pth"
    torch.save({**tiny_state, "epoch": 3}, bad)
    for read in (lambda: load_state_dict(bad), lambda: model_fingerprint(None, bad)):
        with pytest.raises(CheckpointError, match="state dict of tensors"):
            read()
