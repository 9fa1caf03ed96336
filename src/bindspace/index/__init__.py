"""Search across media: a vector store (LanceDB), an incremental crash-safe indexer, modality detection.

The names below load on first use: `bindspace search` reads the store without the indexer, which
imports the embedder and torch (seconds at start-up).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .detect import detect_modality as detect_modality
    from .indexer import FileEvent as FileEvent
    from .indexer import IndexSummary as IndexSummary
    from .indexer import index_paths as index_paths
    from .indexer import model_info_for as model_info_for
    from .store import Hit as Hit
    from .store import Item as Item
    from .store import ModelInfo as ModelInfo
    from .store import Store as Store
    from .store import model_fingerprint as model_fingerprint
    from .store import open_store as open_store

_HOMES = {
    "detect_modality": ".detect",
    "FileEvent": ".indexer", "IndexSummary": ".indexer", "index_paths": ".indexer", "model_info_for": ".indexer",
    "Hit": ".store", "Item": ".store", "ModelInfo": ".store", "Store": ".store", "model_fingerprint": ".store",
    "open_store": ".store",
}

__all__ = [
    "Store", "Item", "Hit", "ModelInfo", "open_store", "model_fingerprint", "model_info_for",
    "index_paths", "IndexSummary", "FileEvent", "detect_modality",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
