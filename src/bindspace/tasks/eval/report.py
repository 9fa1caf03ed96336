"""Report output: the human table (ours next to the paper's) and the JSON file."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ...errors import BindspaceError
from ...fsio import atomic_write
from .base import EvalReport

MAX_SKIPPED_SHOWN = 5


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def format_report(report: EvalReport) -> str:
    """A plain-text summary: every metric with the paper's value beside the one it reports."""
    lines = [report.title, ""]
    width = max([len("metric")] + [len(k) for k in report.metrics])
    lines.append(f"  {'metric':<{width}}  {'ours':>8}  {'paper':>8}")
    for key, value in report.metrics.items():
        marker = "  <- paper's metric" if key == report.primary else ""
        lines.append(f"  {key:<{width}}  {_fmt(value):>8}  {_fmt(report.paper.get(key)):>8}{marker}")
    if not report.metrics:
        lines.append(f"  {report.primary:<{width}}  {'-':>8}  {_fmt(report.paper.get(report.primary)):>8}")
    if report.groups:
        lines.append("")
        for group, values in report.groups.items():
            shown = "  ".join(f"{k} {_fmt(v)}" for k, v in values.items() if k != "n")
            lines.append(f"  {group}: {shown}  (n={int(values.get('n', 0))})")
    counts = report.counts
    lines.append("")
    summary = f"evaluated {counts.get('evaluated', 0)} of {counts.get('selected', 0)} items"
    if "queries" in counts:
        summary += f", {counts.get('queries_evaluated', 0)} of {counts['queries']} text queries"
    if counts.get("selected", 0) != counts.get("listed", 0) or report.unit != "items":
        summary += f" (the dataset lists {counts.get('listed', 0)} {report.unit})"
    lines.append(summary)
    if report.skipped:
        lines.append(f"skipped {len(report.skipped)}:")
        for item in report.skipped[:MAX_SKIPPED_SHOWN]:
            lines.append(f"  {item.name}: {item.reason}")
        if len(report.skipped) > MAX_SKIPPED_SHOWN:
            lines.append(f"  ... and {len(report.skipped) - MAX_SKIPPED_SHOWN} more (all in the JSON report)")
    return "\n".join(lines)


def report_json(report: EvalReport) -> str:
    """The JSON report as text."""
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False)


def write_report(report: EvalReport, path: str | os.PathLike[str]) -> Path:
    """Write the JSON report atomically (a crash never leaves half a file)."""
    target = Path(path)
    text = report_json(report) + "\n"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, text)
    except OSError as exc:
        raise BindspaceError(f"cannot write report {target} ({exc.strerror or exc})") from None
    return target
