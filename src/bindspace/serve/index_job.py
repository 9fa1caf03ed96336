"""POST /v1/index's background work: index paths into the served store with the served model."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .jobs import MAX_REPORTED_SKIPS, ModelThreadModel
from .state import ServeState

if TYPE_CHECKING:
    from ..index.store import ModelInfo


def run_index_job(state: ServeState, job_id: str, paths: Sequence[str], modalities: Sequence[str] | None,
                  segment_seconds: float | None, model_info: ModelInfo | None) -> None:
    """Index `paths` into the server's store (in a background thread); the outcome goes to the job table."""
    from ..embedding import Embedder
    from ..errors import BindspaceError
    from ..index.indexer import index_paths

    assert state.store is not None  # POST /v1/index refuses a server without an index
    try:
        embedder = Embedder(ModelThreadModel(state.model, state.batcher), batch_size=state.limits.max_batch)
        summary = index_paths(paths, state.store, embedder, modalities=modalities, segment_seconds=segment_seconds,
                              progress=False, model_info=model_info)
        skipped = list(summary.skipped)
        counts = {name: int(getattr(summary, name)) for name in ("added", "updated", "removed", "unchanged")}
        state.jobs.finish(job_id, status="done", skipped=len(skipped),
                          skipped_files=[f"{path}: {reason}" for path, reason in skipped[:MAX_REPORTED_SKIPS]],
                          **counts)
    except BindspaceError as err:
        state.jobs.finish(job_id, status="failed", error=str(err))
    except Exception as err:  # the job must record its failure; the server keeps serving
        state.jobs.finish(job_id, status="failed", error=f"internal error ({type(err).__name__}: {err})")
