"""Two CPU processes (gloo) with gathered negatives == one process with the combined batch."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from testkit import free_port

BATCH = 4  # per process
DIM_IN, DIM = 6, 5
STEPS = 3


def embed_inputs() -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(7)
    xt = torch.randn(2 * BATCH, DIM_IN, generator=gen, dtype=torch.float64)
    xa = torch.randn(2 * BATCH, DIM_IN, generator=gen, dtype=torch.float64)
    wt = torch.randn(DIM_IN, DIM, generator=gen, dtype=torch.float64)
    wa = torch.randn(DIM_IN, DIM, generator=gen, dtype=torch.float64)
    return xt, xa, wt, wa


def loss_and_grads(xt, xa, wt0, wa0) -> dict[str, torch.Tensor]:
    from bindspace.train.loss import Temperature, info_nce

    wt, wa = torch.nn.Parameter(wt0.clone()), torch.nn.Parameter(wa0.clone())
    temp = Temperature(0.1, learnable=True).double()
    out = info_nce(F.normalize(xt @ wt, dim=-1), F.normalize(xa @ wa, dim=-1), temp.scale())
    out.loss.backward()
    grads = {"wt": wt.grad, "wa": wa.grad, "scale": temp.log_logit_scale.grad}
    assert all(g is not None for g in grads.values())  # every input took part in the loss
    return {"loss": out.loss.detach(), **{k: g for k, g in grads.items() if g is not None}}


class TensorPairs(torch.utils.data.Dataset):
    """Deterministic in-memory (image, spectrogram) pairs for the small model."""

    def __init__(self, n: int = 16) -> None:
        gen = torch.Generator().manual_seed(3)
        self.images = torch.randn(n, 3, 16, 16, generator=gen)
        self.audio = torch.randn(n, 1, 128, 204, generator=gen)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key):
        _, i = key
        return self.images[i], self.audio[i]


def train_small(out_dir: Path, batch: int, rank: int = 0, world: int = 1) -> dict:
    from bindspace.model.imagebind import ImageBindModel
    from bindspace.train.build import BindModel
    from bindspace.train.config import OptimConfig, RunConfig
    from bindspace.train.data import ManifestSource
    from bindspace.train.distributed import DistInfo
    from bindspace.train.loop import Trainer
    from train.conftest import small_config

    torch.manual_seed(0)
    model = ImageBindModel(small_config(), ["vision", "audio"])
    model.init_weights()
    bind = BindModel(model, "vision", "audio")
    source = ManifestSource(TensorPairs(), batch_size=batch, rank=rank, world=world, seed=5)
    run = RunConfig(out_dir=str(out_dir), steps=STEPS, batch_size=batch, log_every=1, save_every=0,
                    progress=False, tensorboard=False, resume="never", device="cpu")
    info = DistInfo(rank, world, 0, torch.device("cpu"))
    result = Trainer(bind, source, run=run, optim=OptimConfig(lr=1e-2, grad_clip=None), dist=info).fit()
    return {"losses": [r["loss"] for r in result.history], "state": bind.trainable_state_dict()}


def worker(rank: int, world: int, init: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        xt, xa, wt, wa = embed_inputs()
        rows = slice(rank * BATCH, (rank + 1) * BATCH)
        grads = loss_and_grads(xt[rows], xa[rows], wt, wa)
        trained = train_small(Path(out) / "run", BATCH, rank, world)
        torch.save({"grads": grads, "trained": trained}, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_equal_one_with_the_combined_batch(tmp_path):
    init = f"tcp://127.0.0.1:{free_port()}"
    mp.spawn(worker, args=(2, init, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]

    # The loss: the mean over processes equals the combined batch's loss; gradients, averaged
    # over processes as DDP does, equal the combined batch's gradients.
    xt, xa, wt, wa = embed_inputs()
    single = loss_and_grads(xt, xa, wt, wa)
    assert torch.allclose(sum(r["grads"]["loss"] for r in ranks) / 2, single["loss"], atol=1e-12)
    for key in ("wt", "wa", "scale"):
        averaged = sum(r["grads"][key] for r in ranks) / 2
        assert torch.allclose(averaged, single[key], atol=1e-12), key
    # With gathered negatives each process's own loss differs from a local-only loss.
    local = loss_and_grads(xt[:BATCH], xa[:BATCH], wt, wa)
    assert not torch.allclose(ranks[0]["grads"]["loss"], local["loss"])

    # The trainer under DDP: same logged losses and same weights as one process with batch 8
    # (float32 summation order differs, and Adam amplifies it for near-zero gradients).
    one = train_small(tmp_path / "single", 2 * BATCH)
    for r in ranks:
        assert r["trained"]["losses"][0] == pytest.approx(one["losses"][0], abs=1e-6)
        assert r["trained"]["losses"] == pytest.approx(one["losses"], abs=1e-3)
        for name, value in one["state"].items():
            assert torch.allclose(r["trained"]["state"][name], value, atol=1e-3), name
    # ...while 2 processes that do not share negatives would already differ at the first step.
    half = train_small(tmp_path / "half", BATCH)
    assert abs(half["losses"][0] - one["losses"][0]) > 0.1


@pytest.mark.slow
def test_torchrun_cli_matches_a_single_process_run(small_base_dir, pair_files, tmp_path):
    import json
    import subprocess
    import sys

    from .conftest import train_toml

    def run(out: Path, batch: int, nproc: int) -> list[float]:
        cfg = tmp_path / f"{out.name}.toml"
        cfg.write_text(train_toml(small_base_dir, pair_files, out, run={"batch_size": batch, "steps": 2}))
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
                    "--master-port", str(free_port())] if nproc > 1 else [sys.executable]
        done = subprocess.run(launcher + ["-m", "bindspace.cli", "train", str(cfg), "--quiet"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.count("model directory:") == 1  # only rank 0 reports and exports
        return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]

    two = run(tmp_path / "two", 2, 2)
    one = run(tmp_path / "one", 4, 1)
    assert two == pytest.approx(one, abs=1e-4)
    assert (tmp_path / "two" / "model" / "manifest.json").is_file()
