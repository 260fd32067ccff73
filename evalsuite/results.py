"""Tidy results: one long-format CSV per task (one row per metric), written atomically; summary, suites, run.json.

Values are fractions at full precision; only display tables format percentages.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from . import __version__

TASK_COLUMNS = (
    "model", "model_fingerprint", "adapter", "weights", "task", "task_version", "task_fingerprint", "transform",
    "protocol", "metric", "value", "ci_low", "ci_high", "is_primary", "num_samples", "num_texts", "num_failed",
    "partial", "seconds", "images_per_second", "evalsuite_version", "git_sha", "finished_utc",
)
SUMMARY_COLUMNS = ("task", "primary_metric", "value", "num_samples", "num_failed", "partial")
SUITE_COLUMNS = ("suite", "value", "num_tasks", "tasks", "partial")


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same folder and ``os.replace``: readers never see half a file. Under torchrun
    only rank 0 writes (every rank holds identical results)."""
    import sys

    if "torch.distributed" in sys.modules:  # never import torch here for the light commands
        from .distributed import is_writer

        if not is_writer():
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _csv_text(columns, rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _fmt(row[c]) for c in columns})
    return buf.getvalue()


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "nan"
    return "" if value is None else str(value)


def git_sha() -> str:
    """The evalsuite checkout's commit, or '' for an installed package."""
    here = Path(__file__).resolve().parent.parent
    if not (here / ".git").exists():
        return ""
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


@dataclass(frozen=True)
class TaskIdentity:
    model: str
    model_fingerprint: str
    adapter: str
    weights: str  # the weights source actually used, kind:ref[/filename]
    task: str
    task_version: int
    task_fingerprint: str


def format_protocol(protocol: dict[str, str]) -> str:
    """``transform=best-of-both;frame_rule=vissl``: sorted key=value pairs (one CSV cell)."""
    return ";".join(f"{k}={v}" for k, v in sorted(protocol.items()))


def parse_protocol(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in (text or "").split(";") if "=" in part)


def task_rows(ident: TaskIdentity, result, primary_metric: str) -> list[dict]:
    common = {
        "model": ident.model, "model_fingerprint": ident.model_fingerprint, "adapter": ident.adapter,
        "weights": ident.weights, "task": ident.task,
        "task_version": ident.task_version, "task_fingerprint": ident.task_fingerprint,
        "transform": result.transform,
        "protocol": format_protocol(result.protocol),
        "num_samples": result.num_samples, "num_texts": result.num_texts, "num_failed": result.num_failed,
        "partial": result.partial,
        "seconds": round(result.seconds, 3), "images_per_second": round(result.images_per_second, 2),
        "evalsuite_version": __version__, "git_sha": git_sha(),
        "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    rows = []
    for name, value in result.metrics.items():
        low, high = result.intervals.get(name, (None, None))
        rows.append(dict(common, metric=name, value=float(value), ci_low=low, ci_high=high,
                         is_primary=name == primary_metric))
    return rows


def write_task_csv(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, _csv_text(TASK_COLUMNS, rows))


def read_task_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["value"] = float(row["value"])
        row["is_primary"] = row["is_primary"] == "true"
        row["partial"] = row["partial"] == "true"
        row["num_samples"] = int(row["num_samples"])
        row["num_failed"] = int(row["num_failed"])
        row["task_version"] = int(row["task_version"])
    return rows


def is_done(path: Path, model_fingerprint: str, task_fingerprint: str) -> bool:
    """True when ``path`` holds a complete result for exactly this model and task fingerprint."""
    if not path.is_file():
        return False
    try:
        rows = read_task_csv(path)
    except (OSError, KeyError, ValueError, csv.Error):
        return False  # unreadable: evaluate again and overwrite
    return bool(rows) and all(
        r["model_fingerprint"] == model_fingerprint and r["task_fingerprint"] == task_fingerprint for r in rows
    )


def primary_row(rows: list[dict]) -> Optional[dict]:
    return next((r for r in rows if r["is_primary"]), None)


def write_summary(model_dir: Path, task_names: list[str], model_fingerprint: str,
                  task_fingerprints: dict[str, str]) -> list[dict]:
    """summary.csv: one row per task (its primary metric), from the task CSVs that match this run's model and
    task fingerprints (a result left by another configuration, e.g. a --limit run, is not this run's)."""
    summary = []
    for name in task_names:
        path = model_dir / f"{name}.csv"
        if name not in task_fingerprints or not is_done(path, model_fingerprint, task_fingerprints[name]):
            continue
        row = primary_row(read_task_csv(path))
        if row:
            summary.append({"task": name, "primary_metric": row["metric"], "value": row["value"],
                            "num_samples": row["num_samples"], "num_failed": row["num_failed"],
                            "partial": row["partial"]})
    atomic_write_text(model_dir / "summary.csv", _csv_text(SUMMARY_COLUMNS, summary))
    return summary


def write_suites(model_dir: Path, suites: dict[str, list[str]], summary: list[dict]) -> list[dict]:
    """suites.csv: the unweighted mean of the members' primary metrics, for suites whose members all ran."""
    by_task = {r["task"]: r for r in summary}
    rows = []
    for suite, members in suites.items():
        if not members or not all(m in by_task for m in members):
            continue
        values = [by_task[m]["value"] for m in members]
        rows.append({"suite": suite, "value": sum(values) / len(values), "num_tasks": len(members),
                     "tasks": " ".join(members), "partial": any(by_task[m]["partial"] for m in members)})
    atomic_write_text(model_dir / "suites.csv", _csv_text(SUITE_COLUMNS, rows))
    return rows


def write_run_manifest(model_dir: Path, manifest: dict) -> None:
    atomic_write_text(model_dir / "run.json", json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")


def format_table(summary: list[dict], suites: list[dict]) -> str:
    """A plain-text table for the terminal: percentages, two decimals."""
    lines = [f"{'task':<28} {'metric':<24} {'value':>8} {'samples':>9} {'failed':>7}"]
    for r in summary:
        mark = " (partial)" if r["partial"] else ""
        lines.append(f"{r['task']:<28} {r['primary_metric']:<24} {100 * r['value']:>8.2f} {r['num_samples']:>9}"
                     f" {r['num_failed']:>7}{mark}")
    for s in suites:
        mark = " (partial)" if s["partial"] else ""
        lines.append(f"{'suite ' + s['suite']:<28} {'mean of primary':<24} {100 * s['value']:>8.2f}"
                     f" {s['num_tasks']:>9} tasks{mark}")
    return "\n".join(lines)
