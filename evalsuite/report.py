"""Reports from per-task result CSVs alone: summary/suite tables rebuilt, the paper-style table (Markdown or CSV,
optionally beside reference numbers), the regression check against a reference report, and the leaderboard.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .catalog import Catalog
from .errors import UserInputError
from .reference import ReferenceRow
from .results import SUMMARY_COLUMNS, _csv_text, atomic_write_text, parse_protocol, read_task_csv, write_suites

NOT_TASK_CSV = ("summary.csv", "suites.csv")
RETRIEVAL_COLUMNS = [f"{d}_retrieval_recall@{k}" for d in ("text", "image") for k in (1, 5, 10)]
SUITES_FIRST = ["eva_cls27", "imagenet_variants", "eva_video", "eva_retrieval"]


@dataclass
class ModelRun:
    """One model's results folder (``results/<model>/``): its task CSVs, read as rows."""

    folder: Path
    tasks: dict[str, list[dict]] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return next(iter(self.tasks.values()))[0]["model"]

    def row(self, task: str, metric: Optional[str] = None) -> Optional[dict]:
        rows = self.tasks.get(task, [])
        return next((r for r in rows if (r["metric"] == metric if metric else r["is_primary"])), None)


def _is_task_csv(path: Path) -> bool:
    return path.suffix == ".csv" and path.name not in NOT_TASK_CSV and not path.name.endswith(".predictions.csv")


def load_runs(path: Path) -> list[ModelRun]:
    """``path`` is one model's folder (task CSVs inside) or a folder of such folders."""
    if not path.is_dir():
        raise UserInputError(f"{path}: not a folder of results")
    folders = [path] if any(_is_task_csv(p) for p in path.iterdir()) else sorted(
        d for d in path.iterdir() if d.is_dir() and any(_is_task_csv(p) for p in d.iterdir()))
    if not folders:
        raise UserInputError(f"{path}: no task result CSVs here or in its sub-folders (expected results/<model>/)")
    runs = []
    for folder in folders:
        run = ModelRun(folder)
        for csv_path in sorted(p for p in folder.iterdir() if _is_task_csv(p)):
            try:
                rows = read_task_csv(csv_path)
            except (KeyError, ValueError, csv.Error) as exc:
                raise UserInputError(f"{csv_path}: not an evalsuite task CSV ({type(exc).__name__}: {exc})") from None
            if rows:
                run.tasks[rows[0]["task"]] = rows
        runs.append(run)
    return runs


def rebuild_tables(run: ModelRun, catalog: Catalog) -> tuple[list[dict], list[dict]]:
    """summary.csv and suites.csv of ``run`` from its task CSVs (whatever run produced them)."""
    summary = []
    for task in sorted(run.tasks):
        row = run.row(task)
        if row:
            summary.append({"task": task, "primary_metric": row["metric"], "value": row["value"],
                            "num_samples": row["num_samples"], "num_failed": row["num_failed"],
                            "partial": row["partial"]})
    atomic_write_text(run.folder / "summary.csv", _csv_text(SUMMARY_COLUMNS, summary))
    suites = write_suites(run.folder, {s: catalog.suite_members(s) for s in catalog.suites}, summary)
    return summary, suites


def suite_value(run: ModelRun, members: list[str]) -> Optional[float]:
    rows = [run.row(m) for m in members]
    return None if any(r is None for r in rows) else sum(r["value"] for r in rows) / len(rows)


# ---------------------------------------------------------------------------------------------------------------
# the paper-style table


@dataclass(frozen=True)
class Column:
    header: str
    task: str  # task name, or suite:<name>
    metric: Optional[str] = None  # None: the task's primary metric (mean_primary for suites)


def paper_columns(catalog: Catalog) -> list[Column]:
    cols = [Column(t, t) for t in catalog.suite_members("eva_cls27")] + [Column("avg27", "suite:eva_cls27")]
    cols += [Column(t, t) for t in catalog.suite_members("eva_video")] + [Column("video avg", "suite:eva_video")]
    for task in catalog.suite_members("eva_retrieval"):
        cols += [Column(f"{task} {m.replace('_retrieval_recall@', ' R@')}", task, m) for m in RETRIEVAL_COLUMNS]
    return cols + [Column("MR", "suite:eva_retrieval")]


def column_value(run: ModelRun, col: Column, catalog: Catalog) -> Optional[float]:
    """Percent, or None when the run lacks it."""
    if col.task.startswith("suite:"):
        value = suite_value(run, catalog.suite_members(col.task[6:]))
    else:
        row = run.row(col.task, col.metric)
        value = row["value"] if row else None
    return None if value is None else 100 * value


def reference_value(refs: list[ReferenceRow], model: str, col: Column, run: ModelRun) -> Optional[float]:
    if col.task.startswith("suite:"):
        metric = "mean_primary"
    else:
        metric = col.metric or (run.row(col.task) or {}).get("metric")
    return next((r.value for r in refs if r.model == model and r.task == col.task and r.metric == metric), None)


def paper_table(runs: list[ModelRun], catalog: Catalog, refs: Optional[list[ReferenceRow]] = None,
                fmt: str = "md") -> str:
    cols = [c for c in paper_columns(catalog) if any(column_value(r, c, catalog) is not None for r in runs)]
    if not cols:
        raise UserInputError("none of the runs has a result for a paper-table column (EVA-CLIP tasks or suites)")
    table = []
    for run in runs:
        cells = {}
        for col in cols:
            value = column_value(run, col, catalog)
            ref = reference_value(refs, run.model, col, run) if refs else None
            cells[col.header] = (value, ref)
        table.append((run.model, cells))
    if fmt == "csv":
        header = ["model"] + [h for c in cols for h in ([c.header, f"{c.header} ref", f"{c.header} delta"]
                                                        if refs else [c.header])]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        for model, cells in table:
            row = [model]
            for col in cols:
                value, ref = cells[col.header]
                row.append("" if value is None else f"{value:.2f}")
                if refs:
                    row += ["" if ref is None else f"{ref:g}",
                            "" if value is None or ref is None else f"{value - ref:+.2f}"]
            writer.writerow(row)
        return buf.getvalue()

    def cell(value, ref):
        text = "–" if value is None else f"{value:.1f}"
        if refs and ref is not None:
            text += f" ({ref:g}" + ("" if value is None else f", {value - ref:+.1f}") + ")"
        return text

    lines = ["| model | " + " | ".join(c.header for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for model, cells in table:
        lines.append(f"| {model} | " + " | ".join(cell(*cells[c.header]) for c in cols) + " |")
    if refs:
        lines.append("\nCells: value (reference, delta) in percent.")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# check against a reference report


@dataclass
class CheckReport:
    lines: list[str] = field(default_factory=list)
    compared: int = 0
    breaches: int = 0
    refused: int = 0
    not_run: int = 0

    @property
    def exit_code(self) -> int:
        if self.refused or not self.compared:
            return 2
        return 4 if self.breaches else 0


def _refusal(rows: list[dict], ref: ReferenceRow) -> Optional[str]:
    for row in rows:
        if row["partial"]:
            return f"{row['task']}: partial result (--limit run); the reference is on the full dataset"
        protocol = parse_protocol(row.get("protocol", ""))
        transform = protocol.get("transform", row.get("transform", ""))
        if transform != ref.transform:
            return (f"{row['task']}: run with transform {transform or '?'}, the reference assumes {ref.transform}"
                    f" (rerun with --transform {ref.transform})")
        if ref.frame_rule and protocol.get("frame_rule") != ref.frame_rule:
            return (f"{row['task']}: frame rule {protocol.get('frame_rule', '?')}, the reference assumes"
                    f" {ref.frame_rule}")
    return None


def check_run(run: ModelRun, refs: list[ReferenceRow], catalog: Catalog, tolerance: Optional[float] = None,
              model: Optional[str] = None) -> CheckReport:
    model = model or run.model
    report = CheckReport()
    for ref in (r for r in refs if r.model == model):
        if ref.is_suite:
            members = catalog.suite_members(ref.task[6:])
            rows = [run.row(m) for m in members]
            if any(r is None for r in rows):
                report.not_run += 1
                continue
            value = sum(r["value"] for r in rows) / len(rows)
        else:
            row = run.row(ref.task, ref.metric)
            if row is None:
                report.not_run += 1
                continue
            rows, value = [row], row["value"]
        label = f"{model} {ref.task} {ref.metric}"
        why = _refusal(rows, ref)
        if why:
            report.refused += 1
            report.lines.append(f"REFUSED {label}: {why}")
            continue
        tol = ref.tolerance_pp if tolerance is None else tolerance
        delta = 100 * value - ref.value
        ok = abs(delta) <= tol + 1e-9
        report.compared += 1
        report.breaches += not ok
        report.lines.append(f"{'ok     ' if ok else 'BREACH '} {label}: {100 * value:.2f} vs {ref.value:g}"
                            f" (delta {delta:+.2f} pp, tolerance {tol:g})")
    summary = (f"{report.compared} compared, {report.breaches} beyond tolerance, {report.refused} refused,"
               f" {report.not_run} reference values without a result in {run.folder}")
    if not report.compared and not report.refused:
        summary += f"; nothing comparable for model {model!r}"
    report.lines.append(summary)
    return report


# ---------------------------------------------------------------------------------------------------------------
# leaderboard


def leaderboard(runs: list[ModelRun], catalog: Catalog, params: dict[str, float]) -> tuple[str, str]:
    """(display CSV, long CSV). Display: one row per (model, run), suites first then per-task primary metrics in
    paper order, percent with 2 decimals. Long: model, run, column, value (fraction, full precision)."""
    suites = [s for s in SUITES_FIRST if s in catalog.suites]
    tasks = [t for s in ("eva_cls27", "eva_video", "eva_retrieval") if s in catalog.suites
             for t in catalog.suite_members(s)]
    extra = sorted({t for r in runs for t in r.tasks} - set(tasks))
    tasks += extra
    display, long_rows = io.StringIO(), io.StringIO()
    d, lw = csv.writer(display, lineterminator="\n"), csv.writer(long_rows, lineterminator="\n")
    d.writerow(["model", "run", "params_millions"] + suites + tasks)
    lw.writerow(["model", "run", "column", "metric", "value", "partial"])
    for run in runs:
        values = []
        for s in suites:
            members = catalog.suite_members(s)
            v = suite_value(run, members)
            values.append(v)
            if v is not None:
                partial = any(run.row(m)["partial"] for m in members)
                lw.writerow([run.model, str(run.folder), f"suite:{s}", "mean_primary", repr(v), str(partial).lower()])
        for t in tasks:
            row = run.row(t)
            values.append(row["value"] if row else None)
            if row:
                lw.writerow([run.model, str(run.folder), t, row["metric"], repr(row["value"]),
                             str(row["partial"]).lower()])
        p = params.get(run.model)
        d.writerow([run.model, str(run.folder), "" if p is None else f"{p:g}"]
                   + ["" if v is None else f"{100 * v:.2f}" for v in values])
    return display.getvalue(), long_rows.getvalue()
