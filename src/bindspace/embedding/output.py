"""Embedding files: .npy (vectors only), .parquet and .jsonl (name and optional segment beside each vector).

Every writer is atomic (`bindspace.fsio.atomic_open`): it writes a hidden temporary file beside
the target, fsyncs it and renames it into place, so a failed or interrupted run never leaves a
partial output behind.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BindspaceError
from ..fsio import atomic_open

FORMATS = {".npy": "npy", ".parquet": "parquet", ".jsonl": "jsonl"}


class OutputFormatError(BindspaceError, ValueError):
    """An output path whose suffix names no supported format (a usage error for the CLI)."""


@dataclass
class EmbeddingTable:
    """Vectors (N, D) float32 with, per row, the input index, its name and an optional (start, end) segment."""

    vectors: np.ndarray
    names: list[str] | None = None
    indices: list[int] | None = None
    segments: list[tuple[float, float]] | None = None


def output_format(path: str | os.PathLike[str]) -> str:
    """"npy", "parquet" or "jsonl" from the path's suffix; OutputFormatError otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise OutputFormatError(f"{os.fspath(path)}: unknown output format {suffix or '(no suffix)'!r} "
                                f"(use {', '.join(FORMATS)})")
    return FORMATS[suffix]


def check_output(path: str | os.PathLike[str]) -> str:
    """Fail early, before any work, if `path` cannot be written in its format; returns the format."""
    fmt = output_format(path)
    if fmt == "parquet":
        _pyarrow()
    return fmt


def write_embeddings(path: str | os.PathLike[str], table: EmbeddingTable) -> Path:
    """Write `table` in the format named by the suffix of `path`, atomically."""
    fmt = check_output(path)
    vectors = np.ascontiguousarray(table.vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be 2-D (N, D), got shape {vectors.shape}")
    n = vectors.shape[0]
    for field, column in (("names", table.names), ("indices", table.indices), ("segments", table.segments)):
        if column is not None and len(column) != n:
            raise ValueError(f"{field} has {len(column)} entries for {n} vectors")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    {"npy": _write_npy, "parquet": _write_parquet, "jsonl": _write_jsonl}[fmt](Path(path), vectors, table)
    return Path(path)


def read_embeddings(path: str | os.PathLike[str]) -> EmbeddingTable:
    """Read a file written by `write_embeddings` (names etc. are None for .npy)."""
    fmt = output_format(path)
    if fmt == "npy":
        return EmbeddingTable(np.load(path, allow_pickle=False))
    if fmt == "parquet":
        pa, pq = _pyarrow()
        data = pq.read_table(path)
        dim = data.schema.field("vector").type.list_size
        flat = data.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        columns = data.column_names
        return EmbeddingTable(
            vectors=flat.astype(np.float32).reshape(-1, dim),
            names=data.column("name").to_pylist() if "name" in columns else None,
            indices=data.column("index").to_pylist() if "index" in columns else None,
            segments=list(zip(data.column("start").to_pylist(), data.column("end").to_pylist()))
            if "start" in columns else None,
        )
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line]
    first = rows[0] if rows else {}
    return EmbeddingTable(
        vectors=np.asarray([r["vector"] for r in rows], dtype=np.float32).reshape(len(rows), -1),
        names=[r["name"] for r in rows] if "name" in first else None,
        indices=[r["index"] for r in rows] if "index" in first else None,
        segments=[(r["start"], r["end"]) for r in rows] if "start" in first else None,
    )


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise BindspaceError("writing .parquet needs pyarrow: pip install 'bindspace[parquet]' "
                             "(or write .npy / .jsonl)") from None
    return pa, pq


def _clean(name: str) -> str:
    """A name that encodes as UTF-8 (undecodable bytes in file names become U+FFFD)."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        return name.encode("utf-8", "replace").decode("utf-8")


def _write_npy(path: Path, vectors: np.ndarray, table: EmbeddingTable) -> None:
    with atomic_open(path, "wb") as handle:
        np.save(handle, vectors, allow_pickle=False)


def _write_parquet(path: Path, vectors: np.ndarray, table: EmbeddingTable) -> None:
    pa, pq = _pyarrow()
    n, dim = vectors.shape
    columns: dict[str, object] = {}
    if table.indices is not None:
        columns["index"] = pa.array(table.indices, pa.int64())
    if table.names is not None:
        columns["name"] = pa.array([_clean(s) for s in table.names], pa.string())
    if table.segments is not None:
        columns["start"] = pa.array([s[0] for s in table.segments], pa.float64())
        columns["end"] = pa.array([s[1] for s in table.segments], pa.float64())
    columns["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim)
    with atomic_open(path, "wb") as handle:
        pq.write_table(pa.table(columns), handle)


def _write_jsonl(path: Path, vectors: np.ndarray, table: EmbeddingTable) -> None:
    with atomic_open(path, "w") as handle:
        for r in range(vectors.shape[0]):
            row: dict[str, object] = {}
            if table.indices is not None:
                row["index"] = int(table.indices[r])
            if table.names is not None:
                row["name"] = _clean(table.names[r])
            if table.segments is not None:
                row["start"], row["end"] = float(table.segments[r][0]), float(table.segments[r][1])
            row["vector"] = vectors[r].tolist()  # float32 values as exact decimal doubles: they round-trip
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def table_from_result(result: object) -> EmbeddingTable:
    """An EmbeddingTable from a `bindspace.embedding.EmbeddingResult`."""
    return EmbeddingTable(
        vectors=result.vectors,  # type: ignore[attr-defined]
        names=list(result.names),  # type: ignore[attr-defined]
        indices=list(result.indices),  # type: ignore[attr-defined]
        segments=None if result.segments is None else list(result.segments),  # type: ignore[attr-defined]
    )


__all__: Sequence[str] = [
    "FORMATS", "EmbeddingTable", "OutputFormatError", "output_format", "check_output",
    "write_embeddings", "read_embeddings", "table_from_result",
]
