"""WebDataset-style tar shards read with the standard library, as an endless, resumable stream of pairs.

A shard is an uncompressed tar whose files are grouped into samples by key: the file name
up to its first dot is the key, the rest is the extension (`000123.jpg`, `000123.wav`,
`000123.json`). The files of one sample must be adjacent, as `tar` writes them when
given sorted names. An optional `.json` member may hold `{"start": s, "end": e}`.

Each (process, loader worker) pair is a "slot". With at least as many shards as slots,
every slot reads its own shards; otherwise every slot reads all shards and keeps every
slots-th sample. Shard order and the shuffle buffer are seeded per slot and pass, so a
run resumed after N batches skips (without decoding) exactly the samples it had used.
"""
from __future__ import annotations

import glob
import io
import json
import logging
import os
import random
import re
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import count

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..errors import BindspaceError, ConfigError, InputError
from ..kinds import EXTENSIONS
from ..modality import Modality
from .augment import sample_generator, uniform
from .data import PairBatch, collate_pairs
from .items import ItemLoader, Window

log = logging.getLogger("bindspace.train")



def _plain(kind: str) -> tuple[str, ...]:
    return tuple(ext.lstrip(".") for ext in EXTENSIONS[kind])


def _tagged(kind: str) -> tuple[str, ...]:
    # Depth, thermal and IMU files share extensions with images and arrays, so in a sample
    # they are told apart by a tag before the extension: 000123.depth.png.
    return tuple(f"{kind}{ext}" for ext in EXTENSIONS[kind])


# Sample member extensions tried in order for each side (the file extensions come from bindspace.kinds).
DEFAULT_EXTENSIONS: dict[Modality, tuple[str, ...]] = {
    Modality.VISION: _plain("image") + _plain("video"),
    Modality.TEXT: ("txt", "caption", "text"),
    Modality.AUDIO: _plain("audio"),
    Modality.DEPTH: _tagged("depth"),
    Modality.THERMAL: _tagged("thermal"),
    Modality.IMU: _tagged("imu"),
}


@dataclass(frozen=True)
class ShardSample:
    """Where one sample's files lie: extension -> (byte offset, size) inside `shard`."""

    shard: str
    key: str
    members: dict[str, tuple[int, int]]


def expand_shards(patterns: Sequence[str]) -> list[str]:
    """Paths from globs and brace ranges (`data/shard-{0000..0099}.tar`), in order, checked to exist."""
    out: list[str] = []
    for pattern in patterns:
        for expanded in _braces(pattern):
            matches = sorted(glob.glob(expanded)) if any(c in expanded for c in "*?[") else [expanded]
            if not matches:
                raise InputError(expanded, "no shard matches this pattern")
            for path in matches:
                if not os.path.isfile(path):
                    raise InputError(path, "shard not found")
                out.append(path)
    return out


def _braces(pattern: str) -> list[str]:
    match = re.search(r"\{(\d+)\.\.(\d+)\}", pattern)
    if not match:
        return [pattern]
    first, last = match.group(1), match.group(2)
    width = len(first)
    head, tail = pattern[: match.start()], pattern[match.end():]
    return [p for n in range(int(first), int(last) + 1) for p in _braces(f"{head}{n:0{width}d}{tail}")]


def split_name(name: str) -> tuple[str, str]:
    """(key, extension) of a member name: the directory and base name up to the first dot, and the rest."""
    folder, base = os.path.split(name)
    stem, _, ext = base.partition(".")
    return os.path.join(folder, stem), ext.lower()


def index_shard(path: str) -> Iterator[ShardSample]:
    """The samples of one shard in file order, reading only the tar headers."""
    try:
        with tarfile.open(path, "r:") as tar:
            current: str | None = None
            members: dict[str, tuple[int, int]] = {}
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = split_name(member.name)
                if key != current and members:
                    yield ShardSample(path, current or "", members)
                    members = {}
                current = key
                members[ext] = (member.offset_data, member.size)
            if members:
                yield ShardSample(path, current or "", members)
    except tarfile.ReadError as exc:
        raise InputError(path, f"not an uncompressed tar shard ({exc})") from None


class _ShardStream(IterableDataset):
    """The endless per-slot stream of loaded (anchor, target) pairs."""

    def __init__(self, shards: list[str], anchor: ItemLoader, target: ItemLoader, anchor_exts: tuple[str, ...],
                 target_exts: tuple[str, ...], *, batch_size: int, rank: int, world: int, seed: int,
                 shuffle_buffer: int, on_error: str, augment: bool) -> None:
        self.shards, self.anchor, self.target = shards, anchor, target
        self.anchor_exts, self.target_exts = anchor_exts, target_exts
        self.batch_size, self.rank, self.world, self.seed = batch_size, rank, world, seed
        self.shuffle_buffer, self.on_error, self.augment = shuffle_buffer, on_error, augment
        self.start = 0  # batches this process already consumed

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        # DataLoader takes batches from its workers round-robin starting at worker 0, so after
        # `start` batches the stream that owns batch `start` must sit in worker 0 again: this
        # worker plays stream (worker + start) % workers, which had produced its batches
        # logical, logical + workers, ... below `start`.
        logical = (worker + self.start) % workers
        slot, slots = self.rank * workers + logical, self.world * workers
        skip = len(range(logical, self.start, workers)) * self.batch_size
        files: dict[str, io.BufferedReader] = {}
        failures = 0
        try:
            for position, (passes, sample) in enumerate(self._samples(slot, slots)):
                if skip:
                    skip -= 1
                    continue
                try:
                    yield self._load(sample, files, slot, passes, position)
                    failures = 0
                except InputError as exc:
                    if self.on_error == "raise":
                        raise
                    failures += 1
                    if failures >= 32:
                        raise BindspaceError(f"32 consecutive shard samples failed to load; last: {exc}") from None
                    log.warning("skipping sample %s in %s: %s", sample.key, sample.shard, exc)
        finally:
            for handle in files.values():
                handle.close()

    def _samples(self, slot: int, slots: int) -> Iterator[tuple[int, ShardSample]]:
        """(pass number, sample) forever for this slot."""
        for passes in count():
            rng = random.Random(f"{self.seed}/{slot}/{passes}")
            order = list(self.shards)
            random.Random(f"{self.seed}/order/{passes}").shuffle(order)
            if len(order) >= slots:
                mine, stride = order[slot::slots], 1
            else:
                mine, stride = order, slots
            buffer: list[ShardSample] = []
            seen = 0
            for shard in mine:
                for sample in index_shard(shard):
                    seen += 1
                    if stride > 1 and (seen - 1) % stride != slot:
                        continue
                    if self.shuffle_buffer <= 1:
                        yield passes, sample
                        continue
                    if len(buffer) < self.shuffle_buffer:
                        buffer.append(sample)
                        continue
                    i = rng.randrange(len(buffer))
                    buffer[i], sample = sample, buffer[i]
                    yield passes, sample
            rng.shuffle(buffer)
            for sample in buffer:
                yield passes, sample
            if not seen:
                raise BindspaceError("the tar shards contain no samples")

    def _load(self, sample: ShardSample, files: dict[str, io.BufferedReader], slot: int, passes: int,
              position: int) -> tuple[torch.Tensor, torch.Tensor]:
        name = f"{sample.shard}:{sample.key}"
        a_ext = _pick(sample, self.anchor_exts, name)
        t_ext = _pick(sample, self.target_exts, name)
        window = Window()
        if "json" in sample.members:
            meta = _json(_read(sample, "json", files), name)
            window = Window(meta.get("start"), meta.get("end"))
        gen = sample_generator(self.seed, slot, passes, position) if self.augment else None
        phase = uniform(gen) if gen is not None else 0.5
        a = self.anchor(_read(sample, a_ext, files), name=f"{name}.{a_ext}", ext=a_ext, window=window, phase=phase,
                        gen=gen)
        t = self.target(_read(sample, t_ext, files), name=f"{name}.{t_ext}", ext=t_ext, window=window, phase=phase,
                        gen=gen)
        return a, t


def _pick(sample: ShardSample, exts: tuple[str, ...], name: str) -> str:
    for ext in exts:
        if ext in sample.members:
            return ext
    raise InputError(name, f"sample has none of the extensions {', '.join(exts)} (has {', '.join(sample.members)})")


def _read(sample: ShardSample, ext: str, files: dict[str, io.BufferedReader]) -> bytes:
    handle = files.get(sample.shard)
    if handle is None:
        handle = files[sample.shard] = open(sample.shard, "rb")
    offset, size = sample.members[ext]
    handle.seek(offset)
    data = handle.read(size)
    if len(data) != size:
        raise InputError(f"{sample.shard}:{sample.key}.{ext}", "truncated shard")
    return data


def _json(data: bytes, name: str) -> dict:
    try:
        meta = json.loads(data)
    except ValueError:
        raise InputError(f"{name}.json", "not valid JSON") from None
    if not isinstance(meta, dict):
        raise InputError(f"{name}.json", "must hold a JSON object")
    return meta


class ShardSource:
    """PairSource over tar shards: one endless epoch; the position is the number of batches consumed."""

    batches_per_epoch = None

    def __init__(self, patterns: Sequence[str], anchor: ItemLoader, target: ItemLoader, *, batch_size: int,
                 rank: int = 0, world: int = 1, seed: int = 0, num_workers: int = 0, shuffle_buffer: int = 1000,
                 anchor_field: str | None = None, target_field: str | None = None, on_error: str = "skip",
                 augment: bool = True, pin_memory: bool = False) -> None:
        shards = expand_shards(patterns)
        if not shards:
            raise ConfigError("no tar shards given")
        slots = world * max(num_workers, 1)
        if len(shards) < slots:
            log.warning("%d shards for %d reader slots: every slot reads all shards (give >= %d shards)",
                        len(shards), slots, slots)
        a_exts = tuple(anchor_field.split(";")) if anchor_field else DEFAULT_EXTENSIONS[anchor.modality]
        t_exts = tuple(target_field.split(";")) if target_field else DEFAULT_EXTENSIONS[target.modality]
        self.stream = _ShardStream(shards, anchor, target, a_exts, t_exts, batch_size=batch_size, rank=rank,
                                   world=world, seed=seed, shuffle_buffer=shuffle_buffer, on_error=on_error,
                                   augment=augment)
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory

    def batches(self, epoch: int, start: int) -> Iterator[PairBatch]:
        """Batches after the first `start` (the epoch number is ignored: the stream is endless)."""
        self.stream.start = start
        loader = DataLoader(self.stream, batch_size=self.batch_size, num_workers=self.num_workers,
                            collate_fn=collate_pairs, pin_memory=self.pin_memory, drop_last=True,
                            generator=torch.Generator().manual_seed(self.stream.seed))  # keep the global RNG untouched
        yield from loader
