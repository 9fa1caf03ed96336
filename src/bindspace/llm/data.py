"""Bridge training data: JSONL rows {media: [{modality, path}], prompt, response}, cached embeddings, batches.

Every media file is embedded once by the frozen encoder before training starts (the encoder
never runs in the loop); the vectors are kept in `out_dir/media_embeddings.safetensors`
with the encoder's fingerprint, so a resumed run reuses them. Each row is tokenised once:
the loss covers the response tokens (and the closing EOS) only.
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from ..fsio import atomic_open, atomic_path
from ..kinds import parse_kind, resolve_kind
from ..train.augment import sample_generator
from .template import IGNORE, EncodedTurn

log = logging.getLogger("bindspace.llm")
CACHE_FILE = "media_embeddings.safetensors"
CACHE_INDEX = "media_embeddings.json"


@dataclass(frozen=True)
class Row:
    """One training example: media (kind, path) pairs, the prompt and the response."""

    media: tuple[tuple[str, str], ...]
    prompt: str
    response: str
    where: str


def read_rows(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> list[Row]:
    """Rows of a JSONL file (paths relative to `root`, default the file's folder); InputError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "data file not found")
    base = Path(root) if root is not None else path.parent
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise InputError(where, f"not valid JSON ({exc})") from None
        rows.append(parse_row(data, where, base))
    if not rows:
        raise InputError(str(path), "no rows")
    return rows


def parse_row(data: Any, where: str, base: Path) -> Row:
    """Check one JSON object and resolve its media paths."""
    if not isinstance(data, dict):
        raise InputError(where, "each line must be a JSON object {media, prompt, response}")
    for key in ("prompt", "response"):
        if not isinstance(data.get(key), str):
            raise InputError(where, f"{key!r} must be a string")
    items = data.get("media", [])
    if not isinstance(items, list):
        raise InputError(where, "'media' must be a list of {modality, path}")
    media = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("path"), str) or "modality" not in item:
            raise InputError(where, f"media[{i}] must be an object with 'modality' and 'path'")
        try:
            kind = parse_kind(item["modality"])
        except ValueError as exc:
            raise InputError(where, f"media[{i}]: {exc}") from None
        if kind == "text":
            raise InputError(where, f"media[{i}]: text belongs in the prompt, not in media")
        file = Path(os.path.expanduser(item["path"]))
        file = file if file.is_absolute() else base / file
        media.append((resolve_kind(kind, file), str(file)))
    return Row(tuple(media), data["prompt"], data["response"], where)


# ----------------------------------------------------------------------------- the embedding cache


def embed_all(encoder: Any, keys: Sequence[tuple[str, str]], *, fingerprint: str, cache_dir: Path | None,
              batch_size: int = 32, num_workers: int = 0,
              on_error: str = "skip") -> dict[tuple[str, str], torch.Tensor]:
    """Unit embeddings of every distinct (kind, path), from the cache when it holds them for this encoder."""
    from ..embedding import Embedder

    wanted = list(dict.fromkeys(keys))
    found = _read_cache(cache_dir, fingerprint) if cache_dir is not None else {}
    missing = [k for k in wanted if k not in found]
    if missing:
        embedder = Embedder(encoder, batch_size=batch_size, num_workers=num_workers)
        by_kind: dict[str, list[str]] = {}
        for kind, path in missing:
            by_kind.setdefault(kind, []).append(path)
        for kind, paths in by_kind.items():
            result = embedder.embed(kind, paths, on_error="skip" if on_error == "skip" else "raise")
            for row, index in enumerate(result.indices):
                found[(kind, paths[index])] = torch.from_numpy(result.vectors[row].copy())
            for error in result.errors:
                log.warning("skipping %s: %s", error.name, error.message)
        if cache_dir is not None:
            _write_cache(cache_dir, fingerprint, found)
    return {k: found[k] for k in wanted if k in found}


def _read_cache(folder: Path, fingerprint: str) -> dict[tuple[str, str], torch.Tensor]:
    from safetensors.torch import load_file

    try:
        index = json.loads((folder / CACHE_INDEX).read_text())
        if index.get("fingerprint") != fingerprint:
            return {}
        vectors = load_file(str(folder / CACHE_FILE))["vectors"]
    except (OSError, ValueError, KeyError):
        return {}
    keys = [tuple(k) for k in index.get("keys", [])]
    if len(keys) != vectors.shape[0]:
        return {}
    return {(str(k[0]), str(k[1])): vectors[i] for i, k in enumerate(keys)}


def _write_cache(folder: Path, fingerprint: str, vectors: dict[tuple[str, str], torch.Tensor]) -> None:
    from safetensors.torch import save_file

    if not vectors:
        return
    folder.mkdir(parents=True, exist_ok=True)
    keys = list(vectors)
    with atomic_path(folder / CACHE_FILE) as tmp:
        save_file({"vectors": torch.stack([vectors[k] for k in keys]).contiguous()}, str(tmp))
    with atomic_open(folder / CACHE_INDEX) as handle:
        json.dump({"fingerprint": fingerprint, "keys": [list(k) for k in keys]}, handle)


# ----------------------------------------------------------------------------- batches


@dataclass
class Example:
    """A tokenised row: ids, labels (IGNORE outside the response), media rows and their slots."""

    ids: list[int]
    labels: list[int]
    media: list[int]  # rows of the embedding table
    slots: list[int]


def make_example(turn: EncodedTurn, media_rows: list[int]) -> Example:
    """An Example from an encoded turn and the table rows of its media."""
    return Example(turn.ids, turn.labels, media_rows, turn.slots)


@dataclass
class BridgeBatch:
    """Padded ids (B, T), labels (B, T), attention mask (B, T), media embeddings (M, D) and slots (M, 2)."""

    ids: torch.Tensor
    labels: torch.Tensor
    mask: torch.Tensor
    media: torch.Tensor
    slots: torch.Tensor

    def __len__(self) -> int:
        return self.ids.shape[0]

    def to(self, device: torch.device) -> BridgeBatch:
        """Every tensor on `device`."""
        return BridgeBatch(*(t.to(device, non_blocking=True) for t in
                             (self.ids, self.labels, self.mask, self.media, self.slots)))


def collate(examples: Sequence[Example], table: torch.Tensor, pad_id: int) -> BridgeBatch:
    """Right-padded batch; padding carries no loss and no attention."""
    length = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), length), dtype=torch.long)
    rows, slots = [], []
    for b, example in enumerate(examples):
        n = len(example.ids)
        ids[b, :n] = torch.tensor(example.ids)
        labels[b, :n] = torch.tensor(example.labels)
        mask[b, :n] = 1
        rows += example.media
        slots += [[b, s] for s in example.slots]
    media = table[torch.tensor(rows, dtype=torch.long)] if rows else table.new_zeros((0, table.shape[1]))
    return BridgeBatch(ids, labels, mask, media, torch.tensor(slots, dtype=torch.long).view(-1, 2))


class ExampleSource:
    """A PairSource-like batch stream: shuffled per epoch from (seed, epoch), split across ranks, resumable."""

    def __init__(self, examples: Sequence[Example], table: torch.Tensor, pad_id: int, *, batch_size: int,
                 rank: int = 0, world: int = 1, seed: int = 0, shuffle: bool = True) -> None:
        self.examples, self.table, self.pad_id = list(examples), table, pad_id
        self.batch_size, self.rank, self.world, self.seed, self.shuffle = batch_size, rank, world, seed, shuffle
        per_rank = len(self.examples) // world if shuffle else len(self.examples)
        self.batches_per_epoch: int | None = max(math.ceil(per_rank / batch_size), 1)

    def batches(self, epoch: int, start: int) -> Iterator[BridgeBatch]:
        """Batches `start`.. of `epoch` for this rank."""
        order = list(range(len(self.examples)))
        if self.shuffle:
            order = torch.randperm(len(order), generator=sample_generator(self.seed, epoch)).tolist()
            usable = len(order) // self.world * self.world or len(order)  # equal shares keep DDP in step
            order = order[:usable][self.rank::self.world]
        for i in range(start, self.batches_per_epoch or 0):
            part = order[i * self.batch_size:(i + 1) * self.batch_size]
            if part:
                yield collate([self.examples[j] for j in part], self.table, self.pad_id)
