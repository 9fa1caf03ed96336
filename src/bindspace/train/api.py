"""`train(config)`: build everything a TrainConfig describes, run the loop, export the trained tower."""
from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..errors import ConfigError
from .build import BuiltModel, build_model
from .config import TrainConfig, load_config, train_kind
from .data import ManifestSource, PairDataset, PairSource, records_for
from .distributed import DistInfo, init_distributed, shutdown_distributed
from .evaluate import PairEvaluator
from .items import ItemLoader
from .loop import Evaluate, TrainResult, load_trained_weights, train_run

log = logging.getLogger("bindspace.train")
MODEL_SUBDIR = "model"
ADAPTER_SUBDIR = "adapters"


@dataclass
class TrainOutput:
    """The loop's result plus where the exported model and adapters went."""

    result: TrainResult
    model_dir: Path | None
    adapter_dir: Path | None
    # What the loop's accuracy measures and how the output is used: each train kind says its own.
    accuracy_name: ClassVar[str] = "in-batch accuracy"
    output_line: ClassVar[str] = "model directory: {dir}  (use --checkpoint {dir})"

    def summary(self) -> list[str]:
        """What this call did, in lines for a person: trained (from where), or found the run already complete."""
        r = self.result
        if r.steps_run == 0 and r.steps > 0 and not r.stopped_early:
            lines = [f"already complete: all {r.steps} steps were trained by an earlier run "
                     f"({r.checkpoint}); nothing to train"]
            if self.model_dir:
                lines.append("exported the final checkpoint again: " + self.output_line.format(dir=self.model_dir))
            return lines
        head = f"trained {r.steps_run} steps in {r.seconds:.1f} s"
        if r.start_step:
            head += f" (resumed at step {r.start_step}; now {r.steps} of {r.total_steps or r.steps})"
        last = r.last_metrics
        if last:
            head += f"; last loss {last['loss']:.4f}, {self.accuracy_name} {last['acc']:.3f}"
        lines = [head]
        if r.eval_metrics:
            lines.append("eval: " + ", ".join(f"{k} {v:.4f}" for k, v in r.eval_metrics.items()))
        if self.adapter_dir:
            lines.append(f"LoRA adapters: {self.adapter_dir}")
        if self.model_dir:
            lines.append(self.output_line.format(dir=self.model_dir))
        return lines


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def is_shards(config: TrainConfig) -> bool:
    """Whether the training data are tar shards."""
    if config.data.format != "auto":
        return config.data.format == "tar"
    return all(str(p).endswith(".tar") or "{" in str(p) for p in config.data.train)


def build_source(config: TrainConfig, bind_towers: tuple, dist: DistInfo, *, split: str = "train") -> PairSource:
    """The PairSource for the train (augmented, shuffled) or val (plain, ordered) split."""
    anchor_tower, target_tower = bind_towers
    train = split == "train"
    augment = config.augment if train else None
    anchor = ItemLoader(config.anchor_modality, anchor_tower, augment)
    target = ItemLoader(config.target_modality, target_tower, augment)
    paths = config.data.train if train else config.data.val
    pin = dist.device.type == "cuda"
    if train and is_shards(config):
        from .shards import ShardSource

        return ShardSource(paths, anchor, target, batch_size=config.run.batch_size, rank=dist.rank,
                           world=dist.world_size, seed=config.run.seed, num_workers=config.data.num_workers,
                           shuffle_buffer=config.data.shuffle_buffer, anchor_field=config.data.anchor_field,
                           target_field=config.data.target_field, on_error=config.data.on_error,
                           augment=config.augment.enabled, pin_memory=pin)
    records = records_for(paths, config.anchor_modality, config.target_modality,
                          anchor_field=config.data.anchor_field, target_field=config.data.target_field,
                          root=config.data.root)
    if not train:
        records = records[: config.data.max_val_items]
    dataset = PairDataset(records, anchor, target, seed=config.run.seed, on_error=config.data.on_error,
                          augment=train and config.augment.enabled)
    if train:
        return ManifestSource(dataset, batch_size=config.run.batch_size, rank=dist.rank, world=dist.world_size,
                              seed=config.run.seed, num_workers=config.data.num_workers, pin_memory=pin)
    # Every validation pair, in order: the last batch may be short.
    return ManifestSource(dataset, batch_size=config.run.batch_size, shuffle=False, drop_last=False,
                          num_workers=config.data.num_workers)


def _val_evaluator(config: TrainConfig, towers: tuple, dist: DistInfo) -> Evaluate | None:
    if not config.data.val:
        return None
    source = build_source(config, towers, DistInfo(device=dist.device), split="val")
    return PairEvaluator(lambda: source.batches(0, 0))


def train(
    config: TrainConfig | str | os.PathLike[str],
    *,
    overrides: Sequence[str] = (),
    evaluate: Evaluate | None = None,
    max_steps: int | None = None,
) -> TrainOutput:
    """Run a training job (one process, or one rank of a torchrun job) and export the trained tower.

    `config` is a TrainConfig or a config file path; `overrides` are `section.key=value`
    strings; `evaluate` replaces the default validation (retrieval on data.val);
    `max_steps` stops early as if the job had been killed (for tests and smoke runs).
    """
    if not isinstance(config, TrainConfig):
        config = load_config(config, overrides)
    elif overrides:
        raise ConfigError("overrides apply to config files; edit the TrainConfig directly")
    if config.kind != "bind":
        return train_kind(config.kind).train(config, evaluate=evaluate, max_steps=max_steps)
    dist = init_distributed(config.run.device)
    try:
        seed_everything(config.run.seed)
        built = build_model(config)
        towers = (built.bind.model.tower_config(config.anchor_modality),
                  built.bind.model.tower_config(config.target_modality))
        torch.manual_seed(config.run.seed + dist.rank)  # per-process dropout streams
        source = build_source(config, towers, dist)
        evaluator = evaluate or _val_evaluator(config, towers, dist)
        result = train_run(built.bind, source, config, dist, evaluator, max_steps)
        model_dir = adapter_dir = None
        if dist.is_main and not result.stopped_early:
            adapter_dir, model_dir = export_run(config, built, result.steps)
        return TrainOutput(result, model_dir, adapter_dir)
    finally:
        shutdown_distributed()


def export_run(config: TrainConfig, built: BuiltModel, steps: int) -> tuple[Path | None, Path | None]:
    """Write out_dir/adapters (LoRA runs) and, when run.export is on, out_dir/model."""
    from .export import export_model

    out_dir = Path(config.run.out_dir)
    adapter_dir = model_dir = None
    info = {"anchor": str(config.anchor_modality), "target": str(config.target_modality), "steps": steps,
            "anchor_checkpoint": config.anchor.checkpoint, "target_init": config.target.init}
    if config.target.lora is not None:
        from .lora import save_adapters

        adapter_dir = save_adapters(built.bind.model.modality_trunks[config.target_modality], config.target.lora,
                                    out_dir / ADAPTER_SUBDIR, extra={"modality": str(config.target_modality),
                                                                     "base_checkpoint": config.target.checkpoint})
    if config.run.export:
        base_ckpt = config.anchor.checkpoint if config.anchor.freeze is not False else None
        model_dir = export_model(built.bind, out_dir / MODEL_SUBDIR, base_config=built.base_config,
                                 base_checkpoint=base_ckpt, extra=info)
        log.info("exported %s", model_dir)
    return adapter_dir, model_dir


def export_checkpoint(config: TrainConfig | str | os.PathLike[str], checkpoint: str | os.PathLike[str] | None = None,
                      out_dir: str | os.PathLike[str] | None = None) -> Path:
    """Rebuild the model of `config`, load a training checkpoint (default: the latest) and export it."""
    from .export import export_model
    from .loop import checkpoint_to_export

    if not isinstance(config, TrainConfig):
        config = load_config(config)
    if config.kind != "bind":
        return train_kind(config.kind).export_checkpoint(config, checkpoint, out_dir)
    path = checkpoint_to_export(config.run, checkpoint)
    seed_everything(config.run.seed)
    built = build_model(config)
    steps = load_trained_weights(built.bind, path)
    target = Path(out_dir) if out_dir else Path(config.run.out_dir) / MODEL_SUBDIR
    base_ckpt = config.anchor.checkpoint if config.anchor.freeze is not False else None
    return export_model(built.bind, target, base_config=built.base_config, base_checkpoint=base_ckpt,
                        extra={"anchor": str(config.anchor_modality), "target": str(config.target_modality),
                               "steps": steps, "checkpoint": str(path)})
