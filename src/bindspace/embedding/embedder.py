"""`Embedder`: embed long lists of inputs of one modality in batches, decoding in worker processes."""
from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..kinds import SEGMENTABLE, parse_kind, tower_of
from ..modality import Modality
from ..model.contract import has_clip_axis
from ..preprocess.sources import source_name
from .loading import (
    Failure,
    Unit,
    UnitDataset,
    as_failure,
    check_options,
    collate,
    decode_errors,
    geometry,
    make_loader,
    video_windows,
    vision_kind_of,
)
from .result import EmbeddingResult, ItemError

OnError = Literal["raise", "skip"]
RowMeta = tuple[int, str, "tuple[float, float] | None"]  # input index, name, segment
TEXT_CHUNK_BATCHES = 64  # texts are tokenised and length-sorted this many batches at a time


class _Collector:
    """Gathers rows in input order and applies the error policy."""

    def __init__(self, names: Sequence[str], on_error: OnError, segmented: bool) -> None:
        self.names = names
        self.on_error = on_error
        self.segmented = segmented
        self.chunks: list[np.ndarray] = []
        self.metas: list[RowMeta] = []
        self.errors: list[ItemError] = []

    def error(self, index: int, err: Failure) -> None:
        """Record a bad input, or raise its InputError under on_error="raise"."""
        if self.on_error == "raise":
            raise err.exception()
        self.errors.append(ItemError(index, self.names[index], err.problem))

    def add(self, metas: Sequence[RowMeta], vectors: np.ndarray) -> None:
        self.metas.extend(metas)
        self.chunks.append(vectors)

    def result(self, embed_dim: int) -> EmbeddingResult:
        vectors = np.concatenate(self.chunks) if self.chunks else np.zeros((0, embed_dim), np.float32)
        return EmbeddingResult(
            vectors=np.ascontiguousarray(vectors, dtype=np.float32),
            indices=[m[0] for m in self.metas],
            errors=sorted(self.errors, key=lambda e: e.index),
            names=[m[1] for m in self.metas],
            segments=[m[2] for m in self.metas] if self.segmented else None,  # type: ignore[misc]
        )


class _RowQueue:
    """Decoded rows waiting for the model, re-cut into batches of a fixed size (views where possible)."""

    def __init__(self) -> None:
        self.parts: deque[torch.Tensor] = deque()
        self.metas: deque[RowMeta] = deque()

    def __len__(self) -> int:
        return len(self.metas)

    def push(self, rows: torch.Tensor, metas: list[RowMeta]) -> None:
        self.parts.append(rows)
        self.metas.extend(metas)

    def pop(self, n: int) -> tuple[torch.Tensor, list[RowMeta]]:
        """The first min(n, len) rows and their metadata."""
        n = min(n, len(self))
        taken, need = [], n
        while need:
            head = self.parts[0]
            if head.shape[0] <= need:
                taken.append(self.parts.popleft())
                need -= head.shape[0]
            else:
                taken.append(head[:need])
                self.parts[0] = head[need:]
                need = 0
        metas = [self.metas.popleft() for _ in range(n)]
        return (taken[0] if len(taken) == 1 else torch.cat(taken)), metas


def _first(batch: list[Any]) -> Any:
    return batch[0]


class _WindowPlan(torch.utils.data.Dataset):
    """Per video: its time windows, or the InputError that stopped us from reading it."""

    def __init__(self, items: Sequence[Any], names: Sequence[str], seconds: float) -> None:
        self.items, self.names, self.seconds = items, names, seconds

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> list[tuple[float, float]] | Failure:
        try:
            return video_windows(self.items[i], self.names[i], self.seconds)
        except decode_errors() as exc:  # reported per input
            return as_failure(exc, self.names[i])


class Embedder:
    """Embeds lists of inputs of one modality with a loaded model, in batches.

    Decoding runs in `num_workers` worker processes while the model computes (0: in this
    process). Text is tokenised here, sorted by length within the job and restored to input
    order. `options` holds per-modality loader keyword arguments, e.g.
    `{"depth": {"focal_baseline": 40.0}}`. `device` (default: where the model is) moves the model.
    `progress`: True/False forces the bar on/off; None shows it on long jobs when stderr is a terminal.
    """

    def __init__(self, model: Any, *, batch_size: int = 32, num_workers: int = 0,
                 device: str | torch.device | None = None, progress: bool | None = None,
                 options: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if int(num_workers) < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.model = model
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.progress = progress
        self.options = check_options(options)
        here = next(model.parameters()).device
        self.device = torch.device(device) if device is not None else here
        if here.type != self.device.type or (self.device.index is not None and here != self.device):
            model.to(self.device)

    def embed(self, modality: str | Modality, items: Sequence[Any], *, on_error: OnError = "raise",
              segment_seconds: float | None = None, names: Sequence[str] | None = None) -> EmbeddingResult:
        """Unit-norm float32 vectors for `items` ("text", "image", "video", "audio", "depth", "thermal", "imu").

        "vision" means image or video, decided per input (`vision_kind_of`: by file extension,
        or by whether Pillow recognises the bytes). on_error="raise" raises the first bad
        input's InputError (nothing is returned); "skip" embeds the rest and lists the bad ones
        in `errors`. Only bad inputs are skipped: a bug or a model error stops the job.
        `segment_seconds` (audio, video) embeds consecutive windows of each input: one row
        per window.
        """
        kind = parse_kind(modality)
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if segment_seconds is not None:
            if kind not in SEGMENTABLE and kind != "vision":
                raise ValueError(f"segment_seconds applies to {' and '.join(SEGMENTABLE)} only, not {kind}")
            if not float(segment_seconds) > 0:
                raise ValueError(f"segment_seconds must be > 0, got {segment_seconds}")
            segment_seconds = float(segment_seconds)
        if isinstance(items, (str, bytes, bytearray, os.PathLike)):
            items = [items]  # one input, not a sequence of characters
        items = list(items)
        if names is None:
            names = [source_name(item, i) for i, item in enumerate(items)]
        else:
            names = [str(n) for n in names]
            if len(names) != len(items):
                raise ValueError(f"got {len(names)} names for {len(items)} items")
        if kind == "vision":
            return self._embed_vision(items, names, on_error, segment_seconds)
        tower = tower_of(kind)
        kwargs = {**geometry(kind, self.model.tower_config(tower)), **self.options.get(kind, {})}
        job = _Collector(names, on_error, segment_seconds is not None)
        was_training = self.model.training
        self.model.eval()  # dropout and stochastic depth would make embeddings random
        try:
            with torch.inference_mode():
                if kind == "text":
                    self._run_text(items, names, kwargs, job)
                else:
                    self._run_media(kind, items, names, kwargs, segment_seconds, job)
        finally:
            self.model.train(was_training)
        return job.result(self.model.embed_dim)

    # ----------------------------------------------------------------- internals

    def _embed_vision(self, items: list[Any], names: list[str], on_error: OnError,
                      segment_seconds: float | None) -> EmbeddingResult:
        """Embed the images and the videos among `items` separately and merge them in input order."""
        kinds = [vision_kind_of(item) for item in items]
        if segment_seconds is not None and "image" in kinds:
            first = names[kinds.index("image")]
            raise ValueError(f"segment_seconds applies to audio and video only, and {first} is an image")
        parts = []
        for kind in ("image", "video"):
            index = [i for i, k in enumerate(kinds) if k == kind]
            if index:
                part = self.embed(kind, [items[i] for i in index], on_error=on_error,
                                  segment_seconds=segment_seconds, names=[names[i] for i in index])
                parts.append((index, part))
        return _merge(parts, self.model.embed_dim, segment_seconds is not None)

    @property
    def _pin(self) -> bool:
        return self.device.type == "cuda"

    def _bar(self, total: int, desc: str):
        from tqdm.auto import tqdm

        enabled = sys.stderr.isatty() if self.progress is None else bool(self.progress)
        # Auto mode waits 2 s before drawing, so short jobs stay silent.
        return tqdm(total=total, desc=desc, unit="item", disable=not enabled or total == 0,
                    delay=2.0 if self.progress is None else 0.0, file=sys.stderr, dynamic_ncols=True)

    def _encode(self, tower: Modality, rows: torch.Tensor) -> np.ndarray:
        x = rows.to(self.device, non_blocking=True)  # the model casts to its own dtype
        # Video and audio rows are (B, S, ...) clips, averaged; the rule is the model contract's.
        return self.model.encode(tower, x, clip_axis=has_clip_axis(tower, x.ndim - 1)).cpu().numpy()

    def _run_text(self, items: list[Any], names: list[str], kwargs: dict[str, Any], job: _Collector) -> None:
        from ..preprocess.tokenizer import get_tokenizer, report_truncated

        good, cut = [], 0
        for i, text in enumerate(items):
            if isinstance(text, str):
                good.append(i)
            else:
                job.error(i, Failure(names[i], f"text must be a str, not {type(text).__name__}"))
        chunk = self.batch_size * TEXT_CHUNK_BATCHES
        with self._bar(len(good), "embed text") as bar:
            for c in range(0, len(good), chunk):
                index = good[c : c + chunk]
                ids, chunk_cut = get_tokenizer().tokenize_counting([items[i] for i in index], **kwargs)  # (n, L)
                cut += chunk_cut
                # The model cuts each batch at its longest text, so similar lengths batch cheaply.
                order = torch.argsort(ids.argmax(dim=1), descending=True, stable=True)
                out = np.empty((len(index), self.model.embed_dim), np.float32)
                for b in range(0, len(index), self.batch_size):
                    sel = order[b : b + self.batch_size]
                    x = ids[sel].pin_memory() if self._pin else ids[sel]
                    out[sel.numpy()] = self._encode(Modality.TEXT, x)
                    bar.update(len(sel))
                job.add([(i, names[i], None) for i in index], out)
        report_truncated(cut, len(good), kwargs["context_length"])  # once per call, not per chunk

    def _run_media(self, kind: str, items: list[Any], names: list[str], kwargs: dict[str, Any],
                   segment_seconds: float | None, job: _Collector) -> None:
        for i, item in enumerate(items):
            if hasattr(item, "read") and not isinstance(item, (str, bytes, os.PathLike)):
                # File objects can neither be shared with worker processes nor read twice: read them here.
                try:
                    items[i] = item.read()
                except decode_errors() as exc:
                    job.error(i, as_failure(exc, names[i]))
                    items[i] = b""
        bad = {e.index for e in job.errors}
        if kind == "video" and segment_seconds is not None:
            units = self._plan_windows(items, names, segment_seconds, job, bad)
        else:
            units = [Unit(i, names[i]) for i in range(len(items)) if i not in bad]
        if not units:
            return
        per_load = units_per_load(len(units), self.batch_size, self.num_workers,
                                  whole_files=segment_seconds is not None and kind == "audio")
        workers = min(self.num_workers, -(-len(units) // per_load))
        loader = DataLoader(
            UnitDataset(items, units, make_loader(kind, kwargs, segment_seconds)), batch_size=per_load,
            shuffle=False, num_workers=workers, collate_fn=collate, pin_memory=self._pin,
        )
        tower = tower_of(kind)
        queue = _RowQueue()
        batches = iter(loader)
        try:
            with self._bar(len(units), f"embed {kind}") as bar:
                for batch in batches:
                    for entry in batch.errors:
                        job.error(entry.unit.index, entry.error)
                    if batch.rows is not None:
                        queue.push(batch.rows, [
                            (e.unit.index, e.unit.name, seg)
                            for e in batch.good for seg in (e.segments or [None] * e.count)
                        ])
                    while len(queue) >= self.batch_size:
                        rows, metas = queue.pop(self.batch_size)
                        job.add(metas, self._encode(tower, rows))
                    bar.update(batch.size)
                while len(queue):
                    rows, metas = queue.pop(self.batch_size)
                    job.add(metas, self._encode(tower, rows))
        finally:
            del batches  # stops the worker processes now, also when an error propagates

    def _plan_windows(self, items: list[Any], names: list[str], seconds: float, job: _Collector,
                      bad: set[int]) -> list[Unit]:
        """Time windows of every video (read in the workers too: counting frames can mean demuxing)."""
        plan = _WindowPlan(items, names, seconds)
        workers = min(self.num_workers, len(items))
        units: list[Unit] = []
        for i, windows in enumerate(DataLoader(plan, batch_size=1, num_workers=workers, collate_fn=_first)):
            if i in bad:
                continue
            if isinstance(windows, Failure):
                job.error(i, windows)
                continue
            units.extend(Unit(i, names[i], w) for w in windows)
        return units


def _merge(parts: list[tuple[list[int], EmbeddingResult]], embed_dim: int, segmented: bool) -> EmbeddingResult:
    """Merge results of disjoint subsets of one input list (`index[j]`: input position of a part's item j)."""
    rows = [(index[local], part, r) for index, part in parts for r, local in enumerate(part.indices)]
    rows.sort(key=lambda row: row[0])  # stable: an input's segments stay in time order
    errors = sorted((ItemError(index[e.index], e.name, e.message) for index, part in parts for e in part.errors),
                    key=lambda e: e.index)
    vectors = np.stack([part.vectors[r] for _, part, r in rows]) if rows else np.zeros((0, embed_dim), np.float32)
    return EmbeddingResult(
        vectors=np.ascontiguousarray(vectors, dtype=np.float32),
        indices=[i for i, _, _ in rows],
        errors=errors,
        names=[part.names[r] for _, part, r in rows],
        segments=[part.segments[r] for _, part, r in rows if part.segments is not None] if segmented else None,
    )


def units_per_load(units: int, batch_size: int, workers: int, *, whole_files: bool = False) -> int:
    """How many units a decoding worker loads at a time: a batch, or fewer so that every worker gets some.

    Rows are re-batched to `batch_size` before the model, so this changes who decodes, not what is
    embedded: one long video's windows (or a short list of files) no longer all go to one worker.
    `whole_files`: one file's audio segments can be many rows, so such files load one at a time.
    """
    if whole_files:
        return 1
    return max(1, min(batch_size, -(-units // max(workers, 1))))
