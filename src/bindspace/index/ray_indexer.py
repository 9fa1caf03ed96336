"""Scale-out indexing with Ray Data: decoding, embedding and row writing on a Ray cluster.

The driver plans the run exactly as locally (walk, change detection, stale rows), then streams
the files to embed through `map_batches` with a pool of actors that each hold the model (one
GPU per actor where the cluster has GPUs). Where the store can take rows written elsewhere
(LanceDB: `Store.row_writer`), each actor writes its batch's rows as Lance data files straight
to the index's storage and sends back only row ids and the files' metadata; the driver commits
that metadata (no vectors pass through it). Otherwise the vectors come back and the driver
writes them. Either way the crash-safe protocol of a local run holds: a file's rows (all its
segments, always in one write) become visible in one commit, after which its stale rows are
deleted. Files must be readable at the same path on every node (a shared filesystem), and so
must the checkpoint; an object-store index is reached from every node with the storage options
and the driver's AWS_*/GOOGLE_*/AZURE_* variables, which the driver hands to its workers.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BindspaceError, first_line
from ..kinds import SEGMENTABLE
from .indexer import FileOutcome, FileTask, WrittenRows, embed_isolating, group_by_modality, rows_for
from .object_store import forwarded_env

log = logging.getLogger(__name__)


@dataclass
class ModelSpec:
    """How an actor gets its model: a preset name and checkpoint path, or weights in the object store."""

    name: str | None
    checkpoint: str | None
    modalities: list[str] | None = None
    device: str = "auto"  # auto: cuda when the actor was given a GPU
    dtype: str = "float32"
    batch_size: int = 32
    state_ref: Any = None  # ray.ObjectRef of (config, state_dict) for models that exist only in memory
    # How the actor builds the model when create_model alone cannot: int8 towers, whose builder lives in a
    # higher layer (export). A module-level function, so Ray pickles it by reference: the worker imports its
    # module (registering the builder) and calls it with (spec, device).
    build: Callable[[ModelSpec, str], Any] | None = None
    fingerprint: str | None = None  # the vectors' fingerprint the index holds: every actor's model must match

    @property
    def int8(self) -> bool:
        """ONNX Runtime int8 towers: CPU only, whatever GPUs the cluster has."""
        return self.dtype == INT8


INT8 = "int8"
class EmbedActor:
    """A Ray Data callable class: loads the model once, embeds batches of file tasks."""

    def __init__(self, spec: ModelSpec, segment_seconds: float | None, writer: Any = None) -> None:
        import torch

        from ..embedding import Embedder
        from ..model import create_model

        device = spec.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() and not spec.int8 else "cpu"
        if spec.build is not None:
            model = spec.build(spec, device)
        elif spec.int8:
            raise BindspaceError("dtype int8 on Ray needs ModelSpec.build (the CLI's int8_model) and a checkpoint")
        elif spec.state_ref is not None:
            import ray

            config, state = ray.get(spec.state_ref)
            model = create_model(config, modalities=spec.modalities)
            model.load_state_dict(state, strict=True)
            model = model.to(device=device, dtype=getattr(torch, spec.dtype)).eval()
        else:
            model = create_model(spec.name, checkpoint=spec.checkpoint, modalities=spec.modalities,
                                 device=device, dtype=getattr(torch, spec.dtype))
        check_fingerprint(spec, getattr(model, "fingerprint", None))
        self.embedder = Embedder(model, batch_size=spec.batch_size, progress=False)
        self.segment_seconds = segment_seconds
        self.embed_dim = int(model.embed_dim)
        self.writer = writer  # a Store.row_writer(): write rows here instead of returning vectors

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tasks = [
            FileTask(str(uri), str(mod), str(digest), int(size), float(mtime), tuple(str(old).split()))
            for uri, mod, digest, size, mtime, old in zip(batch["uri"], batch["modality"], batch["content_hash"],
                                                          batch["size"], batch["mtime"], batch["old_ids"])
        ]
        numbers = [int(n) for n in batch["task"]]
        by_uri = {t.uri: n for t, n in zip(tasks, numbers)}
        outcomes: list[FileOutcome] = []
        for modality, group in group_by_modality(tasks):
            seconds = self.segment_seconds if modality in SEGMENTABLE else None
            outcomes.extend(embed_isolating(self.embedder, modality, group, seconds))
        if self.writer is None:
            return _rows(outcomes, by_uri, self.embed_dim)
        return _written(outcomes, by_uri, self.writer)


def check_fingerprint(spec: ModelSpec, made: str | None) -> None:
    """Refuse, in one line, a worker whose model makes other vectors than the index holds.

    With int8 the fingerprint names the quantization recipe, which follows the CPU kind: a worker
    node of another kind than the driver would write vectors of another recipe into the same index.
    """
    if spec.fingerprint is None or made is None or made == spec.fingerprint:
        return
    import platform

    why = " (int8 towers are quantized for the CPU kind: run the workers on the driver's kind)" if spec.int8 else ""
    raise BindspaceError(f"the Ray worker on {platform.node()} makes vectors of model {made}, the index holds "
                         f"{spec.fingerprint}{why}")


def _written(outcomes: Sequence[FileOutcome], numbers: dict[str, int], writer: Any) -> dict[str, np.ndarray]:
    """Write the batch's new rows as one write; one output row per file: its row ids, or its error.

    Every file of the batch carries the write's key; the first row also carries its payload.
    """
    task: list[int] = []
    ids: list[str] = []
    error: list[str] = []
    items = []
    for out in outcomes:
        task.append(numbers[out.task.uri])
        if out.error is not None or out.vectors is None:
            ids.append("")
            error.append(out.error or "no embedding")
            continue
        file_ids, new_items = rows_for(out.task, out.vectors, out.segments, writer.info)
        ids.append(" ".join(file_ids))
        error.append("")
        items.extend(new_items)
    payload = writer.write(items)
    key = uuid.uuid4().hex
    return {
        "task": np.asarray(task, dtype=np.int64), "ids": np.asarray(ids, dtype=object),
        "error": np.asarray(error, dtype=object), "key": np.asarray([key] * len(task), dtype=object),
        "payload": np.asarray([payload] + [""] * (len(task) - 1), dtype=object),
        "first": np.asarray([True] + [False] * (len(task) - 1), dtype=bool),
    }


def _rows(outcomes: Sequence[FileOutcome], numbers: dict[str, int], dim: int) -> dict[str, np.ndarray]:
    """One output row per vector (segment), or one row carrying the error; `rows` = rows of that file."""
    task: list[int] = []
    count: list[int] = []
    vec: list[np.ndarray] = []
    start: list[float] = []
    end: list[float] = []
    error: list[str] = []
    for out in outcomes:
        n = numbers[out.task.uri]
        if out.error is not None or out.vectors is None:
            task.append(n)
            count.append(1)
            vec.append(np.zeros(dim, np.float32))
            start.append(np.nan)
            end.append(np.nan)
            error.append(out.error or "no embedding")
            continue
        segments = out.segments or [None] * len(out.vectors)
        for vector, segment in zip(out.vectors, segments):
            task.append(n)
            count.append(len(out.vectors))
            vec.append(vector)
            start.append(np.nan if segment is None else segment[0])
            end.append(np.nan if segment is None else segment[1])
            error.append("")
    return {
        "task": np.asarray(task, dtype=np.int64), "rows": np.asarray(count, dtype=np.int64),
        "vector": np.stack(vec).astype(np.float32) if vec else np.zeros((0, dim), np.float32),
        "start": np.asarray(start, dtype=np.float64), "end": np.asarray(end, dtype=np.float64),
        "error": np.asarray(error, dtype=object),
    }


class RayRunner:
    """Runs the embedding of an index run on Ray; use as `index_paths(..., runner=RayRunner(...))`."""

    def __init__(self, spec: ModelSpec, *, address: str | None = None, workers: int | None = None,
                 batch_files: int = 16, init_kwargs: dict[str, Any] | None = None, quiet: bool = True,
                 worker_writes: bool = True) -> None:
        try:
            import ray  # noqa: F401
            import ray.data  # noqa: F401
        except ImportError as err:
            raise BindspaceError(f"--ray needs the [ray] extra ({err.name} is missing): "
                                 "pip install 'bindspace[ray]'") from None
        self.spec = spec
        self.address = address
        self.workers = workers
        self.chunk_files = max(1, int(batch_files))
        self.init_kwargs = dict(init_kwargs or {})
        self.modalities = spec.modalities
        self.quiet = quiet
        self.worker_writes = worker_writes  # False: vectors come back and the driver writes them (as before)
        self.writer: Any = None
        self.bytes_received = 0  # what the cluster sent the driver (results), for benchmarks

    @property
    def skip_compaction(self) -> bool:
        """With worker writes the driver does not compact: that would pull every row through it again."""
        return self.writer is not None

    def bind(self, store: Any) -> None:
        """Called by `index_paths` once the store holds the model: workers write rows where the store can."""
        self.writer = store.row_writer() if self.worker_writes else None

    def _connect(self) -> Any:
        import ray
        import ray.data

        if self.quiet:  # our own progress bar and summary say what matters
            logging.getLogger("ray.data").setLevel(logging.WARNING)
            ray.data.DataContext.get_current().enable_progress_bars = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, **self.init_kwargs}
            env = forwarded_env()
            if env and "runtime_env" not in kwargs:  # workers on other nodes reach the same object store
                kwargs["runtime_env"] = {"env_vars": env}
            if self.address:
                kwargs["address"] = self.address
            try:
                ray.init(**kwargs)
            except Exception as exc:  # noqa: BLE001 - e.g. no cluster at the address
                raise BindspaceError(f"cannot start or reach Ray{f' at {self.address}' if self.address else ''}: "
                                     f"{first_line(exc)}"
                                     ) from None
        return ray

    def outcomes(self, tasks: Sequence[FileTask], segment_seconds: float | None) -> Iterator[FileOutcome]:
        """Outcomes as the cluster finishes files (any order), each file complete."""
        if not tasks:
            return
        ray = self._connect()
        resources = ray.cluster_resources()
        gpus = 1 if resources.get("GPU", 0) >= 1 and not self.spec.int8 else 0
        size = self.workers or max(1, int(resources.get("GPU", 0)) if gpus else int(resources.get("CPU", 1)) // 2 or 1)
        ordered = sorted(range(len(tasks)), key=lambda i: tasks[i].modality)  # homogeneous batches embed faster
        items = [
            {"task": i, "uri": tasks[i].uri, "modality": tasks[i].modality, "content_hash": tasks[i].content_hash,
             "size": tasks[i].size, "mtime": tasks[i].mtime, "old_ids": " ".join(tasks[i].old_ids)}
            for i in ordered
        ]
        ds = ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // self.chunk_files)))
        ds = ds.map_batches(
            EmbedActor, fn_constructor_args=(self.spec, segment_seconds, self.writer), batch_size=self.chunk_files,
            batch_format="numpy", concurrency=size, num_gpus=gpus, num_cpus=0 if gpus else 1,
        )
        batches = ds.iter_batches(batch_size=None, batch_format="numpy")
        try:
            if self.writer is None:
                yield from self._collect_vectors(tasks, batches)
            else:
                yield from self._collect_written(tasks, batches)
        except Exception as exc:
            ours = _our_error(exc)
            if ours is None:
                raise
            raise BindspaceError(first_line(ours)) from None  # not Ray's wrapping with the worker's traceback


    def _collect_vectors(self, tasks: Sequence[FileTask], batches: Any) -> Iterator[FileOutcome]:
        """Outcomes from vectors sent back row by row (segments of a file may arrive apart)."""
        pending: dict[int, list[tuple[np.ndarray, float, float]]] = {}
        for batch in batches:
            self.bytes_received += _nbytes(batch)
            for r in range(len(batch["task"])):
                n, expected = int(batch["task"][r]), int(batch["rows"][r])
                if batch["error"][r]:
                    yield FileOutcome(tasks[n], error=str(batch["error"][r]))
                    continue
                rows = pending.setdefault(n, [])
                rows.append((np.asarray(batch["vector"][r], dtype=np.float32), float(batch["start"][r]),
                             float(batch["end"][r])))
                if len(rows) == expected:  # the file is complete: only now may it be committed
                    del pending[n]
                    rows.sort(key=lambda row: (np.nan_to_num(row[1], nan=-1.0)))
                    segments = [None if np.isnan(s) else (s, e) for _, s, e in rows]
                    yield FileOutcome(tasks[n], vectors=np.stack([v for v, _, _ in rows]), segments=segments)
        for n in pending:  # cannot happen unless Ray lost rows; report rather than commit part of a file
            yield FileOutcome(tasks[n], error="incomplete result from the Ray cluster")

    def _collect_written(self, tasks: Sequence[FileTask], batches: Any) -> Iterator[FileOutcome]:
        """Outcomes of files whose rows workers wrote; a file is yielded once its write's payload is known."""
        writes: dict[str, WrittenRows] = {}
        waiting: dict[str, list[FileOutcome]] = {}
        seen: set[int] = set()
        for batch in batches:
            self.bytes_received += _nbytes(batch)
            for r in range(len(batch["task"])):
                n, key = int(batch["task"][r]), str(batch["key"][r])
                if n in seen:  # a retried batch's second result (Ray delivers each once; never commit twice)
                    continue
                seen.add(n)
                if batch["first"][r]:
                    writes[key] = WrittenRows(key, str(batch["payload"][r]))
                if batch["error"][r]:
                    yield FileOutcome(tasks[n], error=str(batch["error"][r]))
                    continue
                waiting.setdefault(key, []).append(FileOutcome(tasks[n], ids=tuple(str(batch["ids"][r]).split())))
            for key in [k for k in waiting if k in writes]:
                for out in waiting.pop(key):
                    out.written = writes[key]
                    yield out
        for outs in waiting.values():  # a write whose metadata never arrived: its rows are not committed
            for out in outs:
                yield FileOutcome(out.task, error="incomplete result from the Ray cluster")


def _nbytes(batch: dict[str, np.ndarray]) -> int:
    """Payload bytes of a result batch (strings counted by their UTF-8 length)."""
    total = 0
    for column in batch.values():
        if column.dtype == object:
            total += sum(len(str(v).encode()) for v in column)
        else:
            total += int(column.nbytes)
    return total


def spec_for_model(model: Any, *, batch_size: int = 32, dtype: str = "float32") -> ModelSpec:
    """A ModelSpec shipping an in-memory model's weights through the object store (tests, notebooks)."""
    import ray

    modalities = [str(m) for m in model.modalities]
    ref = ray.put((model.config, {k: v.detach().cpu() for k, v in model.state_dict().items()}))
    return ModelSpec(name=model.config.name, checkpoint=None, modalities=modalities, batch_size=batch_size,
                     dtype=dtype, state_ref=ref)


def _our_error(exc: BaseException) -> BindspaceError | None:
    """The BindspaceError a worker raised, found in the chain Ray wraps it in (cause, context, `.cause`)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        cause = getattr(current, "cause", None)
        if isinstance(current, BindspaceError) and not isinstance(cause, BaseException):
            return current
        todo += [current.__cause__, current.__context__, cause if isinstance(cause, BaseException) else None]
    return None
