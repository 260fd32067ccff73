"""Reports from per-task result CSVs alone: summary/suite tables rebuilt, the paper-style table (Markdown or CSV,
optionally beside reference numbers), the regression check against a reference report, and the leaderboard.

Every task CSV is validated when read (results.read_task_csv: a damaged or tampered file stops the command, exit 2,
naming file, line and column), and only the files a run writes are read: ``<task>.csv`` whose ``task`` column is
``<task>`` (a stray copy such as ``cifar10_old.csv`` is ignored with a warning; ``history/`` is never read).
Results whose sample count differs from the protocol's (``count_status`` fewer/more) or that are partial
(``--limit``) are marked in every table, and ``check`` refuses them.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .catalog import Catalog
from .errors import UserInputError
from .reference import ReferenceRow, load_layout
from .results import (
    COUNT_LIMIT,
    COUNT_MISMATCHES,
    SUMMARY_COLUMNS,
    _csv_text,
    atomic_write_text,
    count_message,
    mixed_configuration,
    parse_protocol,
    read_task_csv,
    suite_count_status,
    summary_row,
    write_suites,
)

log = logging.getLogger("evalsuite.report")

NOT_TASK_CSV = ("summary.csv", "suites.csv")
HISTORY_DIR = "history"  # earlier results moved aside by a run: never read by reports
MARK_COUNT, MARK_PARTIAL = "†", "‡"  # dagger: sample count differs from the protocol's; double: --limit


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

    def flags(self, tasks) -> list[str]:
        """``imagenet1k:fewer(1000/50000)`` for each of ``tasks`` whose count is not the protocol's or partial."""
        return [f for f in (count_flag(self.row(t)) for t in tasks if self.row(t)) if f]

    def marks(self, tasks) -> str:
        """The table marks for a cell made of ``tasks``' results."""
        rows = [self.row(t) for t in tasks if self.row(t)]
        return ((MARK_COUNT if any(r["count_status"] in COUNT_MISMATCHES for r in rows) else "")
                + (MARK_PARTIAL if any(is_partial(r) for r in rows) else ""))


def is_partial(row: dict) -> bool:
    return row["partial"] or row["count_status"] == COUNT_LIMIT


def count_flag(row: dict) -> str:
    """``task:fewer(1000/50000)``, ``task:limit(500/10000)``, with ``,24000/25010 texts`` for captions; '' when the
    count is the protocol's (or the task states none)."""
    status = COUNT_LIMIT if is_partial(row) else row["count_status"]
    if status not in COUNT_MISMATCHES and status != COUNT_LIMIT:
        return ""
    counts = f"{row['num_samples']}/{row['expected_num_samples'] or '?'}"
    if row.get("expected_num_texts") not in (None, ""):
        counts += f",{row['num_texts']}/{row['expected_num_texts']} texts"
    return f"{row['task']}:{status}({counts})"


def _candidate_csvs(folder: Path) -> list[Path]:
    """Top-level CSVs that could be task results (summary/suites tables and predictions are not)."""
    return sorted(p for p in folder.iterdir() if p.suffix == ".csv" and p.is_file() and not p.name.startswith(".")
                  and p.name not in NOT_TASK_CSV and not p.name.endswith(".predictions.csv"))


def _task_column(path: Path) -> Optional[set[str]]:
    """The values of a CSV's ``task`` column, or None when it has none to read (empty, header only, no column)."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if "task" not in (reader.fieldnames or []):
                return None
            return {r["task"] for r in reader if r.get("task")} or None
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def load_runs(path: Path, known_tasks=None) -> list[ModelRun]:
    """``path`` is one model's folder (task CSVs inside) or a folder of such folders (then CSVs of its own that
    are no task result, such as an export's ``leaderboard.csv``, are passed over without a warning).

    Read are ``<task>.csv`` files whose ``task`` column is ``<task>``, validated (a damaged one raises
    ResultFileError, exit 2). A CSV holding another task's rows (``cifar10_old.csv``) is ignored, as is an unreadable
    one whose name is no task of ``known_tasks`` (when given); one warning names them. ``history/`` is not read."""
    if not path.is_dir():
        raise UserInputError(f"{path}: not a folder of results")
    own, own_ignored = _task_csvs(path, known_tasks)
    if own:
        folders = [(path, own, own_ignored)]
    else:  # a folder of model folders; its own CSVs (an export's leaderboard.csv) are no run
        folders = [(d, *_task_csvs(d, known_tasks)) for d in sorted(path.iterdir())
                   if d.is_dir() and d.name != HISTORY_DIR]
    runs, ignored = [], []
    for folder, task_csvs, strays in folders:
        ignored += strays
        nested = [d for d in sorted(folder.iterdir()) if task_csvs and d.is_dir() and d.name != HISTORY_DIR
                  and _task_csvs(d, known_tasks)[0]]
        if nested:  # run --output-dir results/<model> puts the next run in results/<model>/<model>
            log.warning("%s holds task results and, below it, folders that hold results too (%s): those are not"
                        " read; give each folder on its own, or move them beside %s", folder,
                        ", ".join(str(d) for d in nested), folder)
        run = ModelRun(folder)
        for csv_path in task_csvs:
            run.tasks[csv_path.stem] = read_task_csv(csv_path)  # ResultFileError (exit 2) for a damaged file
        if run.tasks:
            runs.append(run)
    if not runs:
        ignored = own_ignored + ignored
    if ignored:
        log.warning("ignored %d CSV file(s) that are not a task result a run wrote (<task>.csv holding task"
                    " <task>): %s", len(ignored), "; ".join(ignored))
    if not runs:
        raise UserInputError(f"{path}: no task result CSVs here or in its sub-folders (expected results/<model>/)")
    return runs


def _task_csvs(folder: Path, known_tasks) -> tuple[list[Path], list[str]]:
    """(the task result CSVs of ``folder``, why each other candidate CSV is not one)."""
    accepted, ignored = [], []
    for csv_path in _candidate_csvs(folder):
        tasks, name = _task_column(csv_path), csv_path.stem
        if tasks is not None and name not in tasks:
            ignored.append(f"{csv_path} (holds task {', '.join(sorted(tasks))})")
        elif tasks is None and known_tasks is not None and name not in known_tasks:
            ignored.append(f"{csv_path} (no task column to read, and {name!r} is no known task)")
        else:
            accepted.append(csv_path)
    return accepted, ignored


def rebuild_tables(run: ModelRun, catalog: Catalog) -> tuple[list[dict], list[dict]]:
    """summary.csv and suites.csv of ``run`` from its task CSVs (those load_runs accepted), with count_status."""
    summary = [summary_row(run.row(task)) for task in sorted(run.tasks)]
    atomic_write_text(run.folder / "summary.csv", _csv_text(SUMMARY_COLUMNS, summary))
    # members a suite averages by another metric than their primary (None: the run lacks that metric)
    other = {s: {t: (summary_row(r) if (r := run.row(t, m)) else None) for t, m in spec.member_metrics.items()}
             for s, spec in catalog.suites.items() if spec.member_metrics}
    suites = write_suites(run.folder, {s: catalog.suite_members(s) for s in catalog.suites}, summary, other,
                          catalog.task_types())
    return summary, suites


def suites_first(catalog: Catalog) -> list[str]:
    """The suites leaderboards and plots show first (results/reference/layout.yaml), those the catalogue has."""
    return [s for s in load_layout()["report"]["suites_first"] if s in catalog.suites]


def not_averaged() -> list[str]:
    """Suites whose mean no table or plot shows (results/reference/layout.yaml)."""
    return load_layout()["report"]["not_averaged"]


def paper_suites(catalog: Catalog) -> list[str]:
    """The suites of the paper-style table, in its order, those the catalogue has."""
    return [g["suite"] for g in load_layout()["report"]["paper_table"] if g["suite"] in catalog.suites]


def suite_rows(run: ModelRun, catalog: Catalog, suite: str) -> list[Optional[dict]]:
    """Per member, the row the suite averages: the suite's ``member_metrics`` metric, else the primary one."""
    return [run.row(m, catalog.member_metric(suite, m)) for m in catalog.suite_members(suite)]


def suite_value(run: ModelRun, catalog: Catalog, suite: str) -> Optional[float]:
    """The mean of the suite's member rows; None when one is missing or they mix configurations
    (``results.mixed_configuration``): leaderboards, plots, the HTML report and ``check`` show no mean then."""
    rows = suite_rows(run, catalog, suite)
    if not rows or any(r is None for r in rows):
        return None
    if suite_mix(rows, catalog, suite) is not None:
        return None
    return sum(r["value"] for r in rows) / len(rows)


def suite_mix(rows: list[dict], catalog: Catalog, suite: str) -> Optional[str]:
    """``results.mixed_configuration`` of a suite's member rows (``suite_rows``, all present)."""
    types = catalog.task_types()
    return mixed_configuration(rows, [types.get(m) for m in catalog.suite_members(suite)])


# ---------------------------------------------------------------------------------------------------------------
# the paper-style table


@dataclass(frozen=True)
class Column:
    header: str
    task: str  # task name, or suite:<name>
    metric: Optional[str] = None  # None: the task's primary metric (mean_primary for suites)


def paper_columns(catalog: Catalog) -> list[Column]:
    """The paper-style layout (results/reference/layout.yaml ``report.paper_table``): per group its suite's
    members (one column per listed metric, else the primary one), then the suite's average."""
    cols = []
    for group in load_layout()["report"]["paper_table"]:
        suite = group["suite"]
        if suite not in catalog.suites:
            continue
        for task in catalog.suite_members(suite):
            metrics = group.get("metrics")
            cols += ([Column(f"{task} {m.replace('_retrieval_recall@', ' R@')}", task, m) for m in metrics]
                     if metrics else [Column(task, task, catalog.member_metric(suite, task))])
        cols.append(Column(group["average"], f"suite:{suite}"))
    return cols


def other_columns(runs: list[ModelRun], catalog: Catalog) -> list[Column]:
    """After the paper layout: every other task the runs hold (user-defined tasks, the demo), then the averages of
    the other suites whose members they all hold."""
    shown = {t for c in paper_columns(catalog) for t in column_tasks(c, catalog)}
    tasks = sorted({t for run in runs for t in run.tasks} - shown)
    in_paper = {c.task[6:] for c in paper_columns(catalog) if c.task.startswith("suite:")}
    suites = [s for s in sorted(catalog.suites) if s not in in_paper and s not in not_averaged()
              and set(catalog.suite_members(s)) <= set(tasks)]
    return [Column(t, t) for t in tasks] + [Column(f"{s} avg", f"suite:{s}") for s in suites]


def column_tasks(col: Column, catalog: Catalog) -> list[str]:
    """The tasks whose results make a column's value."""
    return catalog.suite_members(col.task[6:]) if col.task.startswith("suite:") else [col.task]


def column_value(run: ModelRun, col: Column, catalog: Catalog) -> Optional[float]:
    """Percent, or None when the run lacks it."""
    if col.task.startswith("suite:"):
        value = suite_value(run, catalog, col.task[6:])
    else:
        row = run.row(col.task, col.metric)
        value = row["value"] if row else None
    return None if value is None else 100 * value


def reference_row(refs: list[ReferenceRow], col: Column, run: ModelRun) -> Optional[ReferenceRow]:
    """The reference row for a run's column: the suite's mean_primary, else the column's (or the task's primary)
    metric, under the run's model name."""
    if col.task.startswith("suite:"):
        metric = "mean_primary"
    else:
        metric = col.metric or (run.row(col.task) or {}).get("metric")
    return next((r for r in refs if r.model == run.model and r.task == col.task and r.metric == metric), None)


def column_rows(run: ModelRun, col: Column, catalog: Catalog) -> list[dict]:
    """The result rows a column's value is made of (a suite's member rows; those the run has)."""
    rows = suite_rows(run, catalog, col.task[6:]) if col.task.startswith("suite:") else [run.row(col.task, col.metric)]
    return [r for r in rows if r]


def not_compared(run: ModelRun, col: Column, catalog: Catalog, ref: ReferenceRow) -> Optional[str]:
    """Why a column's value must not be shown against ``ref`` (what ``check`` would skip or refuse), or None."""
    if ref.not_reproducible:
        return f"not reproducible by evalsuite ({ref.not_reproducible})"
    return _refusal(column_rows(run, col, catalog), ref, catalog=catalog)


def _footnotes(run: ModelRun, tasks: list[str]) -> list[str]:
    notes = []
    for task in tasks:
        row = run.row(task)
        if not row or not count_flag(row):
            continue
        if is_partial(row):
            notes.append(f"{MARK_PARTIAL} {run.model} {task}: partial (--limit subset), {count_message(row)}")
        else:
            notes.append(f"{MARK_COUNT} {run.model} {task}: count {row['count_status']}, {count_message(row)} (not"
                         " the protocol's sample set)")
    return notes


def paper_table(runs: list[ModelRun], catalog: Catalog, refs: Optional[list[ReferenceRow]] = None,
                fmt: str = "md") -> str:
    """Markdown: a value whose sample count differs from the protocol's is marked †, a partial one ‡
    (suite cells when a member is), with a footnote per task naming the counts. CSV: a ``flags`` column lists
    them (``imagenet1k:fewer(1000/50000)``). With ``refs``, a value ``check`` would refuse or skip (partial,
    another sample count or protocol, a reference evalsuite cannot reproduce) shows the reference but no delta:
    "not compared" in Markdown with a note saying why, an empty delta and a ``not_compared`` column in CSV."""
    cols = [c for c in paper_columns(catalog) + other_columns(runs, catalog)
            if any(column_value(r, c, catalog) is not None for r in runs)]
    if not cols:
        raise UserInputError("none of the runs has a task result to tabulate")
    shown_tasks = list(dict.fromkeys(t for c in cols for t in column_tasks(c, catalog)))
    table = []
    for run in runs:
        cells = {}
        for col in cols:
            value = column_value(run, col, catalog)
            ref = reference_row(refs, col, run) if refs else None
            why = not_compared(run, col, catalog, ref) if ref is not None and value is not None else None
            cells[col.header] = (value, None if ref is None else ref.value,
                                 run.marks(column_tasks(col, catalog)) if value is not None else "", why)
        table.append((run, cells))
    if fmt == "csv":
        header = ["model"] + [h for c in cols for h in ([c.header, f"{c.header} ref", f"{c.header} delta"]
                                                        if refs else [c.header])] + ["flags"]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header + (["not_compared"] if refs else []))
        for run, cells in table:
            row = [run.model]
            for col in cols:
                value, ref, _, why = cells[col.header]
                row.append("" if value is None else f"{value:.2f}")
                if refs:
                    row += ["" if ref is None else f"{ref:g}",
                            "" if value is None or ref is None or why else f"{value - ref:+.2f}"]
            row.append(" ".join(run.flags(shown_tasks)))
            if refs:
                row.append("; ".join(f"{h}: {c[3]}" for h, c in cells.items() if c[3]))
            writer.writerow(row)
        return buf.getvalue()

    def cell(value, ref, marks, why):
        text = "–" if value is None else f"{value:.1f}{marks}"
        if refs and ref is not None:
            text += f" ({ref:g}" + ("" if value is None else ", not compared" if why else f", {value - ref:+.1f}") + ")"
        return text

    lines = ["| model | " + " | ".join(c.header for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for run, cells in table:
        lines.append(f"| {run.model} | " + " | ".join(cell(*cells[c.header]) for c in cols) + " |")
    if refs:
        lines.append("\nCells: value (reference, delta) in percent.")
    notes = [n for run, _ in table for n in _footnotes(run, shown_tasks)]
    notes += [f"not compared: {run.model} {header}: {c[3]}" for run, cells in table for header, c in cells.items()
              if c[3]]
    if notes:
        lines.append("")
        lines += notes
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
    not_reproducible: int = 0  # reference rows of a protocol evalsuite cannot run (skipped, said why)
    allowed: int = 0  # compared despite a count mismatch (--allow-count-mismatch)
    missing: list[str] = field(default_factory=list)  # reproducible reference values the run has no result for
    require_all: bool = False  # --require-all: a missing result fails the check

    @property
    def exit_code(self) -> int:
        """4 on any breach (even when other rows are refused); else 2 when something is refused, nothing was
        comparable, or (``require_all``) a reproducible reference value has no result; else 0."""
        if self.breaches:
            return 4
        return 2 if self.refused or not self.compared or (self.require_all and self.missing) else 0


PROTOCOL_KEYS = ("transform", "decoder", "precision")  # what every result's protocol records (frame_rule: video)
PRECISION_ADVICE = {mode: f"rerun with --precision {mode}" for mode in ("fp32", "amp_fp16", "amp_bf16", "fp16", "bf16")}
PRECISION_ADVICE["amp_fp16"] = "run on CUDA, where the EVA cards default to amp_fp16, or pass --precision amp_fp16"


def _protocol_reasons(row: dict, ref: ReferenceRow, catalog: Optional[Catalog] = None) -> list[str]:
    """Why ``row`` was not made under the protocol ``ref`` assumes (one short reason each, with the fix; with the
    ``catalog``, a transform its task type fixes is said to be no rerun's to change)."""
    protocol = parse_protocol(row["protocol"])
    missing = [k for k in PROTOCOL_KEYS + (("frame_rule",) if ref.frame_rule else ()) if k not in protocol]
    if missing:
        return [f"unknown protocol (no {', '.join(missing)} in its protocol column {row['protocol']!r}: written by"
                " an older evalsuite or edited; re-run the task)"]
    reasons = []
    if protocol.get("prompts") == "include-path":
        reasons.append("prompts from an --include-path file that shadows the built-in one, never the paper's"
                       " (rerun without that prompt file)")
    if protocol["transform"] != ref.transform:
        if catalog is not None and _fixed_resize(catalog, row["task"]) == protocol["transform"]:
            reasons.append(f"transform {protocol['transform']}, the reference assumes {ref.transform}; the task's"
                           f" type always resizes by {protocol['transform']} (--transform does not apply), so"
                           " evalsuite cannot reproduce this number (mark the reference row not_reproducible)")
        else:
            reasons.append(f"transform {protocol['transform']}, the reference assumes {ref.transform}"
                           f" (rerun with --transform {ref.transform})")
    if ref.decoder and protocol["decoder"] != ref.decoder:
        reasons.append(f"decoder {protocol['decoder']}, the reference assumes {ref.decoder}"
                       f" (rerun with --decoder {ref.decoder})")
    if ref.precision and protocol["precision"] != ref.precision:
        advice = PRECISION_ADVICE.get(ref.precision, f"rerun in precision {ref.precision}")
        reasons.append(f"precision {protocol['precision']}, the reference assumes {ref.precision} ({advice})")
    if ref.frame_rule and protocol["frame_rule"] != ref.frame_rule:
        reasons.append(f"frame rule {protocol['frame_rule']}, the reference assumes {ref.frame_rule} (set the"
                       f" task's source.args.frame_rule: {ref.frame_rule})")
    return reasons


def _fixed_resize(catalog: Catalog, task: str) -> Optional[str]:
    """The resize a task's type prescribes whatever --transform says (retrieval: squash), or None."""
    from .tasks import TASK_TYPES

    spec = catalog.tasks.get(task)
    return None if spec is None else getattr(TASK_TYPES.get(spec.type), "fixed_resize", None)


def _row_refusal(row: dict, ref: ReferenceRow, allow_count_mismatch: bool,
                 catalog: Optional[Catalog] = None) -> Optional[str]:
    reasons = []
    if is_partial(row):
        reasons.append(f"partial result (--limit run: {count_message(row)}); the reference is on the full dataset")
    elif row["count_status"] in COUNT_MISMATCHES and not allow_count_mismatch:
        reasons.append(f"count {row['count_status']}: {count_message(row)}; the reference is on the protocol's"
                       " full set (--allow-count-mismatch compares anyway)")
    reasons += _protocol_reasons(row, ref, catalog)
    if catalog is not None:
        reasons += filter(None, [_other_expected_counts(row, catalog)])
    return "; ".join(reasons) or None


def _refusal(rows: list[dict], ref: ReferenceRow, allow_count_mismatch: bool = False,
             catalog: Optional[Catalog] = None) -> Optional[str]:
    """Why ``rows`` (one task's, or a suite's members') cannot be compared with ``ref``, or None."""
    why = {r["task"]: w for r in rows if (w := _row_refusal(r, ref, allow_count_mismatch, catalog))}
    if not why:
        return None
    if not ref.is_suite:
        return next(iter(why.values()))
    first = next(iter(why))
    return (f"{len(why)} of {len(rows)} members refused: {', '.join(why)} ({first}: {why[first]})")


def _other_expected_counts(row: dict, catalog: Catalog) -> Optional[str]:
    """A result whose expected counts are not its task file's: written under another definition of the task, or
    edited (its count_status would then say nothing about the protocol's sample set)."""
    spec = catalog.tasks.get(row["task"])
    stated = (row["expected_num_samples"], row["expected_num_texts"])
    if spec is None or stated == (spec.expected_num_samples, spec.expected_num_texts):
        return None
    return (f"{row['task']}: the result expects {stated[0]} samples ({stated[1]} captions), its task file"
            f" {spec.expected_num_samples} ({spec.expected_num_texts}): another task definition or an edited file;"
            " re-run the task")


def check_run(run: ModelRun, refs: list[ReferenceRow], catalog: Catalog, tolerance: Optional[float] = None,
              model: Optional[str] = None, allow_count_mismatch: bool = False,
              require_all: bool = False) -> CheckReport:
    """``require_all``: a reference value the run has no result for (a task that failed or was left out) is a
    ``MISSING`` line and fails the check, so CI cannot pass on the tasks that happened to finish."""
    model = model or run.model
    report = CheckReport(require_all=require_all)
    for ref in (r for r in refs if r.model == model):
        mix = None
        label = f"{model} {ref.task} {ref.metric}"
        if ref.is_suite:
            rows = suite_rows(run, catalog, ref.task[6:])
            absent = [m for m, r in zip(catalog.suite_members(ref.task[6:]), rows) if r is None]
            value = None if absent else sum(r["value"] for r in rows) / len(rows)
            mix = None if absent else suite_mix(rows, catalog, ref.task[6:])
        else:
            row = run.row(ref.task, ref.metric)
            absent = [] if row is not None else [ref.task]
            rows, value = [row], None if row is None else row["value"]
        if absent:
            report.not_run += 1
            if not ref.not_reproducible:
                report.missing.append(label if not ref.is_suite else f"{label} (no result for {', '.join(absent)})")
                if require_all:
                    report.lines.append(f"MISSING {report.missing[-1]}: no result in {run.folder}")
            continue
        if ref.not_reproducible:
            report.not_reproducible += 1
            report.lines.append(f"SKIPPED {label}: not reproducible by evalsuite: {ref.not_reproducible}")
            continue
        why = _refusal(rows, ref, allow_count_mismatch, catalog) or (
            f"its members were made under different configurations ({mix})" if mix else None)
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
        odd = [r for r in rows if r["count_status"] in COUNT_MISMATCHES]
        if odd:
            report.allowed += 1
            report.lines.append("        counts differ, compared because of --allow-count-mismatch: "
                                + "; ".join(f"{r['task']} {r['count_status']} ({count_message(r)})" for r in odd))
    summary = (f"{report.compared} compared, {report.breaches} beyond tolerance, {report.refused} refused,"
               f" {report.not_reproducible} not reproducible (skipped), {report.not_run} reference values without a"
               f" result in {run.folder}")
    if report.allowed:
        summary += f"; {report.allowed} compared despite sample counts that differ (--allow-count-mismatch)"
    if not report.compared and not report.refused:
        summary += f"; nothing comparable for model {model!r}"
    if require_all and report.missing:
        summary += f"; {len(report.missing)} missing (--require-all)"
    report.lines.append(summary)
    return report


# ---------------------------------------------------------------------------------------------------------------
# leaderboard


def leaderboard_columns(runs: list[ModelRun], catalog: Catalog) -> tuple[list[str], list[str]]:
    """(suites, tasks) of the leaderboard: the EVA suites, then every other suite (but ``all``) some run holds
    whole; the EVA tasks in paper order, then every other task the runs hold."""
    suites = suites_first(catalog)
    held = [set(r.tasks) for r in runs]
    suites += [s for s in sorted(catalog.suites) if s not in suites and s not in not_averaged()
               and catalog.suite_members(s)
               and any(set(catalog.suite_members(s)) <= h for h in held)]
    tasks = list(dict.fromkeys(t for s in paper_suites(catalog) for t in catalog.suite_members(s)))
    tasks += sorted({t for r in runs for t in r.tasks} - set(tasks))
    return suites, tasks


def _pct(value: Optional[float]) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def leaderboard(runs: list[ModelRun], catalog: Catalog, params: dict[str, float]) -> tuple[str, str]:
    """(display CSV, long CSV). Display: one row per (model, run), suites first then per-task primary metrics in
    paper order, percent with 2 decimals, a ``flags`` column naming the tasks whose sample count is not the
    protocol's or partial (``imagenet1k:fewer(1000/50000)``), ``partial`` (true when any shown result is), then
    per task ``<task> ci_low``, ``<task> ci_high`` (the primary metric's 95% bootstrap interval, percent),
    ``<task> num_samples``, ``<task> count_status`` and per suite ``<suite> count_status`` (``ok`` or its odd
    members), then how the numbers were made: ``model_fingerprint``, ``precision`` and ``decoder`` (the distinct
    values of the shown results, space-separated: two values name a run mixing configurations). Long: model,
    run, column, metric, value (fraction, full precision), partial, count_status (a suite's: ``ok`` or its odd
    members), num_samples, expected_num_samples, ci_low, ci_high (fractions), model_fingerprint, protocol (a
    task's protocol cell; a suite's: its members' distinct ones, space-separated)."""
    suites, tasks = leaderboard_columns(runs, catalog)
    display, long_rows = io.StringIO(), io.StringIO()
    d, lw = csv.writer(display, lineterminator="\n"), csv.writer(long_rows, lineterminator="\n")
    details = [f"{t} {c}" for t in tasks for c in ("ci_low", "ci_high", "num_samples", "count_status")]
    d.writerow(["model", "run", "params_millions"] + suites + tasks + ["flags", "partial"] + details
               + [f"{s} count_status" for s in suites] + ["model_fingerprint", "precision", "decoder"])
    lw.writerow(["model", "run", "column", "metric", "value", "partial", "count_status", "num_samples",
                 "expected_num_samples", "ci_low", "ci_high", "model_fingerprint", "protocol"])
    for run in runs:
        values, suite_status, partial, shown = [], [], False, []
        for s in suites:
            members = catalog.suite_members(s)
            v = suite_value(run, catalog, s)
            values.append(v)
            suite_status.append("")
            if v is not None:
                by_task = dict(zip(members, suite_rows(run, catalog, s)))
                suite_partial = any(is_partial(r) for r in by_task.values())
                suite_status[-1] = suite_count_status(members, by_task)
                shown += by_task.values()
                lw.writerow([run.model, str(run.folder), f"suite:{s}", "mean_primary", repr(v),
                             str(suite_partial).lower(), suite_status[-1], "", "", "", "",
                             _distinct(by_task.values(), "model_fingerprint"), _distinct(by_task.values(), "protocol")])
        detail_cells = []
        for t in tasks:
            row = run.row(t)
            values.append(row["value"] if row else None)
            if not row:
                detail_cells += ["", "", "", ""]
                continue
            partial = partial or is_partial(row)
            shown.append(row)
            detail_cells += [_pct(row["ci_low"]), _pct(row["ci_high"]), str(row["num_samples"]), row["count_status"]]
            lw.writerow([run.model, str(run.folder), t, row["metric"], repr(row["value"]),
                         str(is_partial(row)).lower(), row["count_status"], row["num_samples"],
                         "" if row["expected_num_samples"] is None else row["expected_num_samples"],
                         "" if row["ci_low"] is None else repr(row["ci_low"]),
                         "" if row["ci_high"] is None else repr(row["ci_high"]),
                         row["model_fingerprint"], row["protocol"]])
        p = params.get(run.model)
        d.writerow([run.model, str(run.folder), "" if p is None else f"{p:g}"]
                   + [_pct(v) for v in values] + [" ".join(run.flags(tasks)), str(partial).lower()]
                   + detail_cells + suite_status
                   + [_distinct(shown, key) for key in ("model_fingerprint", "precision", "decoder")])
    return display.getvalue(), long_rows.getvalue()


def _distinct(rows, key: str) -> str:
    """The distinct values of a column (``model_fingerprint``, ``protocol``) or of a protocol key (``precision``,
    ``decoder``) over ``rows``, sorted and space-separated."""
    if key in ("model_fingerprint", "protocol"):
        values = {r[key] for r in rows}
    else:
        values = {parse_protocol(r["protocol"]).get(key, "unknown") for r in rows}
    return " ".join(sorted(values))
