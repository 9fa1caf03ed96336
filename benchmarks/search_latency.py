"""Search latency of the bindspace index (query embedding excluded), exact and ANN.

    python benchmarks/search_latency.py                      # 100k exact + 1M ANN (the issue's targets)
    python benchmarks/search_latency.py --sizes 100000 --ann-sizes 100000 --index-type IVF_SQ

Targets (issue 7, 1024-d, this machine): p50 <= 20 ms at 100k items exact; p50 <= 50 ms at
1M items with an ANN index at recall@10 >= 0.95 against exact search.

Data: synthetic unit vectors from a mixture of `--clusters` random unit centres (default
N/1000), each point = normalize(centre + s * g / sqrt(D)) with g ~ N(0, I) and a per-point
spread s ~ U(0.5, 1.5) (cosine to its centre ~0.55-0.9, like neighbours in real embedding
spaces; uniform random vectors would have no neighbours worth finding). Queries are fresh
samples from the same mixture (not stored items). Recall@10 is measured against numpy brute
force on the same float32 vectors. Rows are written through `Store.add` in 100k batches.
"""
from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bindspace.index import open_store
from bindspace.index.lance_store import LanceStore  # noqa: E402
from bindspace.index.store import Item, ModelInfo, item_id  # noqa: E402

CHUNK = 100_000


class Mixture:
    """Deterministic clustered unit vectors."""

    def __init__(self, n: int, dim: int, clusters: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        centres = rng.standard_normal((clusters, dim)).astype(np.float32)
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        self.dim = dim
        self.rng = np.random.default_rng(seed + 1)

    def sample(self, n: int) -> np.ndarray:
        which = self.rng.integers(0, len(self.centres), n)
        spread = self.rng.uniform(0.5, 1.5, (n, 1)).astype(np.float32)
        x = self.centres[which] + spread * self.rng.standard_normal((n, self.dim), dtype=np.float32) / np.sqrt(self.dim)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x


def build(db: Path, n: int, dim: int, clusters: int, seed: int) -> tuple[LanceStore, np.ndarray, Mixture, float]:
    """A store with n items; returns (store, vectors, generator, seconds to write)."""
    if db.exists():
        shutil.rmtree(db)
    store = open_store(db, create=True)
    assert isinstance(store, LanceStore)  # a local path opens LanceDB: exact search and ANN indexes
    store.bind_model(ModelInfo("synthetic", "bench", dim))
    mix = Mixture(n, dim, clusters, seed)
    vectors = np.empty((n, dim), np.float32)
    started = time.perf_counter()
    for start in range(0, n, CHUNK):
        x = mix.sample(min(CHUNK, n - start))
        vectors[start : start + len(x)] = x
        items = [Item(item_id(f"/bench/{i}.jpg", "h"), f"/bench/{i}.jpg", "image" if i % 10 else "audio", "h", 1000 + i,
                      0.0, None, None, "synthetic", "bench", x[i - start]) for i in range(start, start + len(x))]
        store.add(items)
        print(f"  wrote {start + len(x):,}/{n:,} rows", file=sys.stderr, flush=True)
    store.optimize()
    return store, vectors, mix, time.perf_counter() - started


def truth(vectors: np.ndarray, queries: np.ndarray, k: int) -> list[set[str]]:
    """Exact top-k uris by numpy brute force."""
    scores = queries @ vectors.T  # (Q, N)
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    return [{f"/bench/{i}.jpg" for i in row} for row in top]


def measure(store, queries: np.ndarray, k: int, expected: list[set[str]] | None, **kwargs) -> dict:
    store.search(queries[0], k, **kwargs)  # warm-up (loads caches, not counted)
    times, recalls = [], []
    for i, q in enumerate(queries):
        t = time.perf_counter()
        hits = store.search(q, k, **kwargs)
        times.append((time.perf_counter() - t) * 1000)
        if expected is not None:
            recalls.append(len({h.item.uri for h in hits} & expected[i]) / k)
    times.sort()
    return {"p50": statistics.median(times), "p95": times[int(0.95 * (len(times) - 1))],
            "recall": float(np.mean(recalls)) if recalls else float("nan")}


def row(table: list, label: str, n: int, stats: dict, note: str = "") -> None:
    table.append((label, f"{n:,}", f"{stats['p50']:.1f}", f"{stats['p95']:.1f}",
                  "-" if np.isnan(stats["recall"]) else f"{stats['recall']:.3f}", note))
    print(f"  {label}: p50 {stats['p50']:.1f} ms, p95 {stats['p95']:.1f} ms, recall@10 {stats['recall']:.3f} {note}",
          file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000], help="sizes for exact search")
    parser.add_argument("--ann-sizes", type=int, nargs="*", default=[1_000_000], help="sizes for ANN search")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--clusters", type=int, help="mixture components (default: N/1000, at least 100)")
    parser.add_argument("--index-type", default="IVF_SQ", help="IVF_PQ, IVF_SQ, IVF_HNSW_SQ, IVF_FLAT")
    parser.add_argument("--partitions", type=int, help="IVF partitions (default: sqrt(N))")
    parser.add_argument("--sample-rate", type=int, default=256)
    parser.add_argument("--max-iterations", type=int, default=50)
    parser.add_argument("--nprobes", type=int, nargs="*", default=[10, 20, 40])
    parser.add_argument("--refine", type=int, nargs="*", default=[1, 5])
    parser.add_argument("--exact-ann-sizes", action="store_true", help="also time exact search at the ANN sizes")
    parser.add_argument("--workdir", type=Path, help="where tables are written (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the tables")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bindspace-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    table: list[tuple] = []
    try:
        for n in args.sizes:
            print(f"exact, {n:,} x {args.dim}", file=sys.stderr)
            clusters = args.clusters or max(100, n // 1000)
            store, vectors, mix, write_s = build(workdir / f"exact_{n}", n, args.dim, clusters, args.seed)
            queries = mix.sample(args.queries)
            expected = truth(vectors, queries, args.k)
            t = time.perf_counter()
            store.search(queries[0], args.k, exact=True)
            load_s = time.perf_counter() - t
            row(table, "exact", n, measure(store, queries, args.k, expected, exact=True),
                f"write {write_s:.0f} s, first query (loads vectors) {load_s:.1f} s")
            row(table, "exact + modality filter", n, measure(store, queries, args.k, None, exact=True,
                                                              modality="audio"))
            del store, vectors
            gc.collect()
        for n in args.ann_sizes:
            print(f"ANN ({args.index_type}), {n:,} x {args.dim}", file=sys.stderr)
            clusters = args.clusters or max(100, n // 1000)
            store, vectors, mix, write_s = build(workdir / f"ann_{n}", n, args.dim, clusters, args.seed)
            queries = mix.sample(args.queries)
            expected = truth(vectors, queries, args.k)
            del vectors
            gc.collect()
            t = time.perf_counter()
            store.create_ann_index(index_type=args.index_type, num_partitions=args.partitions,
                                   sample_rate=args.sample_rate, max_iterations=args.max_iterations)
            build_s = time.perf_counter() - t
            print(f"  index built in {build_s:.0f} s", file=sys.stderr, flush=True)
            for nprobes in args.nprobes:
                for refine in args.refine:
                    stats = measure(store, queries, args.k, expected, nprobes=nprobes, refine_factor=refine)
                    row(table, f"{args.index_type} nprobes={nprobes} refine={refine}", n, stats,
                        f"write {write_s:.0f} s, index {build_s:.0f} s")
            row(table, f"{args.index_type} default + modality filter", n,
                measure(store, queries, args.k, None, modality="audio"))
            if args.exact_ann_sizes:
                row(table, "exact (no index)", n, measure(store, queries, args.k, expected, exact=True))
            del store
            gc.collect()
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    header = ("search", "items", "p50 ms", "p95 ms", "recall@10", "notes")
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(len(header))]
    print()
    for r in [header, tuple("-" * w for w in widths), *table]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"\n{args.dim}-d float32, k={args.k}, {args.queries} queries, {os.cpu_count()} CPUs; "
          "query embedding excluded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
