"""The paper's zero-shot benchmarks, read from each dataset's published on-disk layout.

`run(get_benchmark("esc50"), root, embedder)` returns an `EvalReport`; `bindspace eval`
is the command-line front end. Datasets are never downloaded: point `root` at your copy.
"""
from __future__ import annotations

from .base import Benchmark, ClassificationSet, EvalOptions, EvalReport, LayoutError, RetrievalSet, Sample, Skipped
from .registry import BENCHMARKS, get_benchmark
from .report import format_report, report_json, write_report
from .runner import run

__all__ = [
    "BENCHMARKS", "get_benchmark", "run", "Benchmark", "EvalOptions", "EvalReport", "LayoutError",
    "ClassificationSet", "RetrievalSet", "Sample", "Skipped", "format_report", "report_json", "write_report",
]
