"""Pair manifests (CSV / JSONL), the map-style pair dataset, and a resumable distributed batch order.

A manifest row names one anchor item and one target item (paths, relative to the manifest's
folder or `data.root`; text is given inline), optionally with `start` / `end` seconds of a
window inside time-based items. Every sample's augmentation is seeded from (seed, epoch,
index), so results do not depend on the number of loader workers and a resumed run sees
exactly the batches an uninterrupted one would have.
"""
from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterator, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import BindspaceError, ConfigError, InputError
from ..modality import Modality
from .augment import sample_generator, uniform
from .items import ItemLoader, Window

log = logging.getLogger("bindspace.train")

FIELD_ALIASES: dict[Modality, tuple[str, ...]] = {
    Modality.VISION: ("vision", "image", "video", "frame", "rgb"),
    Modality.TEXT: ("text", "caption"),
    Modality.AUDIO: ("audio",),
    Modality.DEPTH: ("depth",),
    Modality.THERMAL: ("thermal", "infrared"),
    Modality.IMU: ("imu",),
}
MAX_CONSECUTIVE_FAILURES = 32


@dataclass(frozen=True)
class PairRecord:
    """One row of a manifest: the two items and an optional shared time window."""

    anchor: str
    target: str
    window: Window = Window()
    where: str = ""  # "manifest.jsonl:12", for messages


@dataclass
class PairBatch:
    """A collated batch: anchor inputs (B, ...) and target inputs (B, ...)."""

    anchor: torch.Tensor
    target: torch.Tensor

    def __len__(self) -> int:
        return self.anchor.shape[0]

    def pin_memory(self) -> PairBatch:
        """Page-locked copies (DataLoader calls this when pin_memory=True)."""
        return PairBatch(self.anchor.pin_memory(), self.target.pin_memory())

    def to(self, device: torch.device) -> PairBatch:
        """Both tensors on `device`."""
        return PairBatch(self.anchor.to(device, non_blocking=True), self.target.to(device, non_blocking=True))


class PairSource(Protocol):
    """What the trainer iterates: batches of one epoch from a given position."""

    @property
    def batches_per_epoch(self) -> int | None:
        """Batches per epoch for this process; None for an endless stream."""
        ...

    def batches(self, epoch: int, start: int) -> Iterator[PairBatch]:
        """Batches of `epoch` for this process, skipping the first `start`."""
        ...


# ----------------------------------------------------------------------------- manifests


def read_manifest(
    path: str | os.PathLike[str],
    anchor: Modality,
    target: Modality,
    *,
    anchor_field: str | None = None,
    target_field: str | None = None,
    root: str | os.PathLike[str] | None = None,
) -> list[PairRecord]:
    """Rows of a .csv / .jsonl manifest as PairRecords (paths resolved; text kept as is)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "manifest not found")
    base = Path(root) if root is not None else path.parent
    rows = _read_rows(path)
    if not rows:
        raise InputError(str(path), "manifest has no rows")
    names = set().union(*(row.keys() for _, row in rows))
    a_key = _field(anchor, anchor_field, names, path)
    t_key = _field(target, target_field, names, path)
    records = []
    for line, row in rows:
        where = f"{path}:{line}"
        a, t = row.get(a_key), row.get(t_key)
        for key, value in ((a_key, a), (t_key, t)):
            if value is None or (isinstance(value, str) and not value.strip()):
                raise InputError(where, f"missing value for {key!r}")
        window = Window(_seconds(row.get("start"), where, "start"), _seconds(row.get("end"), where, "end"))
        records.append(PairRecord(_resolve(str(a), anchor, base), _resolve(str(t), target, base), window, where))
    return records


def _read_rows(path: Path) -> list[tuple[int, dict]]:
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames:
            raise InputError(str(path), "CSV manifest has no header row")
        return [(i + 2, {k.strip(): (v or "").strip() for k, v in row.items() if k}) for i, row in enumerate(reader)]
    if suffix in (".jsonl", ".ndjson", ".json"):
        rows = []
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{i}", f"not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise InputError(f"{path}:{i}", "each line must be a JSON object")
            rows.append((i, row))
        return rows
    raise InputError(str(path), f"unknown manifest format {suffix!r} (use .csv or .jsonl, or .tar shards)")


def _field(modality: Modality, given: str | None, names: set[str], path: Path) -> str:
    if given is not None:
        if given not in names:
            raise InputError(str(path), f"no column {given!r} (columns: {', '.join(sorted(names))})")
        return given
    for name in FIELD_ALIASES[modality]:
        if name in names:
            return name
    raise InputError(str(path), f"no column for {modality} (looked for {', '.join(FIELD_ALIASES[modality])}; "
                                f"columns: {', '.join(sorted(names))}); set data.anchor_field / data.target_field")


def _seconds(value: object, where: str, key: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(where, f"{key} must be a number of seconds, got {value!r}") from None


def _resolve(value: str, modality: Modality, base: Path) -> str:
    if modality == Modality.TEXT:
        return value
    path = Path(os.path.expanduser(value))
    return str(path if path.is_absolute() else base / path)


# ----------------------------------------------------------------------------- dataset


class PairDataset(Dataset):
    """Map-style pairs; indexed by (epoch, index) so augmentation is reproducible anywhere."""

    def __init__(
        self,
        records: Sequence[PairRecord],
        anchor: ItemLoader,
        target: ItemLoader,
        *,
        seed: int = 0,
        on_error: str = "skip",
        augment: bool = True,
    ) -> None:
        self.records = list(records)
        self.anchor, self.target = anchor, target
        self.seed, self.on_error = seed, on_error
        # Without augmenting loaders the random clip placement must go too: evaluation is deterministic.
        self.augment = augment and (anchor.augment is not None or target.augment is not None)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: tuple[int, int] | int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        last: InputError | None = None
        for attempt in range(min(MAX_CONSECUTIVE_FAILURES, len(self.records))):
            i = (index + attempt) % len(self.records)
            try:
                return self.load(i, epoch)
            except InputError as exc:
                if self.on_error == "raise":
                    raise
                last = exc
                log.warning("skipping sample %s: %s", self.records[i].where, exc)
        raise BindspaceError(f"{MAX_CONSECUTIVE_FAILURES} consecutive samples failed to load; last: {last}")

    def load(self, index: int, epoch: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Anchor and target inputs of record `index` (augmented when the dataset augments)."""
        record = self.records[index]
        gen = sample_generator(self.seed, epoch, index) if self.augment else None
        phase = uniform(gen) if gen is not None else 0.5  # shared, so audio and video clips line up
        a = self.anchor(record.anchor, name=_name(record, record.anchor), window=record.window, phase=phase, gen=gen)
        t = self.target(record.target, name=_name(record, record.target), window=record.window, phase=phase, gen=gen)
        return a, t


def _name(record: PairRecord, value: str) -> str:
    return f"{value} ({record.where})" if record.where else value


def collate_pairs(items: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> PairBatch:
    """Stack (anchor, target) items into a PairBatch, with a clear error for mixed shapes."""
    anchors = [a for a, _ in items]
    targets = [t for _, t in items]
    for side, tensors in (("anchor", anchors), ("target", targets)):
        shapes = {tuple(x.shape) for x in tensors}
        if len(shapes) > 1:
            raise BindspaceError(f"cannot batch {side} items of different shapes {sorted(shapes)} "
                                 "(e.g. images mixed with videos in one manifest)")
    return PairBatch(torch.stack(anchors), torch.stack(targets))


# ----------------------------------------------------------------------------- order


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """This process's batches of one epoch, from any starting batch.

    Epoch e is a permutation seeded by (seed, e); global batch g holds the next
    batch_size x world items and process r takes its r-th slice. So W processes with batch
    B see, together and in rank order, exactly the batches one process with batch W·B sees.
    In training the tail that does not fill a global batch is dropped (all processes must
    agree, and InfoNCE wants full batches of negatives); `drop_last=False` keeps it as a
    shorter last batch, so evaluation sees every item.
    """

    def __init__(self, size: int, batch_size: int, *, rank: int = 0, world: int = 1, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = True) -> None:
        if not drop_last and world != 1:
            raise ValueError("keeping the tail batch needs a single process (ranks would get unequal batches)")
        self.size, self.batch_size, self.rank, self.world = size, batch_size, rank, world
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.epoch, self.start = 0, 0

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start

    @property
    def batches_per_epoch(self) -> int:
        """Batches each process gets in one full epoch."""
        step = self.batch_size * self.world
        return self.size // step if self.drop_last else -(-self.size // step)

    def set_position(self, epoch: int, start: int) -> None:
        """Make the next iteration yield epoch `epoch` from batch `start`."""
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        if self.shuffle:
            gen = torch.Generator()
            gen.manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.size, generator=gen).tolist()
        else:
            order = list(range(self.size))
        step = self.batch_size * self.world
        for g in range(self.start, self.batches_per_epoch):
            chunk = order[g * step + self.rank * self.batch_size: g * step + (self.rank + 1) * self.batch_size]
            yield [(self.epoch, i) for i in chunk]


class ManifestSource:
    """PairSource over a map-style dataset with DataLoader workers."""

    def __init__(self, dataset: Dataset, *, batch_size: int, rank: int = 0, world: int = 1, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = True, num_workers: int = 0,
                 pin_memory: bool = False) -> None:
        self.dataset = dataset
        size = len(cast(Sized, dataset))  # map-style datasets define __len__; torch's Dataset type does not say so
        self.sampler = EpochBatchSampler(size, batch_size, rank=rank, world=world, seed=seed, shuffle=shuffle,
                                         drop_last=drop_last)
        if self.sampler.batches_per_epoch == 0:
            raise ConfigError(f"the data has {size} pairs, fewer than one global batch "
                              f"({batch_size} x {world} processes)")
        self.num_workers, self.pin_memory = num_workers, pin_memory

    @property
    def batches_per_epoch(self) -> int:
        """Batches each process gets per epoch."""
        return self.sampler.batches_per_epoch

    def batches(self, epoch: int, start: int) -> Iterator[PairBatch]:
        """Batches of `epoch` from batch `start` (a fresh loader each epoch)."""
        self.sampler.set_position(epoch, start)
        # An own generator: creating a loader iterator would otherwise draw from the global RNG
        # (and a resumed run creates its iterators at different moments).
        loader = DataLoader(self.dataset, batch_sampler=self.sampler, num_workers=self.num_workers,
                            collate_fn=collate_pairs, pin_memory=self.pin_memory,
                            generator=torch.Generator().manual_seed(self.sampler.seed * 7919 + epoch))
        yield from loader


def records_for(paths: Sequence[str], anchor: Modality, target: Modality, *, anchor_field: str | None,
                target_field: str | None, root: str | None) -> list[PairRecord]:
    """All records of several manifests, in order."""
    out: list[PairRecord] = []
    for path in paths:
        out.extend(read_manifest(path, anchor, target, anchor_field=anchor_field, target_field=target_field, root=root))
    return out

