"""The training loop: accumulation, mixed precision, DDP, intervals, exact resume, metrics and progress."""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import BindspaceError, ConfigError
from ..fsio import atomic_write
from . import checkpointing as ck
from .build import BindModel
from .config import OptimConfig, RunConfig, TrainConfig
from .data import PairBatch, PairSource
from .distributed import DistInfo, all_gather_objects, all_reduce_mean, barrier
from .loss import info_nce
from .optim import build_optimizer, build_scheduler

log = logging.getLogger("bindspace.train")

Evaluate = Callable[[BindModel], dict[str, float]]
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Position:
    """How far training got: optimiser steps done, and the data position after them."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of `epoch` this process consumed


@dataclass
class TrainResult:
    """What a finished (or stopped) run reports."""

    steps: int
    out_dir: Path
    checkpoint: Path | None
    last_metrics: dict[str, float] = field(default_factory=dict)
    eval_metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    seconds: float = 0.0
    start_step: int = 0  # where this call began: > 0 when it resumed from a checkpoint
    total_steps: int = 0

    @property
    def steps_run(self) -> int:
        """Optimiser steps this call did (0 when the run was already complete)."""
        return self.steps - self.start_step


class MetricsLog:
    """metrics.jsonl (one JSON object per line) plus TensorBoard when installed; main process only."""

    def __init__(self, out_dir: Path, *, enabled: bool, tensorboard: bool, resume_step: int | None) -> None:
        self.path = out_dir / METRICS_FILE
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        kept: list[str] = []
        if resume_step is not None and self.path.is_file():
            # Lines written after the checkpoint belong to steps that will be redone.
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= resume_step:
                        kept.append(line)
                except ValueError:
                    continue
        atomic_write(self.path, "".join(line + "\n" for line in kept))
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.info("tensorboard not installed; metrics go to %s only", self.path)
            else:
                self.writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=resume_step)

    def write(self, record: dict[str, Any], prefix: str = "train") -> None:
        """Append one record (needs a "step")."""
        if not self.enabled:
            return
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{prefix}/{key}", value, record["step"])

    def close(self) -> None:
        """Flush TensorBoard."""
        if self.writer is not None:
            self.writer.close()


def train_run(bind: Any, source: Any, config: TrainConfig, dist: DistInfo, evaluate: Evaluate | None,
              max_steps: int | None = None) -> TrainResult:
    """Every train kind's loop: the run's config.json (main process only), then the shared Trainer's fit."""
    out_dir = Path(config.run.out_dir)
    settings = config.to_dict()
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(settings, indent=1))
    trainer = Trainer(bind, source, run=config.run, optim=config.optim, dist=dist, evaluate=evaluate,
                      config=settings)
    return trainer.fit(max_steps=max_steps)


class Trainer:
    """Trains a BindModel on a PairSource with InfoNCE.

    The loop keeps one `Position`; a checkpoint stores it with the trainable weights,
    optimiser, scheduler, scaler and every RNG, so `fit` after a crash continues exactly
    where the last checkpoint left off.
    """

    def __init__(
        self,
        bind: BindModel,
        source: PairSource,
        *,
        run: RunConfig,
        optim: OptimConfig,
        dist: DistInfo | None = None,
        evaluate: Evaluate | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.bind = bind
        self.source = source
        self.run, self.optim_config = run, optim
        self.dist = dist or DistInfo()
        self.evaluate = evaluate
        self.config = config or {}
        self.out_dir = Path(run.out_dir)
        self.position = Position()
        self.total_steps = self._total_steps()
        self._step_rng: dict[str, Any] | None = None

    # ------------------------------------------------------------------ setup

    def _total_steps(self) -> int:
        if self.run.steps is not None:
            return self.run.steps
        per_epoch = self.source.batches_per_epoch
        if per_epoch is None:
            raise ConfigError("run.epochs needs data of known length; streamed tar shards need run.steps")
        steps = (self.run.epochs or 1) * per_epoch // self.run.grad_accum
        if steps < 1:
            raise ConfigError(f"{per_epoch} batches per epoch is less than grad_accum={self.run.grad_accum}")
        return steps

    def _resume_path(self) -> Path | None:
        resume = self.run.resume
        if resume == "never":
            return None
        if resume == "auto":
            return ck.latest_checkpoint(self.out_dir / CHECKPOINT_DIR)
        path = Path(resume)
        if path.is_dir():
            found = ck.latest_checkpoint(path / CHECKPOINT_DIR) or ck.latest_checkpoint(path)
            if found is None:
                raise BindspaceError(f"{path}: no training checkpoint to resume from")
            return found
        return path

    # ------------------------------------------------------------------ loop

    def fit(self, *, max_steps: int | None = None) -> TrainResult:
        """Train to the configured length; `max_steps` stops earlier, as if killed (no final save or eval)."""
        started = time.perf_counter()
        device = self.dist.device
        bind = self.bind.to(device)
        model: nn.Module = bind
        if self.dist.distributed:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(bind, device_ids=[device.index] if device.type == "cuda" else None)
        optimizer = build_optimizer(bind, self.optim_config)
        scheduler = build_scheduler(optimizer, self.optim_config, self.total_steps)
        precision = self.run.precision
        if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise BindspaceError("precision bf16 is not supported by this GPU; use fp16 or fp32")
        scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        trainable = [p for p in bind.parameters() if p.requires_grad]

        resume = self._resume_path()
        if resume is not None:
            self._restore(resume, optimizer, scheduler, scaler)
        pos = self.position
        start_step = pos.step
        metrics = MetricsLog(self.out_dir, enabled=self.dist.is_main, tensorboard=self.run.tensorboard,
                             resume_step=pos.step if resume is not None else None)
        bar = self._progress(pos.step)
        batches = self._batches()
        history: list[dict[str, Any]] = []
        window: list[dict[str, float]] = []
        eval_metrics: dict[str, float] = {}
        last_path: Path | None = resume
        stop_at = self.total_steps if max_steps is None else min(max_steps, self.total_steps)
        autocast = (torch.autocast(device.type, dtype=_DTYPES[precision]) if precision in _DTYPES else nullcontext())
        saved_position = Position(pos.step, pos.epoch, pos.batch_in_epoch)
        tick = time.perf_counter()
        try:
            while pos.step < stop_at:
                bind.train()
                step_stats = self._train_step(model, batches, autocast, scaler, optimizer, trainable)
                with warnings.catch_warnings():
                    # fp16: the scaler skips steps whose gradients overflowed; the schedule moves on anyway.
                    warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step",
                                            category=UserWarning)
                    scheduler.step()
                pos.step += 1
                saved_position = Position(pos.step, pos.epoch, pos.batch_in_epoch)
                self._step_rng = ck.capture_rng()  # the generators as they are between steps
                step_stats["lr"] = optimizer.param_groups[0]["lr"]
                window.append(step_stats)
                if pos.step % self.run.log_every == 0 or pos.step == self.total_steps:
                    record = self._log_record(window, pos, time.perf_counter() - tick)
                    tick = time.perf_counter()
                    window = []
                    history.append(record)
                    metrics.write(record)
                    if bar is not None:
                        bar.set_postfix(loss=f"{record['loss']:.4f}", acc=f"{record['acc']:.3f}")
                if bar is not None:
                    bar.update(1)
                finished = pos.step == self.total_steps
                if self.evaluate is not None and (
                    (self.run.eval_every and pos.step % self.run.eval_every == 0) or finished
                ):
                    eval_metrics = self._run_eval(bind, pos.step, metrics)
                if (self.run.save_every and pos.step % self.run.save_every == 0) or finished:
                    last_path = self._save(optimizer, scheduler, scaler, history[-1] if history else {})
        except KeyboardInterrupt:
            if not self.dist.distributed and saved_position.step > 0:
                self.position = saved_position  # the data position of the last finished step
                last_path = self._save(optimizer, scheduler, scaler, {})
                log.warning("interrupted: checkpoint saved at step %d (%s)", saved_position.step, last_path)
            raise
        finally:
            if bar is not None:
                bar.close()
            metrics.close()
        return TrainResult(
            steps=pos.step, out_dir=self.out_dir, checkpoint=last_path,
            last_metrics=history[-1] if history else {}, eval_metrics=eval_metrics, history=history,
            stopped_early=pos.step < self.total_steps, seconds=time.perf_counter() - started,
            start_step=start_step, total_steps=self.total_steps,
        )

    def _train_step(self, model: nn.Module, batches: Iterator[PairBatch], autocast: Any, scaler: torch.amp.GradScaler,
                    optimizer: torch.optim.Optimizer, trainable: list[nn.Parameter]) -> dict[str, float]:
        """One optimiser step over grad_accum micro-batches; returns the step's mean loss and accuracy."""
        accum = self.run.grad_accum
        own_loss = getattr(self.bind, "computes_loss", False)
        loss_sum = acc_sum = 0.0
        samples = 0
        for micro in range(accum):
            batch = next(batches).to(self.dist.device)
            sync = nullcontext()
            if self.dist.distributed and micro < accum - 1:
                sync = model.no_sync()  # type: ignore[operator]
            with sync:
                if own_loss:  # a model with its own objective (the LLM bridge): forward(batch) -> loss, accuracy
                    with autocast:
                        out = model(batch)
                else:
                    with autocast:
                        target, anchor, scale = model(batch.anchor, batch.target)
                    out = info_nce(target.float(), anchor.float(), scale.float())
                scaler.scale(out.loss / accum).backward()
            loss_sum += float(out.loss.detach())
            acc_sum += float(out.accuracy)
            samples += len(batch)
        if self.optim_config.grad_clip is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(trainable, self.optim_config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        if not math.isfinite(loss_sum):
            raise BindspaceError(f"loss became {loss_sum} at step {self.position.step + 1}; lower optim.lr, "
                                 "or use precision fp32 / bf16")
        stats = {"loss": loss_sum / accum, "acc": acc_sum / accum, "samples": samples}
        if not own_loss:
            stats["logit_scale"] = float(self.bind.logit_scale().detach())
        return stats

    def _batches(self) -> Iterator[PairBatch]:
        """Micro-batches across epochs, keeping `self.position` in step with what was consumed."""
        pos = self.position
        while True:
            produced = False
            for batch in self.source.batches(pos.epoch, pos.batch_in_epoch):
                produced = True
                pos.batch_in_epoch += 1
                yield batch
            if not produced and pos.batch_in_epoch == 0:
                raise BindspaceError("the training data yielded no batches")
            pos.epoch += 1
            pos.batch_in_epoch = 0

    def _log_record(self, window: list[dict[str, float]], pos: Position, seconds: float) -> dict[str, Any]:
        local = torch.tensor([[s["loss"], s["acc"]] for s in window]).mean(dim=0)
        loss, acc = all_reduce_mean(local.to(self.dist.device)).tolist()  # NCCL needs device tensors
        samples = sum(s["samples"] for s in window) * self.dist.world_size
        return {"step": pos.step, "epoch": pos.epoch, "loss": loss, "acc": acc, "lr": window[-1]["lr"],
                **{k: window[-1][k] for k in ("logit_scale",) if k in window[-1]},
                "samples_per_s": samples / max(seconds, 1e-9)}

    def _run_eval(self, bind: BindModel, step: int, metrics: MetricsLog) -> dict[str, float]:
        result: dict[str, float] = {}
        if self.dist.is_main and self.evaluate is not None:
            bind.eval()
            with torch.no_grad():
                result = dict(self.evaluate(bind))
            metrics.write({"step": step, **result}, prefix="eval")
            log.info("step %d eval: %s", step, ", ".join(f"{k}={v:.4f}" for k, v in result.items()))
        barrier()
        return result

    def _progress(self, initial: int) -> Any:
        if not (self.run.progress and self.dist.is_main and sys.stderr.isatty()):
            return None  # no bar in logs and pipes: the JSONL metrics carry the progress there
        from tqdm.auto import tqdm

        return tqdm(total=self.total_steps, initial=initial, desc="train", unit="step", dynamic_ncols=True)

    # ------------------------------------------------------------------ checkpoints

    def _save(self, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: torch.amp.GradScaler,
              record: dict[str, Any]) -> Path | None:
        rng = all_gather_objects(self._step_rng or ck.capture_rng())  # every rank's, restored per rank
        path = None
        if self.dist.is_main:
            pos = self.position
            state = {
                "step": pos.step, "epoch": pos.epoch, "batch_in_epoch": pos.batch_in_epoch,
                "total_steps": self.total_steps, "world_size": self.dist.world_size,
                "model": {k: v.cpu() for k, v in self.bind.trainable_state_dict().items()},
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "rng": rng, "config": self.config,
                "metrics": {k: v for k, v in record.items() if isinstance(v, (int, float))},
            }
            path = ck.save_checkpoint(self.out_dir / CHECKPOINT_DIR, pos.step, state, self.run.keep_checkpoints)
        barrier()
        return path

    def _restore(self, path: Path, optimizer: torch.optim.Optimizer, scheduler: Any,
                 scaler: torch.amp.GradScaler) -> None:
        state = ck.load_checkpoint(path)
        if state.get("total_steps") not in (None, self.total_steps):
            raise BindspaceError(f"{path}: was made for a {state['total_steps']}-step schedule, this run has "
                                 f"{self.total_steps}; resume with the same length (or run.resume = \"never\")")
        self.bind.load_trainable_state_dict({k: v.to(self.dist.device) for k, v in state["model"].items()})
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        rngs = state["rng"]
        if state.get("world_size") == self.dist.world_size:
            ck.restore_rng(rngs[self.dist.rank])
        else:
            log.warning("resuming with %d processes instead of %s: data order is kept, random streams differ",
                        self.dist.world_size, state.get("world_size"))
        batch_in_epoch = int(state["batch_in_epoch"])
        old_world = int(state.get("world_size") or self.dist.world_size)
        if old_world != self.dist.world_size:  # same number of samples seen, in this world's batches
            batch_in_epoch = batch_in_epoch * old_world // self.dist.world_size
        self.position = Position(int(state["step"]), int(state["epoch"]), batch_in_epoch)
        log.info("resumed from %s at step %d", path, self.position.step)


def checkpoint_to_export(run: RunConfig, checkpoint: str | os.PathLike[str] | None) -> Path:
    """The checkpoint an export reads: the one given, else the run's latest (one line when there is none)."""
    path = Path(checkpoint) if checkpoint else ck.latest_checkpoint(Path(run.out_dir) / CHECKPOINT_DIR)
    if path is None:
        raise ConfigError(f"{run.out_dir}: no training checkpoint to export")
    return path


def load_trained_weights(bind: BindModel, path: str | Path) -> int:
    """Load a training checkpoint's trainable weights into `bind`; returns its step (for export)."""
    state = ck.load_checkpoint(Path(path))
    bind.load_trainable_state_dict(state["model"])
    return int(state["step"])
