"""Background indexing jobs: a bounded, expiring job table, and a model handle that runs on the model thread."""
from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..fsio import real_path_inside
from .batcher import MicroBatcher
from .errors import ApiError

MAX_REPORTED_SKIPS = 100


class JobTable:
    """Job records by id: at most `max_jobs`, finished ones forgotten `ttl_s` seconds after they end.

    A full table first drops its oldest finished jobs; when every record is a running job,
    a new one is refused (only one runs at a time anyway).
    """

    def __init__(self, max_jobs: int = 64, ttl_s: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_jobs = max(1, int(max_jobs))
        self.ttl_s = float(ttl_s)
        self._clock = clock
        self._jobs: dict[str, dict[str, Any]] = {}
        self._ended: dict[str, float] = {}
        self._lock = threading.Lock()

    def start(self, paths: Sequence[str]) -> dict[str, Any]:
        """A new running job record (409 while another job runs)."""
        with self._lock:
            self._expire()
            if any(job["status"] == "running" for job in self._jobs.values()):
                raise ApiError("an indexing job is already running; wait for it to finish", status=409, kind="busy")
            while len(self._jobs) >= self.max_jobs:
                oldest = min(self._ended, key=self._ended.__getitem__)
                self._forget(oldest)
            job: dict[str, Any] = {"id": uuid.uuid4().hex[:12], "status": "running", "paths": list(paths)}
            self._jobs[job["id"]] = job
            return dict(job)

    def finish(self, job_id: str, **fields: Any) -> None:
        """Record a job's outcome (`status` "done" or "failed" and its counts) and start its expiry clock."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                job.update(fields)
                self._ended[job_id] = self._clock()

    def get(self, job_id: str) -> dict[str, Any] | None:
        """A copy of a job's record, or None when unknown or expired."""
        with self._lock:
            self._expire()
            job = self._jobs.get(job_id)
            return dict(job) if job is not None else None

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._jobs)

    def _expire(self) -> None:
        now = self._clock()
        for job_id in [j for j, ended in self._ended.items() if now - ended >= self.ttl_s]:
            self._forget(job_id)

    def _forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)
        self._ended.pop(job_id, None)


class ModelThreadModel:
    """The served model as an `Embedder` sees it, with every call run on the batcher's model thread.

    Index jobs and requests then never run the model at the same time (no doubled memory, no
    thread contention), and the shared module is never switched to train mode: the served
    model stays in eval mode for its whole life, so `eval()`/`train()` here change nothing.
    """

    def __init__(self, model: Any, batcher: MicroBatcher) -> None:
        self._model = model
        self._batcher = batcher

    training = False

    def eval(self) -> ModelThreadModel:
        """No-op: the served model is always in eval mode."""
        return self

    def train(self, mode: bool = True) -> ModelThreadModel:
        """No-op: a served model is never trained."""
        return self

    def encode(self, modality: Any, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """`model.encode`, run on the model thread (this thread waits for it)."""

        def call() -> torch.Tensor:
            with torch.inference_mode():
                return self._model.encode(modality, x, **kwargs)

        return self._batcher.run_in_model_thread(call).result()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def check_index_paths(paths: Sequence[str], roots: Sequence[str], store: Any) -> list[str]:
    """The requested paths, resolved; each must lie under an --index-root, or (without roots) in the index.

    Without roots, a path is allowed when it is a folder that already holds indexed files, or a
    file in such a folder: an HTTP client can refresh what an admin indexed, never widen it.
    """
    from ..errors import InputError

    resolved = []
    for path in paths:
        if not os.path.exists(path):
            raise InputError(path, "no such file or directory on the server")
        real = os.path.realpath(path)
        if roots:
            allowed = real_path_inside(real, roots) is not None
            where = "the server's --index-root folders"
        else:
            folders = {os.path.dirname(os.path.realpath(uri)) for uri in _local_uris(store)}
            allowed = real in folders or (os.path.isfile(real) and os.path.dirname(real) in folders)
            where = "folders already in the index (start the server with --index-root to allow others)"
        if not allowed:
            raise ApiError(f"{path}: not inside {where}", status=403, kind="forbidden_path")
        resolved.append(real)
    return resolved


def _local_uris(store: Any) -> list[str]:
    from .media import local_path

    return [path for uri in store.items_by_uri() if (path := local_path(str(uri))) is not None]
