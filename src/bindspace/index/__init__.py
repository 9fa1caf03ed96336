"""Search across media: a vector store (LanceDB), an incremental crash-safe indexer, modality detection.

The names below load on first use: `bindspace search` reads the store without the indexer, which
imports the embedder and torch (seconds at start-up).
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BindspaceError

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

_HOMES = {
    "detect_modality": ".detect",
    "FileEvent": ".indexer", "IndexSummary": ".indexer", "index_paths": ".indexer", "model_info_for": ".indexer",
    "Hit": ".store", "Item": ".store", "ModelInfo": ".store", "Store": ".store", "model_fingerprint": ".store",
}

__all__ = [
    "Store", "Item", "Hit", "ModelInfo", "open_store", "model_fingerprint", "model_info_for",
    "index_paths", "IndexSummary", "FileEvent", "detect_modality",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(uri: str | os.PathLike[str], *, create: bool = False,
               storage_options: dict[str, str] | None = None) -> Store:
    """Open the LanceDB index at `uri` (a local directory or a LanceDB URI such as s3://bucket/path).

    With create=False a missing index is an error (a typo must not search an empty index).
    `storage_options` configure an object store (endpoint, region, allow_http, credentials);
    what they leave out comes from the environment (AWS_ENDPOINT, AWS_ACCESS_KEY_ID, ...).
    """
    try:
        from .lance_store import LanceStore
    except ImportError as err:
        raise BindspaceError(f"the index needs the [index] extra ({err.name} is missing): "
                             "pip install 'bindspace[index]'") from None
    text = os.fspath(uri)
    if "://" not in text:
        path = Path(text).expanduser()
        if path.exists() and not path.is_dir():
            raise BindspaceError(f"{path}: not a directory (an index is a directory)")
        if not create and not path.is_dir():
            raise BindspaceError(f"{path}: no index here (build one with `bindspace index PATH --db {path}`)")
        text = str(path.resolve())
    return LanceStore.open(text, create=create, storage_options=storage_options)
