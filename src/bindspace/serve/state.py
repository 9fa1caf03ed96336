"""The server's shared state (`ServeState`, on `app.state.bindspace`) and the one way routes read it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from ..index.store import Store
from ..model.contract import EmbeddingModel
from .batcher import MicroBatcher
from .jobs import JobTable
from .limits import Limits
from .metrics import ServerMetrics
from .pipeline import Pipeline


@dataclass
class ServeState:
    """Everything the routes share, stored on `app.state.bindspace`."""

    model: EmbeddingModel  # or a stand-in with its contract (tests wrap it to count calls)
    store: Store | None  # None: the server only embeds
    api_key: str | None  # the write key (also accepted for reads)
    limits: Limits
    model_name: str
    model_checksum: str | None
    model_checkpoint: str | None
    batcher: MicroBatcher
    pipeline: Pipeline
    metrics: ServerMetrics
    jobs: JobTable
    read_key: str | None = None
    index_roots: tuple[str, ...] = ()
    imu_layout: str = "reshape"  # how /vectorize lays out IMU CSV columns (see weaviate_inputs)
    ready: bool = False
    not_ready_reason: str | None = "starting"
    thumbnails: dict = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)  # options of optional routers


def serve_state(request: Request) -> ServeState:
    """The state of the app serving `request` (typed, so mypy checks what routes read from it)."""
    state: ServeState = request.app.state.bindspace
    return state
