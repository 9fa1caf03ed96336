"""Incremental, crash-safe indexing of files into a Store.

Change detection per file: rows whose (size, mtime) match the file are current; otherwise the
file's sha256 is compared with the rows' content hash (a touched but unchanged file only gets
its size/mtime updated); otherwise it is (re-)embedded. Files that vanished from under the
given roots are dropped.

Crash safety, with every store write an atomic commit:
- rows have deterministic ids (uri, content hash, segment), so a file's new rows never collide
  with rows of other content;
- files are committed in batches as "add the new rows, then delete that file's stale ids";
  a kill between the two leaves both versions, and the next run sees the current version's
  (size, mtime) match and deletes the other ids as stale;
- a file's rows (all its segments) are always added in one commit, never split;
- on start, rows with the same id (which only concurrent writers could create) are deduplicated.
So after kill -9 at any point and a rerun, each committed item is present exactly once and the
rest is embedded.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import BindspaceError
from ..integrity import sha256_file
from ..kinds import SEGMENTABLE, tower_of
from .detect import detect_modality, why_not_media
from .store import (
    MEDIA_MODALITIES,
    Item,
    ModelInfo,
    Store,
    item_id,
    modality_values,
    model_fingerprint,
    precision_of,
)
from .walk import Listing, walk_paths

log = logging.getLogger(__name__)

DEFAULT_COMMIT_FILES = 32
ANN_AUTO_ROWS = 150_000  # above this many rows (and no index yet) `ann=None` builds an ANN index
# Testing knob for the crash tests: seconds to sleep between a batch's add and its delete.
ENV_COMMIT_PAUSE = "BINDSPACE_INDEX_COMMIT_PAUSE"
NOT_MEDIA = "not a recognised media file"
# LanceDB warns in every forked child that its runtime was reset there ("fork support is
# experimental ... deadlock"). Our decoding workers are forked only while no store call is
# running (every store call returns before the next batch is embedded) and never touch LanceDB,
# so the reset runtime is never used and cannot deadlock. The warning is silenced for the forks
# made inside `quiet_fork_warning` only, by marking it as already given (LanceDB's own once-per-
# process flag) for that span: unlike `warnings.catch_warnings`, this leaves the process-wide
# warning filters alone, which other threads (the server's) may be changing at the same time.
# Spawned workers would need no silencing but would re-import torch for every batch.
# pylance (which reads the store) warns before every fork ("lance is not fork-safe"), from a hook
# that calls its module's `warnings.warn`; for the same reasons, inside the block that name is a
# stand-in that drops this one message and passes every other warning on.
_FORK_FLAG = ("lancedb.background_loop", "_FORK_WARNED")
_LANCE_FORK_MESSAGE = "lance is not fork-safe"


class _WarningsWithoutLanceFork:
    """`warnings` for pylance's module while decoding workers are forked: its fork message dropped."""

    def __getattr__(self, name: str) -> Any:
        return getattr(warnings, name)

    @staticmethod
    def warn(message: Any, *args: Any, **kwargs: Any) -> None:
        if not str(message).startswith(_LANCE_FORK_MESSAGE):
            warnings.warn(message, *args, **kwargs)


@contextlib.contextmanager
def quiet_fork_warning() -> Iterator[None]:
    """No LanceDB or pylance fork warning from decoding workers forked inside this block (see above)."""
    with contextlib.ExitStack() as stack:
        lancedb_loop = sys.modules.get(_FORK_FLAG[0])
        if lancedb_loop is not None and hasattr(lancedb_loop, _FORK_FLAG[1]):  # else not loaded, or changed
            stack.enter_context(_set_attribute(lancedb_loop, _FORK_FLAG[1], True))
        lance = sys.modules.get("lance")
        if lance is not None and getattr(lance, "warnings", None) is warnings:
            stack.enter_context(_set_attribute(lance, "warnings", _WarningsWithoutLanceFork()))
        yield


@contextlib.contextmanager
def _set_attribute(owner: Any, name: str, value: Any) -> Iterator[None]:
    before = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, before)


@dataclass
class IndexSummary:
    """What a run did, counted in files; `skipped` lists (path, reason)."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    rows_added: int = 0
    rows_removed: int = 0
    duplicates_removed: int = 0
    seconds: float = 0.0


@dataclass
class FileEvent:
    """Passed to `on_item` once per file when its fate is committed."""

    uri: str
    status: str  # added | updated | removed | unchanged | skipped
    modality: str | None = None
    rows: int = 0
    reason: str | None = None


@dataclass
class FileTask:
    """A file to embed: its identity now, and the ids of its rows that become stale once it is written."""

    uri: str
    modality: str
    content_hash: str
    size: int
    mtime: float
    old_ids: tuple[str, ...] = ()

    @property
    def is_update(self) -> bool:
        return bool(self.old_ids)


@dataclass(frozen=True)
class WrittenRows:
    """New rows a worker already wrote to storage (`Store.row_writer`); committed once, by `key`."""

    key: str
    payload: str  # what `Store.commit_written` takes ("" when the write held no new rows)


@dataclass
class FileOutcome:
    """A file embedded (vectors (rows, D) and per-row segments), written by a worker (ids, written), or failed."""

    task: FileTask
    vectors: np.ndarray | None = None
    segments: list[tuple[float, float] | None] | None = None
    error: str | None = None
    ids: tuple[str, ...] | None = None  # with `written`: every row id of the file, kept ones included
    written: WrittenRows | None = None  # shared by the files of one worker write


def rows_for(task: FileTask, vectors: np.ndarray, segments: Sequence[tuple[float, float] | None] | None,
             info: ModelInfo) -> tuple[list[str], list[Item]]:
    """A file's row ids (one per vector) and the Items to add: those whose id is not stored already."""
    old = set(task.old_ids)
    ids: list[str] = []
    new_items: list[Item] = []
    for vector, segment in zip(vectors, segments or [None] * len(vectors)):
        rid = item_id(task.uri, task.content_hash, segment, task.modality)
        ids.append(rid)
        if rid in old:
            continue  # the same (file, content, segment) is already stored
        new_items.append(Item(
            id=rid, uri=task.uri, modality=task.modality, content_hash=task.content_hash, size=task.size,
            mtime=task.mtime, segment_start=None if segment is None else float(segment[0]),
            segment_end=None if segment is None else float(segment[1]), model=info.name,
            model_checksum=info.checksum, vector=np.asarray(vector, dtype=np.float32),
        ))
    return ids, new_items


class LocalRunner:
    """Embeds tasks in this process with an Embedder, one modality and `chunk_files` files at a time."""

    def __init__(self, embedder: Any, chunk_files: int = DEFAULT_COMMIT_FILES) -> None:
        self.embedder = embedder
        self.chunk_files = max(1, int(chunk_files))

    def outcomes(self, tasks: Sequence[FileTask], segment_seconds: float | None) -> Iterator[FileOutcome]:
        """One outcome per task, in batches; a batch that fails to decode as a whole is retried file by file."""
        for modality, group in group_by_modality(tasks):
            seconds = segment_seconds if modality in SEGMENTABLE else None
            for start in range(0, len(group), self.chunk_files):
                chunk = group[start : start + self.chunk_files]
                yield from embed_isolating(self.embedder, modality, chunk, seconds)


def embed_isolating(embedder: Any, modality: str, tasks: Sequence[FileTask],
                    seconds: float | None) -> list[FileOutcome]:
    """`embed_tasks`, retried file by file when the batch fails on an undecodable input (RETRYABLE).

    Only decode errors become skipped files; any other exception propagates with its cause.
    """
    # What a whole batch may fail with and still be retried file by file: an input that cannot be
    # decoded. Anything else (a bug, out of memory, a model error) stops the run with its cause;
    # recording it as "skipped files" would hide it and drop those files from the index. Imported
    # here, as the decoders (torch, PyAV, Pillow) are: a run with nothing to embed never loads them.
    from ..embedding.loading import DECODE_ERRORS as RETRYABLE
    from ..embedding.loading import as_failure

    try:
        with quiet_fork_warning():
            return embed_tasks(embedder, modality, tasks, seconds)
    except RETRYABLE:
        log.debug("batch failed to decode, retrying file by file", exc_info=True)
    out: list[FileOutcome] = []
    for task in tasks:
        try:
            with quiet_fork_warning():
                out.extend(embed_tasks(embedder, modality, [task], seconds))
        except RETRYABLE as exc:
            out.append(FileOutcome(task, error=as_failure(exc, task.uri).problem))
    return out


def embed_tasks(embedder: Any, modality: str, tasks: Sequence[FileTask], seconds: float | None) -> list[FileOutcome]:
    """Embed files of one modality; every task gets an outcome (shared by the local and Ray runners)."""
    result = embedder.embed(modality, [t.uri for t in tasks], on_error="skip", segment_seconds=seconds,
                            names=[t.uri for t in tasks])
    rows: dict[int, list[int]] = {}
    for r, index in enumerate(result.indices):
        rows.setdefault(index, []).append(r)
    errors = {e.index: e.message for e in result.errors}
    out = []
    for i, task in enumerate(tasks):
        if i in rows:
            sel = rows[i]
            segments = [result.segments[r] for r in sel] if result.segments is not None else [None] * len(sel)
            out.append(FileOutcome(task, vectors=result.vectors[sel], segments=segments))
        else:
            out.append(FileOutcome(task, error=errors.get(i, "no embedding produced (empty media?)")))
    return out


def group_by_modality(tasks: Sequence[FileTask]) -> list[tuple[str, list[FileTask]]]:
    groups: dict[str, list[FileTask]] = {}
    for task in tasks:
        groups.setdefault(task.modality, []).append(task)
    return [(m, groups[m]) for m in MEDIA_MODALITIES if m in groups]


def model_info_for(model: Any, checkpoint: str | os.PathLike[str] | None = None) -> ModelInfo:
    """The ModelInfo a model's vectors are recorded under (fingerprint from `checkpoint` when given)."""
    name = getattr(getattr(model, "config", None), "name", None) or "unknown"
    return ModelInfo(name=name, checksum=model_fingerprint(model, checkpoint), embed_dim=int(model.embed_dim),
                     checkpoint=None if checkpoint is None else os.path.abspath(os.fspath(checkpoint)),
                     precision=precision_of(model))


def _wanted(modalities: Iterable[str] | None) -> tuple[str, ...]:
    if modalities is None:
        return MEDIA_MODALITIES
    out: list[str] = []
    for m in modalities:
        out.extend(modality_values(m))
    return tuple(dict.fromkeys(out))


def _segments_match(rows: Sequence[Item], modality: str, seconds: float | None) -> bool:
    """Do existing rows use the segmenting now asked for (audio/video only)?"""
    if modality not in SEGMENTABLE:
        return True
    segmented = [r for r in rows if r.segment_start is not None]
    if seconds is None:
        return not segmented
    if len(segmented) != len(rows):
        return False
    lengths = sorted((r.segment_start, r.segment_end - r.segment_start) for r in segmented)  # type: ignore[operator]
    if any(length > seconds + 1e-3 for _, length in lengths):
        return False
    return len(lengths) == 1 or abs(lengths[0][1] - seconds) <= 1e-3


class _Run:
    """State of one `index_paths` call."""

    def __init__(self, store: Store, info: ModelInfo, summary: IndexSummary,
                 on_item: Callable[[FileEvent], None] | None) -> None:
        self.store = store
        self.info = info
        self.summary = summary
        self.on_item = on_item
        self.pause = float(os.environ.get(ENV_COMMIT_PAUSE, "0") or 0)
        self.committed: set[str] = set()  # keys of worker writes committed in this run

    def emit(self, event: FileEvent) -> None:
        if self.on_item is not None:
            self.on_item(event)

    def skip(self, uri: str, reason: str, modality: str | None = None) -> None:
        self.summary.skipped.append((uri, reason))
        self.emit(FileEvent(uri, "skipped", modality, reason=reason))

    def commit(self, outcomes: Sequence[FileOutcome]) -> None:
        """Add the new rows of a batch of files in one commit, then delete their stale rows."""
        new_items: list[Item] = []
        writes: dict[str, str] = {}
        stale: list[str] = []
        events: list[FileEvent] = []
        reused: set[str] = set()
        for out in outcomes:
            task = out.task
            old = set(task.old_ids)
            if out.error is not None or (out.vectors is None and out.written is None):
                stale.extend(old)  # the file changed and cannot be read: its old vectors are stale too
                self.summary.skipped.append((task.uri, out.error or "no embedding"))
                events.append(FileEvent(task.uri, "skipped", task.modality, reason=out.error))
                continue
            if out.written is not None:  # a worker wrote the rows: commit its write (once, it may hold many files)
                ids = list(out.ids or ())
                if out.written.key not in self.committed:
                    writes[out.written.key] = out.written.payload
                self.summary.rows_added += sum(rid not in old for rid in ids)
            else:
                assert out.vectors is not None
                ids, items = rows_for(task, out.vectors, out.segments, self.info)
                new_items.extend(items)
            if any(rid in old for rid in ids):
                reused.add(task.uri)
            stale.extend(old - set(ids))
            status = "updated" if task.is_update else "added"
            events.append(FileEvent(task.uri, status, task.modality, rows=len(ids)))
        if writes:
            self.store.commit_written([p for p in writes.values() if p])
            self.committed.update(writes)
        if new_items:
            self.store.add(new_items)
            self.summary.rows_added += len(new_items)
        if self.pause and (new_items or writes):
            time.sleep(self.pause)
        if stale:
            self.summary.rows_removed += self.store.delete(stale)
        for out in outcomes:  # kept rows get the file's current size and mtime
            if out.task.uri in reused:
                self.store.update_stat(out.task.uri, out.task.content_hash, out.task.size, out.task.mtime)
        for event in events:
            if event.status == "added":
                self.summary.added += 1
            elif event.status == "updated":
                self.summary.updated += 1
            self.emit(event)


def index_paths(
    paths: Iterable[str | os.PathLike[str]],
    store: Store,
    embedder: Any = None,
    *,
    modalities: Iterable[str] | None = None,
    segment_seconds: float | None = None,
    progress: bool | Callable[[int, int], None] | None = None,
    on_item: Callable[[FileEvent], None] | None = None,
    model_info: ModelInfo | None = None,
    commit_files: int | None = None,
    runner: Any = None,
    ann: bool | None = None,
) -> IndexSummary:
    """Bring the store up to date with the files under `paths`: embed new and changed files, drop vanished ones.

    `embedder` is a `bindspace.Embedder`; `model_info` defaults to its model's name and
    weights fingerprint (pass one built with the checkpoint path when the model holds only some
    towers). `modalities` limits what is indexed ("image", "video", "audio", "depth", "thermal",
    "imu", "vision"); `segment_seconds` embeds audio and video in windows of that many seconds.
    `progress`: True/False forces a bar on stderr, None shows it when stderr is a terminal, a
    callable gets (files done, files to embed). `commit_files` files are committed at a time.
    `runner` replaces the local embedding loop (see `ray_indexer.RayRunner`); its `bind(store)`,
    if any, is called once the store holds the model. `ann`: build or
    refresh an ANN index at the end (None: only once the table exceeds ANN_AUTO_ROWS rows).
    Bad files never stop the run: they are listed in `summary.skipped` with a reason.
    """
    started = time.monotonic()
    if segment_seconds is not None and not float(segment_seconds) > 0:
        raise BindspaceError(f"segment_seconds must be > 0, got {segment_seconds}")
    if runner is None:
        if embedder is None:
            raise BindspaceError("index_paths needs an embedder (or a runner)")
        runner = LocalRunner(embedder, commit_files or int(getattr(embedder, "batch_size", DEFAULT_COMMIT_FILES)))
    if model_info is None:
        model = getattr(embedder, "model", None)
        if model is None:
            raise BindspaceError("index_paths needs model_info= when no embedder with a model is given")
        model_info = model_info_for(model)
    wanted = _wanted([modalities] if isinstance(modalities, str) else modalities)
    own = getattr(store, "uri", None)  # the index's own files are never media, even when it lies under a path
    listing = walk_paths(paths, skip=[own] if isinstance(own, str) and "://" not in own else [])
    store.bind_model(model_info)  # so does another model
    towers = _towers(embedder, runner)
    bind = getattr(runner, "bind", None)
    if bind is not None:  # the runner may have its workers write rows straight to the store
        bind(store)
    summary = IndexSummary()
    run = _Run(store, model_info, summary, on_item)

    summary.duplicates_removed = store.dedupe()
    for folder, reason in listing.unreadable:
        run.skip(folder, f"folder not readable ({reason})")
    existing = store.items_by_uri()
    _drop_vanished(run, listing, existing)
    tasks = _plan(run, listing, existing, wanted, towers, segment_seconds)

    bar = _progress(progress, len(tasks))
    batch: list[FileOutcome] = []
    limit = commit_files or int(getattr(runner, "chunk_files", DEFAULT_COMMIT_FILES))
    done = 0
    try:
        for outcome in runner.outcomes(tasks, segment_seconds):
            batch.append(outcome)
            if len(batch) >= limit:
                run.commit(batch)
                batch = []
            done += 1
            bar(done)
        if batch:
            run.commit(batch)
    finally:
        bar(None)
    changed = summary.added or summary.updated or summary.removed or summary.rows_removed
    if changed and not getattr(runner, "skip_compaction", False):
        store.optimize()
    _maintain_ann(store, ann)
    summary.seconds = time.monotonic() - started
    return summary


def _towers(embedder: Any, runner: Any) -> set[str] | None:
    """Towers the model holds (None: unknown, assume all)."""
    model = getattr(embedder, "model", None)
    mods = getattr(model, "modalities", None) or getattr(runner, "modalities", None)
    return None if mods is None else {str(m) for m in mods}


def _drop_vanished(run: _Run, listing: Listing, existing: dict[str, list[Item]]) -> None:
    present = set(listing.files)
    unreadable = [folder for folder, _ in listing.unreadable]
    gone = [
        uri for uri in existing
        if uri not in present and listing.covers(uri) and not os.path.exists(uri)
        and not any(uri.startswith(folder.rstrip(os.sep) + os.sep) for folder in unreadable)
    ]
    for i in range(0, len(gone), 200):
        chunk = gone[i : i + 200]
        ids = [item.id for uri in chunk for item in existing[uri]]
        run.summary.rows_removed += run.store.delete(ids)
        for uri in chunk:
            run.summary.removed += 1
            run.emit(FileEvent(uri, "removed", existing[uri][0].modality, rows=len(existing[uri])))


def _plan(run: _Run, listing: Listing, existing: dict[str, list[Item]], wanted: tuple[str, ...],
          towers: set[str] | None, segment_seconds: float | None) -> list[FileTask]:
    """Classify every listed file: unchanged (maybe touched), skipped, or a task to embed."""
    tasks: list[FileTask] = []
    for uri in listing.files:
        modality = detect_modality(uri)
        if modality is None:
            run.skip(uri, why_not_media(uri) or NOT_MEDIA)  # an array that is no map or recording says why
            continue
        if modality not in wanted:
            continue
        rows = existing.get(uri, [])
        tower = str(tower_of(modality))
        if towers is not None and tower not in towers:
            run.skip(uri, f"the loaded model has no {tower} tower", modality)
            continue
        try:
            stat = os.stat(uri)
        except OSError as exc:
            run.skip(uri, f"cannot stat ({exc.strerror})", modality)
            continue
        if stat.st_size == 0:
            if rows:
                run.summary.rows_removed += run.store.delete([r.id for r in rows])
            run.skip(uri, "empty file", modality)
            continue
        try:
            current, digest = _current_rows(uri, rows, stat, modality, segment_seconds)
            if current is None and digest is None:
                digest = sha256_file(uri)
        except OSError as exc:
            run.skip(uri, f"cannot read ({exc.strerror or exc})", modality)
            continue
        if current is not None:
            if digest is not None:  # touched, content unchanged: record the new size and mtime
                run.store.update_stat(uri, current, int(stat.st_size), float(stat.st_mtime))
            stale = [r.id for r in rows if r.content_hash != current]
            if stale:  # another version's rows, left by a run killed between its add and delete
                run.summary.rows_removed += run.store.delete(stale)
            run.summary.unchanged += 1
            run.emit(FileEvent(uri, "unchanged", modality, rows=len(rows) - len(stale)))
            continue
        assert digest is not None
        tasks.append(FileTask(uri, modality, digest, int(stat.st_size), float(stat.st_mtime),
                              tuple(r.id for r in rows)))
    return tasks


def _current_rows(uri: str, rows: list[Item], stat: os.stat_result, modality: str,
                  segment_seconds: float | None) -> tuple[str | None, str | None]:
    """(hash of the rows still valid for the file or None, the file's hash if it had to be computed)."""
    if not rows:
        return None, None
    groups: dict[str, list[Item]] = {}
    for row in rows:
        groups.setdefault(row.content_hash, []).append(row)
    for digest, group in groups.items():
        if all(r.size == stat.st_size and r.mtime == stat.st_mtime for r in group):
            if _rows_fit(group, modality, segment_seconds):
                return digest, None
            return None, digest  # same content, other segmenting or modality: re-embed
    digest = sha256_file(uri)
    same = groups.get(digest)
    if same is None or not _rows_fit(same, modality, segment_seconds):
        return None, digest
    return digest, digest


def _rows_fit(rows: Sequence[Item], modality: str, segment_seconds: float | None) -> bool:
    """Were these rows made the way this run would make them (same modality, same segmenting)?"""
    return all(r.modality == modality for r in rows) and _segments_match(rows, modality, segment_seconds)


def _progress(progress: bool | Callable[[int, int], None] | None, total: int) -> Callable[[int | None], None]:
    """A function called with files done (None at the end)."""
    if callable(progress):
        return lambda done: progress(done, total) if done is not None else None
    enabled = sys.stderr.isatty() if progress is None else bool(progress)
    if not enabled or total == 0:
        return lambda done: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="indexing", unit="file", file=sys.stderr, dynamic_ncols=True)

    def update(done: int | None) -> None:
        if done is None:
            bar.close()
        else:
            bar.update(done - bar.n)

    return update


def _maintain_ann(store: Store, ann: bool | None) -> None:
    """Build the ANN index when asked (or when the table got large); new rows join it on optimize()."""
    has_index = getattr(store, "has_ann_index", lambda: False)()
    if ann is False or has_index:
        return
    rows = store.count()
    if ann is True or rows >= ANN_AUTO_ROWS:
        if rows < 256:
            log.info("%d rows: too few for an ANN index, exact search is used", rows)
            return
        store.create_ann_index()
