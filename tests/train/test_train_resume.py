"""Exact resume after a crash, frozen anchors, atomic checkpoints, metrics on resume."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bindspace.errors import BindspaceError
from bindspace.model.imagebind import ImageBindModel
from bindspace.train import checkpointing as ck
from bindspace.train.build import BindModel
from bindspace.train.config import OptimConfig, Precision, RunConfig
from bindspace.train.data import ManifestSource
from bindspace.train.loop import CHECKPOINT_DIR, METRICS_FILE, Trainer

from .conftest import small_config


class NoisyPairs(torch.utils.data.Dataset):
    """In-memory pairs whose augmentation noise depends on (epoch, index), like the real datasets."""

    def __init__(self, n: int = 10) -> None:
        gen = torch.Generator().manual_seed(11)
        self.images = torch.randn(n, 3, 16, 16, generator=gen)
        self.audio = torch.randn(n, 1, 128, 204, generator=gen)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key):
        epoch, i = key
        gen = torch.Generator().manual_seed(1000 * epoch + i)
        return self.images[i], self.audio[i] + 0.1 * torch.randn(self.audio[i].shape, generator=gen)


def _some(path: Path | None) -> Path:
    assert path is not None
    return path


def latest(folder: Path) -> Path:
    """The newest checkpoint in `folder` (the test fails if there is none)."""
    return _some(ck.latest_checkpoint(folder))


def make_trainer(out: Path, *, seed: int = 0, steps: int = 7, save_every: int = 2, accum: int = 2,
                 precision: Precision = "fp32") -> Trainer:
    torch.manual_seed(0)  # the anchor's weights (in real runs: a checkpoint)
    model = ImageBindModel(small_config(drop_path=0.2), ["vision", "audio"])  # drop-path: RNG must resume too
    model.init_weights()
    bind = BindModel(model, "vision", "audio")
    torch.manual_seed(seed)  # another target init shows that resume does not depend on it
    with torch.no_grad():
        for param in bind.tower_parameters(bind.target):
            param.add_(torch.randn_like(param) * 0.01 * seed)
    source = ManifestSource(NoisyPairs(), batch_size=3, seed=1)  # 3 batches per epoch: epochs turn mid-step
    run = RunConfig(out_dir=str(out), steps=steps, batch_size=3, grad_accum=accum, log_every=1,
                    save_every=save_every, keep_checkpoints=2, progress=False, tensorboard=False,
                    device="cpu", precision=precision)
    return Trainer(bind, source, run=run, optim=OptimConfig(lr=5e-3, warmup_steps=2))


def losses(out: Path) -> list[tuple[int, float]]:
    lines = (out / METRICS_FILE).read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines) if "loss" in r]


def test_resume_after_crash_matches_uninterrupted_run(tmp_path):
    full = make_trainer(tmp_path / "full")
    full.fit()
    reference = full.bind.trainable_state_dict()

    crashed = make_trainer(tmp_path / "crash")
    result = crashed.fit(max_steps=5)  # "killed" after step 5; the last checkpoint is step 4
    assert result.stopped_early and result.steps == 5
    assert latest(tmp_path / "crash" / CHECKPOINT_DIR).name == "step_00000004.pt"

    resumed = make_trainer(tmp_path / "crash", seed=99)
    resumed.fit()
    assert resumed.position.step == 7
    assert losses(tmp_path / "crash") == losses(tmp_path / "full")  # step for step, step 5 redone once
    state = resumed.bind.trainable_state_dict()
    assert state.keys() == reference.keys()
    for name, value in reference.items():
        assert torch.equal(state[name], value), name


def test_anchor_tower_stays_frozen_and_in_eval_mode(tmp_path):
    trainer = make_trainer(tmp_path, steps=2, save_every=0)
    bind = trainer.bind
    anchor_before = {k: v.clone() for k, v in bind.model.state_dict().items() if ".vision." in k}
    target_before = {k: v.clone() for k, v in bind.model.state_dict().items() if ".audio." in k}
    modes = []
    bind.model.modality_trunks["vision"].register_forward_hook(lambda m, i, o: modes.append(m.training))
    trainer.fit()
    after = bind.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in anchor_before.items())
    assert any(not torch.equal(after[k], v) for k, v in target_before.items())
    assert modes and not any(modes)
    assert all(not p.requires_grad for p in bind.tower_parameters(bind.anchor))
    assert not any(".vision." in k for k in bind.trainable_state_dict())


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    folder = tmp_path / "ck"
    ck.save_checkpoint(folder, 1, {"x": torch.ones(3)})
    good = (folder / "step_00000001.pt").read_bytes()

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ck.save_checkpoint(folder, 1, {"x": torch.zeros(3)})
    with pytest.raises(OSError):
        ck.save_checkpoint(folder, 2, {"x": torch.zeros(3)})
    assert (folder / "step_00000001.pt").read_bytes() == good  # the old file survived whole
    assert not (folder / "step_00000002.pt").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["latest", "step_00000001.pt"]  # no temp files left
    assert latest(folder).name == "step_00000001.pt"
    monkeypatch.undo()
    assert torch.equal(ck.load_checkpoint(folder / "step_00000001.pt")["x"], torch.ones(3))


def test_old_checkpoints_are_pruned_and_corrupt_ones_reported(tmp_path):
    for step in range(1, 5):
        ck.save_checkpoint(tmp_path, step, {"step": step}, keep=2)
    assert sorted(p.name for p in tmp_path.glob("step_*.pt")) == ["step_00000003.pt", "step_00000004.pt"]
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BindspaceError, match="bad.pt"):
        ck.load_checkpoint(tmp_path / "bad.pt")


def test_resume_refuses_a_different_schedule(tmp_path):
    make_trainer(tmp_path, steps=2, save_every=1).fit()
    with pytest.raises(BindspaceError, match="2-step schedule"):
        make_trainer(tmp_path, steps=4).fit()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains(tmp_path, precision):
    reference = make_trainer(tmp_path / "fp32", steps=2, save_every=0, accum=1).fit()
    trainer = make_trainer(tmp_path / precision, steps=2, save_every=0, precision=precision, accum=1)
    result = trainer.fit()
    first = [r["loss"] for r in result.history][0]
    assert first == pytest.approx(reference.history[0]["loss"], abs=0.02)  # same model, lower precision
    if precision == "fp16":  # the scaler's state is part of the checkpoint
        assert ck.load_checkpoint(_some(result.checkpoint))["scaler"]["scale"] < 65536.0


def test_grad_checkpointing_gives_the_same_steps(tmp_path):
    plain = make_trainer(tmp_path / "plain", steps=2, save_every=0)
    plain.fit()
    checkpointed = make_trainer(tmp_path / "ckpt", steps=2, save_every=0)
    checkpointed.bind.model.set_grad_checkpointing(True)
    checkpointed.fit()
    assert losses(tmp_path / "plain") == losses(tmp_path / "ckpt")
    for name, value in plain.bind.trainable_state_dict().items():
        assert torch.allclose(checkpointed.bind.trainable_state_dict()[name], value, atol=1e-6)


class InterruptAfter:
    """A PairSource wrapper that raises KeyboardInterrupt when batch number `after` is requested."""

    def __init__(self, source, after: int) -> None:
        self.source, self.after, self.served = source, after, 0
        self.batches_per_epoch = source.batches_per_epoch

    def batches(self, epoch, start):
        for batch in self.source.batches(epoch, start):
            if self.served == self.after:
                raise KeyboardInterrupt
            self.served += 1
            yield batch


def test_ctrl_c_saves_the_last_finished_step_and_resumes_exactly(tmp_path):
    full = make_trainer(tmp_path / "full", save_every=0)
    full.fit()
    interrupted = make_trainer(tmp_path / "int", save_every=0)
    interrupted.source = InterruptAfter(interrupted.source, after=7)  # mid-way through step 4 (2 per step)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    assert latest(tmp_path / "int" / CHECKPOINT_DIR).name == "step_00000003.pt"
    resumed = make_trainer(tmp_path / "int", seed=5, save_every=0)
    resumed.fit()
    assert losses(tmp_path / "int") == losses(tmp_path / "full")
    for name, value in full.bind.trainable_state_dict().items():
        assert torch.equal(resumed.bind.trainable_state_dict()[name], value), name
