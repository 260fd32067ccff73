"""Tidy results: one long-format CSV per task (one row per metric), written atomically; summary, suites, run.json.

Values are fractions at full precision; only display tables format percentages.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from . import __version__
from .atomic import atomic_write_bytes, new_temp_file
from .errors import UserInputError

log = logging.getLogger("evalsuite")

TASK_COLUMNS = (
    "model", "model_fingerprint", "adapter", "weights", "task", "task_version", "task_fingerprint", "transform",
    "protocol", "metric", "value", "ci_low", "ci_high", "is_primary", "num_samples", "num_texts", "num_failed",
    "expected_num_samples", "expected_num_texts", "count_status",
    "partial", "seconds", "images_per_second", "evalsuite_version", "git_sha", "finished_utc",
)
SUMMARY_COLUMNS = ("task", "primary_metric", "value", "num_samples", "num_failed", "expected_num_samples",
                   "count_status", "partial")
SUITE_COLUMNS = ("suite", "value", "num_tasks", "tasks", "count_status", "partial")

# count_status: how the samples scored compare with the task's expected_num_samples (and expected_num_texts)
COUNT_OK, COUNT_FEWER, COUNT_MORE, COUNT_LIMIT, COUNT_UNCHECKED = "ok", "fewer", "more", "limit", "unchecked"
COUNT_STATUSES = (COUNT_OK, COUNT_FEWER, COUNT_MORE, COUNT_LIMIT, COUNT_UNCHECKED)
COUNT_MISMATCHES = (COUNT_FEWER, COUNT_MORE)  # a number on another sample set than the protocol's


def count_status(num_samples: int, expected: Optional[int], partial: bool, num_texts: Optional[int] = None,
                 expected_texts: Optional[int] = None) -> str:
    """``limit`` for a --limit subset; ``unchecked`` when the task states no count; else ``fewer``/``more``
    when the scored samples (readable ones: unreadable samples shrink the set too) or captions differ."""
    if partial:
        return COUNT_LIMIT
    if expected is None and expected_texts is None:
        return COUNT_UNCHECKED
    pairs = [(num_samples, expected), (num_texts, expected_texts)]
    if any(e is not None and n is not None and n < e for n, e in pairs):
        return COUNT_FEWER
    if any(e is not None and n is not None and n > e for n, e in pairs):
        return COUNT_MORE
    return COUNT_OK


def count_message(row: dict) -> str:
    """``1000 of 50000 samples`` for a result row (task CSV or summary row) whose count is not ok."""
    text = f"{row['num_samples']} of {row.get('expected_num_samples') or '?'} expected samples"
    if row.get("expected_num_texts") not in (None, ""):
        text += f", {row.get('num_texts')} of {row['expected_num_texts']} expected captions"
    return text


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same folder and ``os.replace``: readers never see half a file. Under torchrun
    only rank 0 writes (every rank holds identical results)."""
    import sys

    if "torch.distributed" in sys.modules:  # never import torch here for the light commands
        from .distributed import is_writer

        if not is_writer():
            return
    try:
        atomic_write_bytes(path, text.encode("utf-8"))
    except OSError as exc:  # full disk, read-only mount, a file where a folder should be: the user's to fix
        raise OutputWriteError(f"{path}: cannot write ({exc.strerror or exc}); files written before it are kept"
                               ) from None


def check_writable_folder(folder: Path, what: str) -> None:
    """Fail before any work (no model loaded, nothing evaluated) when ``folder`` cannot take result files."""
    try:
        os.unlink(new_temp_file(folder, prefix=".evalsuite-write-check."))
    except OSError as exc:
        raise OutputWriteError(f"{what} {folder}: cannot write there ({exc.strerror or exc}); choose a writable"
                               " folder") from None


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
        "expected_num_samples": result.expected_num_samples, "expected_num_texts": result.expected_num_texts,
        "count_status": result.count_status,
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


class OutputWriteError(UserInputError):
    """A result file or folder that cannot be written (the path and the OS's reason are named)."""


class ResultFileError(UserInputError):
    """A task CSV that is damaged, tampered with or not written by evalsuite (named file, row and column)."""


def _parse_fraction(text: str, optional: bool = False) -> Optional[float]:
    if optional and text == "":
        return None
    value = float(text)  # ValueError for non-numbers
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{text!r} is not a fraction in [0, 1]")
    return value


def _parse_count(text: str, optional: bool = False, minimum: int = 0) -> Optional[int]:
    if optional and text == "":
        return None
    value = int(text)
    if value < minimum:
        raise ValueError(f"{text!r} is below {minimum}")
    return value


def _parse_bool(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError(f"{text!r} is not true or false")
    return text == "true"


def _parse_status(text: str) -> str:
    if text not in COUNT_STATUSES:
        raise ValueError(f"{text!r} is not one of {', '.join(COUNT_STATUSES)}")
    return text


_PARSERS = {
    "value": _parse_fraction, "ci_low": lambda t: _parse_fraction(t, True),
    "ci_high": lambda t: _parse_fraction(t, True),
    "is_primary": _parse_bool, "partial": _parse_bool, "num_samples": _parse_count, "num_failed": _parse_count,
    "num_texts": lambda t: _parse_count(t, True), "task_version": lambda t: _parse_count(t, minimum=1),
    "expected_num_samples": lambda t: _parse_count(t, True, 1),
    "expected_num_texts": lambda t: _parse_count(t, True, 1), "count_status": _parse_status,
}
_NON_EMPTY = ("model", "model_fingerprint", "task", "task_fingerprint", "metric")


def read_task_csv(path: Path) -> list[dict]:
    """The rows of a task CSV, typed and validated: every column present, values fractions in [0, 1], counts
    whole numbers, one task, exactly one primary row. Anything else raises ResultFileError naming the file, the
    line and the column (a damaged or tampered file is never aggregated as it is)."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            raw = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ResultFileError(f"{path}: cannot be read as a task CSV ({type(exc).__name__}: {exc})") from None
    if not header:
        raise ResultFileError(f"{path}: empty file, not an evalsuite task CSV")
    missing = [c for c in TASK_COLUMNS if c not in header]
    if missing:
        raise ResultFileError(f"{path}: missing columns {', '.join(missing)} (not written by this evalsuite"
                              " version, or damaged; re-run the task to rewrite it)")
    if not raw:
        raise ResultFileError(f"{path}: header only, no result rows (damaged; re-run the task)")
    rows = []
    for line, row in enumerate(raw, start=2):
        if None in row or any(row[c] is None for c in TASK_COLUMNS):
            raise ResultFileError(f"{path}:{line}: wrong number of fields (truncated or damaged row)")
        for column in _NON_EMPTY:
            if not row[column]:
                raise ResultFileError(f"{path}:{line}: column {column!r} is empty")
        for column, parse in _PARSERS.items():
            try:
                row[column] = parse(row[column])
            except ValueError as exc:
                raise ResultFileError(f"{path}:{line}: column {column!r}: {exc}") from None
        rows.append(row)
    tasks = {r["task"] for r in rows}
    if len(tasks) != 1:
        raise ResultFileError(f"{path}: rows of several tasks ({', '.join(sorted(tasks))})")
    primaries = sum(r["is_primary"] for r in rows)
    if primaries != 1:
        raise ResultFileError(f"{path}: {primaries} primary-metric rows (expected exactly 1)")
    _check_consistent(path, rows)
    return rows


# written once per result (task_rows' common part), so every row of a file must agree on them
PER_RESULT_COLUMNS = ("model", "model_fingerprint", "adapter", "weights", "task_version", "task_fingerprint",
                      "transform", "protocol", "num_samples", "num_texts", "num_failed", "expected_num_samples",
                      "expected_num_texts", "count_status", "partial")


def _check_consistent(path: Path, rows: list[dict]) -> None:
    """What the counts say must be what the file claims: rows of one result, at least one sample scored, the
    count_status its counts give, intervals the right way round. An edited count or status would otherwise pass
    ``check`` and leave no mark in tables and leaderboards."""
    first = rows[0]
    for line, row in enumerate(rows, start=2):
        other = next((c for c in PER_RESULT_COLUMNS if row[c] != first[c]), None)
        if other is not None:
            raise ResultFileError(f"{path}:{line}: column {other!r} is {row[other]!r}, line 2 says {first[other]!r}"
                                  " (the rows of one result agree on it: edited or mixed files; re-run the task)")
        if row["ci_low"] is not None and row["ci_high"] is not None and row["ci_low"] > row["ci_high"]:
            raise ResultFileError(f"{path}:{line}: ci_low {row['ci_low']} is above ci_high {row['ci_high']}")
    if first["num_samples"] < 1:
        raise ResultFileError(f"{path}:2: column 'num_samples' is 0: no metric is computed over no sample")
    derived = count_status(first["num_samples"], first["expected_num_samples"], first["partial"],
                           first["num_texts"], first["expected_num_texts"])
    if first["count_status"] != derived:
        raise ResultFileError(f"{path}:2: column 'count_status' is {first['count_status']!r}, but its counts"
                              f" ({count_message(first)}, partial {str(first['partial']).lower()}) give"
                              f" {derived!r} (edited; re-run the task)")


def is_done(path: Path, model_fingerprint: str, task_fingerprint: str) -> bool:
    """True when ``path`` holds a complete result for exactly this model and task fingerprint."""
    if not path.is_file():
        return False
    try:
        rows = read_task_csv(path)
    except ResultFileError:
        return False  # unreadable or damaged: evaluate again (the old file goes to history/)
    return bool(rows) and all(
        r["model_fingerprint"] == model_fingerprint and r["task_fingerprint"] == task_fingerprint for r in rows
    )


HISTORY_DIR = "history"
TASK_FILE_SUFFIXES = (".csv", ".predictions.csv", ".errors.txt")  # what a task writes beside its CSV


def move_to_history(model_dir: Path, task: str) -> Optional[Path]:
    """Move ``<task>.csv`` (and its predictions and error list) to ``history/<task>.<fingerprint>.<UTC time>.*``
    before a result with another fingerprint replaces it: an earlier result is never lost silently."""
    path = model_dir / f"{task}.csv"
    if not path.is_file():
        return None
    try:
        with path.open(newline="", encoding="utf-8") as f:
            first = next(csv.DictReader(f), None) or {}
        fingerprint = "".join(ch for ch in str(first.get("task_fingerprint") or "") if ch.isalnum())[:16]
    except (OSError, UnicodeDecodeError, csv.Error):
        fingerprint = ""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    stem = f"{task}.{fingerprint or 'unreadable'}.{stamp}"
    (model_dir / HISTORY_DIR).mkdir(parents=True, exist_ok=True)
    for suffix in TASK_FILE_SUFFIXES:
        source = model_dir / f"{task}{suffix}"
        if source.is_file():
            os.replace(source, model_dir / HISTORY_DIR / f"{stem}{suffix}")
    return model_dir / HISTORY_DIR / f"{stem}.csv"


def current_task_csvs(model_dir: Path, model_fingerprint: str) -> list[str]:
    """Tasks of ``model_dir`` whose top-level CSV was written for this model fingerprint (readable, named after
    its task): what summary.csv lists besides the tasks of the run that writes it."""
    names = []
    for path in sorted(model_dir.glob("*.csv")):
        if path.name.endswith(".predictions.csv") or path.stem in ("summary", "suites"):
            continue
        try:
            rows = read_task_csv(path)
        except ResultFileError:
            continue
        if rows[0]["task"] == path.stem and all(r["model_fingerprint"] == model_fingerprint for r in rows):
            names.append(path.stem)
    return names


def primary_row(rows: list[dict]) -> Optional[dict]:
    return next((r for r in rows if r["is_primary"]), None)


def summary_row(row: dict) -> dict:
    """A task's line in summary.csv, from its primary-metric row."""
    return {"task": row["task"], "primary_metric": row["metric"], "value": row["value"],
            "num_samples": row["num_samples"], "num_failed": row["num_failed"],
            "expected_num_samples": row["expected_num_samples"], "count_status": row["count_status"],
            "partial": row["partial"],
            # not summary.csv columns: what a suite checks its members were made under (mixed_configuration)
            "model_fingerprint": row["model_fingerprint"], "protocol": row["protocol"]}


def write_summary(model_dir: Path, task_names: list[str], model_fingerprint: str,
                  task_fingerprints: dict[str, str]) -> list[dict]:
    """summary.csv: one row per task (its primary metric): the run's tasks whose CSVs match its model and task
    fingerprints, then every other task CSV of the folder made with this model fingerprint (earlier runs' tasks;
    results of other configurations were moved to history/ when replaced)."""
    summary = []
    others = [t for t in current_task_csvs(model_dir, model_fingerprint) if t not in task_names]
    for name in list(task_names) + others:
        path = model_dir / f"{name}.csv"
        if name in task_names and (name not in task_fingerprints
                                   or not is_done(path, model_fingerprint, task_fingerprints[name])):
            continue
        row = primary_row(read_task_csv(path))
        if row:
            summary.append(summary_row(row))
    atomic_write_text(model_dir / "summary.csv", _csv_text(SUMMARY_COLUMNS, summary))
    return summary


def mixed_configuration(rows: list[dict], kinds: list[Optional[str]]) -> Optional[str]:
    """Why a suite's member rows were not all made under one configuration, or None when they were: one model
    fingerprint (weights, preprocessing, precision) and one decoder for all, and one protocol (transform, frame
    rule) among members of one task type (``kinds``; retrieval squashes whatever classification does: its
    type's rule, not a mix). A mean over a mix is the number of no configuration."""
    fingerprints = sorted({r["model_fingerprint"] for r in rows})
    if len(fingerprints) > 1:
        return f"model fingerprints {', '.join(fingerprints)} (other weights, preprocessing or precision)"
    protocols = [parse_protocol(r["protocol"]) for r in rows]
    decoders = sorted({str(p.get("decoder")) for p in protocols})
    if len(decoders) > 1:
        return f"decoders {', '.join(decoders)}"
    by_kind: dict[Optional[str], set[str]] = {}
    for kind, row in zip(kinds, rows):
        by_kind.setdefault(kind, set()).add(row["protocol"])
    mixed = sorted(p for kind, held in by_kind.items() if len(held) > 1 for p in held)
    return f"protocols {' / '.join(mixed)}" if mixed else None


def write_suites(model_dir: Path, suites: dict[str, list[str]], summary: list[dict],
                 member_rows: Optional[dict[str, dict[str, dict]]] = None,
                 kinds: Optional[dict[str, str]] = None) -> list[dict]:
    """suites.csv: the unweighted mean of the members' primary metrics, for suites whose members all ran under
    one configuration (``mixed_configuration``; ``kinds``: task -> task type). ``member_rows[suite][task]``: a
    summary-style row of the metric a suite's ``member_metrics`` names instead (None: not computed, so the suite
    is left out rather than averaged over the primary metric)."""
    rows = []
    for suite, members in suites.items():
        by_task = {r["task"]: r for r in summary} | (member_rows or {}).get(suite, {})
        if not members or not all(by_task.get(m) is not None for m in members):
            continue
        mix = mixed_configuration([by_task[m] for m in members], [(kinds or {}).get(m) for m in members])
        if mix is not None:
            log.warning("suite %s not averaged: its members were made under different configurations (%s);"
                        " re-run them together", suite, mix)
            continue
        values = [by_task[m]["value"] for m in members]
        rows.append({"suite": suite, "value": sum(values) / len(values), "num_tasks": len(members),
                     "tasks": " ".join(members), "count_status": suite_count_status(members, by_task),
                     "partial": any(by_task[m]["partial"] for m in members)})
    atomic_write_text(model_dir / "suites.csv", _csv_text(SUITE_COLUMNS, rows))
    return rows


def suite_count_status(members: list[str], by_task: dict[str, dict]) -> str:
    """``ok``, or the members whose counts differ from the protocol's: ``fewer:imagenet1k more:mnist``."""
    odd = [f"{by_task[m]['count_status']}:{m}" for m in members if by_task[m]["count_status"] in COUNT_MISMATCHES]
    return " ".join(odd) if odd else COUNT_OK


def write_run_manifest(model_dir: Path, manifest: dict) -> None:
    atomic_write_text(model_dir / "run.json", json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")


def format_table(summary: list[dict], suites: list[dict]) -> str:
    """A plain-text table for the terminal: percentages, two decimals."""
    lines = [f"{'task':<28} {'metric':<24} {'value':>8} {'samples':>9} {'failed':>7}"]
    for r in summary:
        mark = " (partial)" if r["partial"] else ""
        if r.get("count_status") in COUNT_MISMATCHES:
            mark += f" ({r['count_status']}: {r['num_samples']} of {r['expected_num_samples']} expected)"
        lines.append(f"{r['task']:<28} {r['primary_metric']:<24} {100 * r['value']:>8.2f} {r['num_samples']:>9}"
                     f" {r['num_failed']:>7}{mark}")
    for s in suites:
        mark = " (partial)" if s["partial"] else ""
        if s.get("count_status", COUNT_OK) != COUNT_OK:
            mark += f" (counts: {s['count_status']})"
        lines.append(f"{'suite ' + s['suite']:<28} {'mean of primary':<24} {100 * s['value']:>8.2f}"
                     f" {s['num_tasks']:>9} tasks{mark}")
    return "\n".join(lines)
