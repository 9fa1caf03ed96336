"""Search across media: a vector store (LanceDB), an incremental crash-safe indexer, modality detection."""
from __future__ import annotations

from .detect import detect_modality
from .indexer import FileEvent, IndexSummary, index_paths, model_info_for
from .store import Hit, Item, ModelInfo, Store, model_fingerprint, open_store

__all__ = [
    "Store", "Item", "Hit", "ModelInfo", "open_store", "model_fingerprint", "model_info_for",
    "index_paths", "IndexSummary", "FileEvent", "detect_modality",
]
