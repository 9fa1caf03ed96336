"""The server's limits and batching knobs, in one place."""
from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may ask, and how the model is batched."""

    max_body_bytes: int = 64 * MIB  # whole request body (base64 inflates media by 4/3)
    max_inflight_bytes: int = 256 * MIB  # bodies of all requests together, held until answered (429 above)
    max_item_bytes: int = 32 * MIB  # one decoded media item
    max_items: int = 64  # items in one embed/vectorize request
    max_text_chars: int = 10_000  # the model reads 77 tokens; longer texts are a mistake or an attack
    max_query_parts: int = 8
    request_timeout_s: float = 60.0
    max_batch: int = 8  # fixed batches pad text calls (all calls on a GPU) to this: 8 keeps a lone text cheap
    max_wait_ms: float = 5.0
    fixed_batches: bool = True  # every model call of a shape runs the same item count (pipeline.call_size)
    max_pending: int = 4096  # items queued for the model before new requests get 429
    decode_threads: int = 2
    max_jobs: int = 64  # indexing job records kept (the oldest finished ones are dropped first)
    job_ttl_s: float = 3600.0  # a finished job's record is forgotten this long after it ended
