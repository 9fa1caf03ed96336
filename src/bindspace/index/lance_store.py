"""The LanceDB implementation of `Store`: one table `items` in a directory or object-store URI.

Layout: the model is recorded in the table's schema metadata (`bindspace.model`, JSON), written
in the same atomic commit that creates the table, so a table never exists without its model.
Every LanceDB write (add, delete, update, compaction) is one atomic commit; a process killed
at any point leaves the last committed version. Search is exact over an in-memory copy of
the vectors (`exact.ExactIndex`, rebuilt when the table version changes) until an ANN index
exists, then LanceDB's ANN search with re-ranking.

Reads go through pylance (`lance`), whose import costs a fraction of LanceDB's (about 0.7 s of CPU
against 3 s): a search or an unchanged re-index of a local index never imports LanceDB. Writes,
ANN queries and index builds use LanceDB's table, opened on first use; both see the same commits.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import lance
import numpy as np
import pyarrow as pa

from ..errors import BindspaceError, first_line
from .object_store import plain_error
from .store import Hit, Item, ModelInfo, Store, modality_values, unit_query

if TYPE_CHECKING:
    from .exact import ExactIndex

log = logging.getLogger(__name__)

TABLE = "items"
META_KEY = b"bindspace.model"
FORMAT_KEY = b"bindspace.format"
FORMAT = b"1"
META_COLUMNS = ("id", "uri", "modality", "content_hash", "size", "mtime", "segment_start", "segment_end",
                "model", "model_checksum")
# ANN query defaults: measured on 1M x 1024 (benchmarks/search_latency.py) to give recall@10 >= 0.95.
DEFAULT_NPROBES = 10
DEFAULT_REFINE = 5
IN_CHUNK = 500  # ids per `IN (...)` filter


def sql_str(value: str) -> str:
    """An SQL string literal (single quotes doubled)."""
    return "'" + str(value).replace("'", "''") + "'"


def _in_filter(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(sql_str(v) for v in values)})"


def _schema(info: ModelInfo) -> pa.Schema:
    return pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("uri", pa.string()),
            pa.field("modality", pa.string()),
            pa.field("content_hash", pa.string()),
            pa.field("size", pa.int64()),
            pa.field("mtime", pa.float64()),
            pa.field("segment_start", pa.float64()),
            pa.field("segment_end", pa.float64()),
            pa.field("model", pa.string()),
            pa.field("model_checksum", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), int(info.embed_dim))),
        ],
        metadata={META_KEY: json.dumps(asdict(info)).encode(), FORMAT_KEY: FORMAT},
    )


# What LanceDB raises: ValueError for bad input (a bad filter, an unknown URI scheme), RuntimeError
# ("lance error: LanceError(IO): ...") for failed reads and writes, OSError from Python-side file work.
LANCE_ERRORS = (ValueError, RuntimeError, OSError)
_RUST_NOISE = re.compile(r"^lance error: (LanceError\(\w+\): )?|( at path \"[^\"]*\")?, /\S+\.rs:\d+:\d+$")


def _lance_error(exc: BaseException) -> str:
    """The first line of a LanceDB error, without its Rust source location."""
    return _RUST_NOISE.sub("", first_line(exc)).strip()


def _cause(exc: BaseException, uri: str, options: dict[str, str] | None = None) -> str:
    """An object-store failure in plain words (endpoint and cause), else LanceDB's first line."""
    return plain_error(exc, uri, options) or _lance_error(exc)


def _vectors(column: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    """A fixed-size-list column as a contiguous (N, dim) float32 array."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out = np.empty((sum(len(c) for c in chunks), dim), dtype=np.float32)
    row = 0
    for chunk in chunks:
        n = len(chunk)
        if n:
            out[row : row + n] = chunk.flatten().to_numpy(zero_copy_only=False).reshape(n, dim)  # (n*dim,) -> (n, dim)
        row += n
    return out


def _items(table: pa.Table, with_vectors: bool) -> list[Item]:
    rows = table.select([c for c in META_COLUMNS]).to_pylist()
    vectors = _vectors(table["vector"], table.schema.field("vector").type.list_size) if with_vectors else None
    return [Item(**row, vector=None if vectors is None else vectors[i]) for i, row in enumerate(rows)]


def _arrow_rows(uri: str, schema: pa.Schema, info: ModelInfo, items: Sequence[Item]) -> pa.Table:
    """Items as an Arrow table of the index schema; items of another model or width are refused."""
    dim = info.embed_dim
    vectors = np.empty((len(items), dim), dtype=np.float32)
    for i, item in enumerate(items):
        if item.model_checksum != info.checksum:
            raise BindspaceError(
                f"{uri}: refusing to mix models: item {item.uri} was embedded by {item.model} "
                f"({item.model_checksum}), the index holds vectors of {info.name} ({info.checksum})")
        if item.vector is None:
            raise BindspaceError(f"item {item.uri}: has no vector")
        vector = np.asarray(item.vector, dtype=np.float32).reshape(-1)
        if vector.shape[0] != dim:
            raise BindspaceError(f"item {item.uri}: vector has {vector.shape[0]} dimensions, the index {dim}")
        vectors[i] = vector
    columns = {c: [getattr(item, c) for item in items] for c in META_COLUMNS}
    arrays = [pa.array(columns[c], type=schema.field(c).type) for c in META_COLUMNS]
    arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim))  # (n*dim,) -> n x [dim]
    return pa.Table.from_arrays(arrays, schema=schema)


@dataclass(frozen=True)
class RowWriter:
    """Writes rows as Lance data files next to the table, from any process (a Ray worker); picklable.

    The files belong to no table version until the driver passes `write`'s result to
    `LanceStore.commit_written`: a worker or driver killed before that leaves unreferenced
    files that no reader sees (Lance's cleanup removes them), never half a file's rows.
    """

    dataset_uri: str
    schema: pa.Schema
    info: ModelInfo
    storage_options: dict[str, str]
    data_storage_version: str

    def write(self, items: Sequence[Item]) -> str:
        """Write the items as new data files; returns their fragment metadata (JSON) for the commit."""
        import lance.fragment

        if not items:
            return ""
        rows = _arrow_rows(self.dataset_uri, self.schema, self.info, items)
        try:
            fragments = lance.fragment.write_fragments(
                rows, self.dataset_uri, schema=self.schema, storage_options=self.storage_options or None,
                data_storage_version=self.data_storage_version)
        except LANCE_ERRORS as exc:
            raise BindspaceError(f"{self.dataset_uri}: a worker cannot write rows "
                                 f"({_cause(exc, self.dataset_uri, self.storage_options)})") from exc
        return json.dumps([f.to_json() for f in fragments])  # to_json gives a dict


class _Snapshot:
    """One table version held in memory for exact search: metadata, row ids and an ExactIndex."""

    def __init__(self, version: int, meta: pa.Table, rowids: np.ndarray, index: ExactIndex) -> None:
        self.version = version
        self.meta = meta.combine_chunks()  # one chunk: `take` per query stays cheap
        self.rowids = rowids
        self.modalities = np.asarray(meta["modality"].to_pylist(), dtype=object)
        self.index = index
        self._masks: dict[tuple[str, ...], np.ndarray] = {}

    def modality_mask(self, kinds: Sequence[str]) -> np.ndarray:
        """Rows of these modalities (cached: filters repeat)."""
        key = tuple(sorted(kinds))
        if key not in self._masks:
            self._masks[key] = np.isin(self.modalities, list(key))
        return self._masks[key]


class LanceStore(Store):
    """Items in a LanceDB table; exact search in memory, ANN search once an index exists."""

    def __init__(self, db: Any, uri: str, storage_options: dict[str, str] | None = None) -> None:
        self._db = db  # the LanceDB connection; None until a write needs it (local indexes)
        self.uri = uri
        self.storage_options = dict(storage_options or {})
        self._table_obj: Any = None
        self._dataset_obj: Any = None  # the pylance dataset reads go through
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._ann: tuple[int, bool] | None = None  # (version, has index)
        self._info: ModelInfo | None = None  # fixed for the table's lifetime once read

    @classmethod
    def open(cls, uri: str, *, create: bool = False, storage_options: dict[str, str] | None = None) -> LanceStore:
        """Connect to the database at `uri`; without `create` it must hold a bindspace table.

        `storage_options` go to LanceDB and Lance as they are (object stores: endpoint, region,
        allow_http, credentials); an object store that cannot be reached fails here, in one line.
        """
        options = dict(storage_options or {})
        if create and "://" not in uri:
            try:
                os.makedirs(uri, exist_ok=True)
            except OSError as exc:
                raise BindspaceError(f"{uri}: cannot open the index ({_cause(exc, uri, options)})") from exc
        # A local index is read without LanceDB (see the module docstring); an object store is reached now.
        store = cls(None if "://" not in uri else _connect(uri, options), uri, options)
        if not create and store._dataset() is None:
            raise BindspaceError(f"{uri}: no bindspace index here (build one with `bindspace index PATH --db {uri}`)")
        return store

    def __repr__(self) -> str:
        return f"LanceStore({self.uri!r})"

    # ------------------------------------------------------------------ table and model

    @property
    def db(self) -> Any:
        """The LanceDB connection (made on first use)."""
        if self._db is None:
            self._db = _connect(self.uri, self.storage_options)
        return self._db

    def _dataset(self) -> Any:
        """The table as a pylance dataset at its latest commit (what every read uses), or None while there is none.

        Checking for a newer commit on every read is what LanceDB's read_consistency_interval=0 does:
        `serve` sees what a running `index` commits.
        """
        if self._dataset_obj is None:
            if "://" in self.uri:  # an object store: through the connection, which knows how to reach it
                table = self._table()
                if table is None:
                    return None
                self._dataset_obj = table.to_lance()
            else:
                try:
                    self._dataset_obj = lance.dataset(os.path.join(self.uri, f"{TABLE}.lance"))
                except (ValueError, FileNotFoundError):
                    return None  # no table yet
                except LANCE_ERRORS as exc:
                    raise BindspaceError(f"{self.uri}: cannot open the index table ({_lance_error(exc)})") from exc
                if not self._written_by_us(self._dataset_obj):
                    self._dataset_obj = None
                    raise self._not_ours()
            return self._dataset_obj
        latest = self._dataset_obj.latest_version
        if latest != self._dataset_obj.version:
            self._dataset_obj = self._dataset_obj.checkout_version(latest)
        return self._dataset_obj

    def _table(self) -> Any:
        if self._table_obj is None:
            try:
                self._table_obj = self.db.open_table(TABLE)
            except (ValueError, FileNotFoundError):
                return None
            except LANCE_ERRORS as exc:
                raise BindspaceError(f"{self.uri}: cannot open the index table "
                                     f"({_cause(exc, self.uri, self.storage_options)})") from exc
            if not self._written_by_us(self._table_obj):
                self._table_obj = None
                raise self._not_ours()
        return self._table_obj

    @staticmethod
    def _written_by_us(table: Any) -> bool:
        """A LanceDB table or Lance dataset whose schema holds our model record."""
        return META_KEY in (table.schema.metadata or {})

    def _not_ours(self) -> BindspaceError:
        return BindspaceError(f"{self.uri}: table {TABLE!r} was not written by bindspace (no model record)")

    def _require_table(self) -> Any:
        table = self._table()
        if table is None:
            raise BindspaceError(f"{self.uri}: the index is empty and has no model yet (bind_model first)")
        return table

    def model_info(self) -> ModelInfo | None:
        if self._info is not None:
            return self._info
        dataset = self._dataset()
        if dataset is None:
            return None
        data = json.loads(dataset.schema.metadata[META_KEY])
        self._info = ModelInfo(name=data["name"], checksum=data["checksum"], embed_dim=int(data["embed_dim"]),
                               checkpoint=data.get("checkpoint"), precision=data.get("precision"))
        return self._info

    def bind_model(self, info: ModelInfo) -> None:
        current = self.model_info()
        if current is None:
            try:
                self.db.create_table(TABLE, schema=_schema(info), exist_ok=True)
            except LANCE_ERRORS as exc:
                raise BindspaceError(f"{self.uri}: cannot create the index table "
                                     f"({_cause(exc, self.uri, self.storage_options)})") from exc
            self._table_obj = self._dataset_obj = None
            current = self.model_info()  # another process may have created it first
            assert current is not None
        _check_same_model(self.uri, current, info)

    # ------------------------------------------------------------------ writes

    def add(self, items: Sequence[Item]) -> None:
        if not items:
            return
        table = self._require_table()
        info = self.model_info()
        assert info is not None
        batch = _arrow_rows(self.uri, table.schema, info, items)
        with self._writing():
            table.add(batch)

    def row_writer(self) -> RowWriter:
        """What a worker needs to write rows as Lance data files for `commit_written` (needs pylance)."""
        table = self._require_table()
        info = self.model_info()
        assert info is not None
        with self._writing():
            dataset = table.to_lance()
        return RowWriter(dataset.uri, table.schema, info, dict(self.storage_options),
                         str(dataset.data_storage_version))

    def commit_written(self, payloads: Sequence[str]) -> None:
        """Make data files written by `RowWriter.write` part of the table, in one atomic Append commit."""
        from lance.fragment import FragmentMetadata

        fragments = [FragmentMetadata.from_json(json.dumps(f)) for p in payloads if p for f in json.loads(p)]
        if not fragments:
            return
        table = self._require_table()
        with self._writing():
            dataset = table.to_lance()
            # read_version is where this commit starts from; Lance rebases an Append over concurrent commits
            lance.LanceDataset.commit(dataset.uri, lance.LanceOperation.Append(fragments),
                                      read_version=dataset.version, storage_options=self.storage_options or None)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Turn a failed commit (full disk, read-only mount) into one line; earlier commits are intact."""
        try:
            yield
        except (RuntimeError, OSError) as exc:
            raise BindspaceError(f"{self.uri}: cannot write to the index "
                                 f"({_cause(exc, self.uri, self.storage_options)}); everything "
                                 "committed before is kept, run again to continue") from exc

    def delete(self, ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(ids))
        return sum(self._delete_where(_in_filter("id", ids[i : i + IN_CHUNK])) for i in range(0, len(ids), IN_CHUNK))

    def delete_uri(self, uri: str) -> int:
        return self._delete_where(f"uri = {sql_str(uri)}")

    def _delete_where(self, where: str) -> int:
        dataset = self._dataset()
        n = 0 if dataset is None else dataset.count_rows(where)
        if n:
            with self._writing():
                self._require_table().delete(where)
        return int(n)

    def update_stat(self, uri: str, content_hash: str, size: int, mtime: float) -> int:
        dataset = self._dataset()
        if dataset is None:
            return 0
        where = f"uri = {sql_str(uri)} AND content_hash = {sql_str(content_hash)}"
        n = dataset.count_rows(where)
        if n:
            with self._writing():
                self._require_table().update(where=where, values={"size": int(size), "mtime": float(mtime)})
        return int(n)

    def dedupe(self) -> int:
        dataset = self._dataset()
        if dataset is None:
            return 0
        scan = dataset.to_table(columns=["id"], with_row_id=True)
        if scan.num_rows == 0:
            return 0
        ids = np.asarray(scan["id"].to_pylist(), dtype=object)
        _, first = np.unique(ids, return_index=True)
        if len(first) == len(ids):
            return 0
        keep = np.zeros(len(ids), dtype=bool)
        keep[first] = True
        extra = scan["_rowid"].to_numpy()[~keep]
        table = self._require_table()
        for i in range(0, len(extra), IN_CHUNK):
            with self._writing():
                table.delete(f"_rowid IN ({', '.join(str(int(r)) for r in extra[i : i + IN_CHUNK])})")
        log.info("removed %d duplicate rows", len(extra))
        return int(len(extra))

    def optimize(self) -> None:
        table = self._table()
        if table is not None:
            with self._writing():
                table.optimize()

    def create_ann_index(self, *, index_type: str = "IVF_SQ", num_partitions: int | None = None,
                         num_sub_vectors: int | None = None, sample_rate: int = 256, max_iterations: int = 50,
                         **extra: Any) -> None:
        """Build LanceDB's ANN index on the vectors (cosine).

        IVF_SQ (default): IVF partitions holding int8-quantised vectors, re-ranked in float32;
        at 1M x 1024 it builds in minutes on two cores and keeps recall@10 near 1 (see
        benchmarks/search_latency.py). IVF_PQ is smaller on disk but slower to train.
        """
        from lancedb import index as lance_index

        table = self._require_table()
        n = table.count_rows()
        if n < 256:
            raise BindspaceError(f"{self.uri}: {n} items are too few for an ANN index (exact search is used)")
        dim = self.model_info().embed_dim  # type: ignore[union-attr]
        partitions = num_partitions or max(1, min(4096, int(round(n ** 0.5))))
        common = dict(distance_type="cosine", num_partitions=partitions, sample_rate=sample_rate,
                      max_iterations=max_iterations, **extra)
        kind = index_type.upper()
        config: Any
        if kind == "IVF_PQ":
            sub = num_sub_vectors or next(s for s in (dim // 16, dim // 8, dim // 4, dim // 2, dim, 1)
                                          if s and dim % s == 0)
            config = lance_index.IvfPq(num_sub_vectors=sub, **common)
        elif kind == "IVF_HNSW_SQ":
            config = lance_index.IvfHnswSq(**common)
        elif kind == "IVF_SQ":
            config = lance_index.IvfSq(**common)
        elif kind == "IVF_FLAT":
            config = lance_index.IvfFlat(**common)
        else:
            raise BindspaceError(f"unknown ANN index type {index_type!r} (IVF_PQ, IVF_HNSW_SQ, IVF_SQ, IVF_FLAT)")
        try:
            table.create_index("vector", config=config, replace=True)
            # ANN queries prefilter by modality and `get` looks up ids: scalar indexes keep both cheap at 1M rows
            table.create_index("modality", config=lance_index.Bitmap(), replace=True)
            table.create_index("id", config=lance_index.BTree(), replace=True)
        except LANCE_ERRORS as exc:
            raise BindspaceError(f"{self.uri}: building the ANN index failed ({_lance_error(exc)})") from exc
        self._ann = None

    def has_ann_index(self, dataset: Any = None) -> bool:
        """True when the vectors have an ANN index (search then uses it); `dataset`: the version a caller holds."""
        dataset = self._dataset() if dataset is None else dataset
        if dataset is None:
            return False
        if self._ann is None or self._ann[0] != dataset.version:
            has = any("vector" in (ix.field_names or []) for ix in dataset.describe_indices())
            self._ann = (dataset.version, has)
        return self._ann[1]

    # ------------------------------------------------------------------ reads

    def get(self, id: str) -> Item | None:
        dataset = self._dataset()
        if dataset is None:
            return None
        rows = dataset.to_table(filter=f"id = {sql_str(id)}", limit=1)
        return _items(rows, with_vectors=True)[0] if rows.num_rows else None

    def count(self, modality: str | None = None) -> int:
        dataset = self._dataset()
        if dataset is None:
            return 0
        if modality is None:
            return int(dataset.count_rows())
        return int(dataset.count_rows(_in_filter("modality", modality_values(modality))))

    def items_by_uri(self) -> dict[str, list[Item]]:
        out: dict[str, list[Item]] = {}
        dataset = self._dataset()
        if dataset is None:
            return out
        rows = dataset.to_table(columns=list(META_COLUMNS))
        for item in _items(rows, with_vectors=False):
            out.setdefault(item.uri, []).append(item)
        return out

    def search(self, vector: np.ndarray, k: int = 10, *, modality: str | None = None, where: str | None = None,
               exact: bool | None = None, nprobes: int | None = None, refine_factor: int | None = None) -> list[Hit]:
        """Cosine top-k. `exact` None: ANN when an index exists, else exact; True/False forces one."""
        dataset = self._dataset()  # one check for the latest commit per query
        info = self.model_info()
        if dataset is None or info is None or k <= 0:
            return []
        query = unit_query(vector, info.embed_dim)
        kinds = None if modality is None else modality_values(modality)
        use_ann = self.has_ann_index(dataset) if exact is None else not exact
        if use_ann:
            return self._search_ann(self._require_table(), query, k, kinds, where, nprobes, refine_factor)
        return self._search_exact(dataset, query, k, kinds, where)

    def _filter(self, kinds: Sequence[str] | None, where: str | None) -> str | None:
        parts = []
        if kinds is not None:
            parts.append(_in_filter("modality", kinds))
        if where and where.strip():
            parts.append(f"({where})")
        return " AND ".join(parts) or None

    def _search_ann(self, table: Any, query: np.ndarray, k: int, kinds: Sequence[str] | None, where: str | None,
                    nprobes: int | None, refine_factor: int | None) -> list[Hit]:
        builder = (table.search(query, vector_column_name="vector").distance_type("cosine").limit(k)
                   .nprobes(nprobes or DEFAULT_NPROBES).refine_factor(refine_factor or DEFAULT_REFINE)
                   .select([*META_COLUMNS, "_distance"]))
        filt = self._filter(kinds, where)
        if filt:
            builder = builder.where(filt, prefilter=True)
        try:
            rows = builder.to_arrow()
        except LANCE_ERRORS as exc:  # a bad --where is the usual cause
            raise BindspaceError(f"search failed{_where_hint(where)}: {_lance_error(exc)}") from exc
        scores = 1.0 - rows["_distance"].to_numpy()
        return [Hit(item, float(s)) for item, s in zip(_items(rows, with_vectors=False), scores)]

    def _search_exact(self, dataset: Any, query: np.ndarray, k: int, kinds: Sequence[str] | None,
                      where: str | None) -> list[Hit]:
        snap = self._current_snapshot(dataset)
        mask = None
        if kinds is not None:
            mask = snap.modality_mask(kinds)
        if where and where.strip():
            try:
                matching = dataset.to_table(columns=["id"], filter=where, with_row_id=True)
            except LANCE_ERRORS as exc:  # a bad --where is the usual cause
                raise BindspaceError(f"search failed{_where_hint(where)}: {_lance_error(exc)}") from exc
            allowed = np.isin(snap.rowids, matching["_rowid"].to_numpy())
            mask = allowed if mask is None else (mask & allowed)
        positions, scores = snap.index.search(query, k, mask)
        items = _items(snap.meta.take(pa.array(positions)), with_vectors=False) if len(positions) else []
        return [Hit(item, float(s)) for item, s in zip(items, scores)]

    def _current_snapshot(self, dataset: Any) -> _Snapshot:
        """The exact-search copy of this dataset version (a pylance dataset is fixed at one version)."""
        with self._lock:
            if self._snapshot is None or self._snapshot.version != dataset.version:
                self._snapshot = None  # free the old copy before loading the new one
                self._snapshot = self._load_snapshot(dataset)
            return self._snapshot

    def _load_snapshot(self, dataset: Any) -> _Snapshot:
        from .exact import ExactIndex  # torch: imported by searches only, never by an index run

        data = dataset.to_table(columns=[*META_COLUMNS, "vector"], with_row_id=True)
        dim = dataset.schema.field("vector").type.list_size
        vectors = _vectors(data["vector"], dim)
        meta = data.select(list(META_COLUMNS))
        return _Snapshot(dataset.version, meta, data["_rowid"].to_numpy(), ExactIndex(vectors))

    def warm(self) -> None:
        """Load the exact-search copy now (serve calls this at start so the first query is fast)."""
        dataset = self._dataset()
        if dataset is not None and not self.has_ann_index(dataset):
            self._current_snapshot(dataset)


def _connect(uri: str, options: dict[str, str]) -> Any:
    """A LanceDB connection to `uri` (an object store is reached here: failures are one line)."""
    import lancedb

    try:
        # Interval 0: every read sees the latest commit, so `serve` picks up a running `index`.
        return lancedb.connect(uri, read_consistency_interval=datetime.timedelta(0), storage_options=options or None)
    except LANCE_ERRORS as exc:  # connection problems are user-facing
        raise BindspaceError(f"{uri}: cannot open the index ({_cause(exc, uri, options)})") from exc


def _where_hint(where: str | None) -> str:
    return f" (check the filter {where!r}; columns: {', '.join(META_COLUMNS)})" if where else ""


def _check_same_model(uri: str, current: ModelInfo, new: ModelInfo) -> None:
    """Refuse vectors from another model: different width or weights fingerprint."""
    if int(current.embed_dim) != int(new.embed_dim) or current.checksum != new.checksum:
        where = f", checkpoint {current.checkpoint}" if current.checkpoint else ""
        raise BindspaceError(
            f"{uri}: refusing to mix models: this index holds {current.embed_dim}-d vectors of {current.name} "
            f"(fingerprint {current.checksum}{where}); the model given is {new.name} ({new.embed_dim}-d, "
            f"fingerprint {new.checksum}). Use the same --checkpoint, or another --db")
    if current.precision and new.precision and current.precision != new.precision:
        raise BindspaceError(
            f"{uri}: refusing to mix precisions: this index holds {current.precision} vectors of {current.name}; "
            f"the model given computes in {new.precision}. Use --dtype {current.precision}, or another --db")
