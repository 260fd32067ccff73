"""A static HTML report of result folders: ``evalsuite report RUN_DIRS... --out site/``.

``index.html`` is the leaderboard: one row per run, the suite averages then each task's primary metric (paper order,
then the other tasks), sortable by clicking a header (numbers best first, empty cells last), each cell's interval,
counts, protocol and reference delta on hover (``title``), cells coloured by their delta against a reference report
when one is given (within / above / below tolerance; grey stripes where ``check`` would refuse the comparison), and
the marks of the tables (``†`` a sample count that is not the protocol's, ``‡`` partial) plus a flags column. Below
it, the runs side by side and the scaling figure as PNGs. ``model-<name>.html`` per run: its plots, its suites, and
per task the metrics, interval, counts, count status and the protocol each number was made under.

No server and no network: the CSS and the sorting script are inline, the images are PNG files beside the pages.
Everything read from result files is HTML-escaped.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from . import __version__
from .catalog import Catalog
from .reference import ReferenceRow, load_layout
from .report import (
    MARK_COUNT,
    MARK_PARTIAL,
    Column,
    ModelRun,
    count_flag,
    is_partial,
    not_compared,
    reference_row,
    suite_rows,
    suite_value,
)
from .results import COUNT_MISMATCHES, atomic_write_text, check_writable_folder, count_message, suite_count_status

log = logging.getLogger("evalsuite.report_html")


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "model"


# ---------------------------------------------------------------------------------------------------------------
# the leaderboard as data (what the pages render and the tests read)


@dataclass
class Cell:
    text: str  # shown: "83.8", "83.8†", "–"
    value: Optional[float]  # percent, the sort key (None: empty, sorted last)
    title: str  # the hover text: interval, counts, protocol, reference and delta
    classes: list[str] = field(default_factory=list)  # delta-within/-above/-below, refused, flag-count, flag-partial


@dataclass
class Row:
    label: str
    model: str
    page: str  # the model page's file name
    params: Optional[float]  # millions
    cells: list[Cell]
    flags: list[str]  # ``imagenet1k:fewer(1000/50000)`` (report.count_flag) for every odd result of the run
    partial: bool  # some result is partial (--limit)
    count_mismatch: bool  # some result's count_status is fewer or more


@dataclass
class Leaderboard:
    columns: list[Column]
    rows: list[Row]
    reference: str = ""  # the report id, when cells are coloured against one


def _percent(value: float) -> str:
    return f"{value:.2f}"


def _delta_part(run: ModelRun, col: Column, catalog: Catalog, value: float, refs: Optional[list[ReferenceRow]],
                tolerance: Optional[float]) -> tuple[str, list[str]]:
    """The hover text about the reference and the cell's colour classes."""
    if not refs:
        return "", []
    ref = reference_row(refs, col, run)
    if ref is None:
        return "no reference value", []
    if ref.not_reproducible:
        return f"reference {ref.value:g} not comparable: not reproducible by evalsuite ({ref.not_reproducible})", []
    tol = ref.tolerance_pp if tolerance is None else tolerance
    delta = value - ref.value
    text = f"reference {ref.value:g} ({ref.report}): delta {delta:+.2f} pp, tolerance {tol:g}"
    refused = not_compared(run, col, catalog, ref)
    if refused:
        return f"{text}; refused by check: {refused}", ["refused"]
    if abs(delta) <= tol + 1e-9:
        return text, ["delta-within"]
    return text, ["delta-above" if delta > 0 else "delta-below"]


def _task_cell(run: ModelRun, col: Column, catalog: Catalog, refs, tolerance) -> Cell:
    row = run.row(col.task)
    if row is None:
        return Cell("–", None, f"{col.task}: not in this run", ["empty"])
    value = 100 * row["value"]
    parts = [f"{col.task} {row['metric']} = {value:.2f}%"]
    if row["ci_low"] is not None and row["ci_high"] is not None:
        parts[0] += f" (95% interval {100 * row['ci_low']:.2f}–{100 * row['ci_high']:.2f})"
    counts = f"{row['num_samples']} samples"
    if row["expected_num_samples"] is not None:
        counts += f" of {row['expected_num_samples']} expected"
    if row.get("num_texts") is not None:
        counts += f", {row['num_texts']} captions" + (f" of {row['expected_num_texts']}"
                                                      if row.get("expected_num_texts") is not None else "")
    parts.append(f"{counts}; count_status {row['count_status']}" + ("; partial (--limit)" if is_partial(row) else ""))
    parts.append(f"protocol {row['protocol']}")
    delta, classes = _delta_part(run, col, catalog, value, refs, tolerance)
    if delta:
        parts.append(delta)
    marks = run.marks([col.task])
    classes += (["flag-count"] if MARK_COUNT in marks else []) + (["flag-partial"] if MARK_PARTIAL in marks else [])
    return Cell(_percent(value) + marks, value, "\n".join(parts), classes)


def _suite_cell(run: ModelRun, col: Column, catalog: Catalog, refs, tolerance) -> Cell:
    name = col.task[6:]
    members = catalog.suite_members(name)
    value = suite_value(run, catalog, name)
    have = [m for m in members if run.row(m)]
    if value is None:
        title = (f"{name}: incomplete, {len(have)} of {len(members)} member tasks (no average)" if have
                 else f"{name}: no member task in this run")
        return Cell("–", None, title, ["empty"])
    value *= 100
    by_task = dict(zip(members, suite_rows(run, catalog, name)))
    parts = [f"{name}: mean of {len(members)} primary metrics = {value:.2f}%",
             f"count_status {suite_count_status(members, by_task)}"
             + ("; a member is partial (--limit)" if any(is_partial(r) for r in by_task.values()) else "")]
    delta, classes = _delta_part(run, col, catalog, value, refs, tolerance)
    if delta:
        parts.append(delta)
    marks = run.marks(members)
    classes += (["flag-count"] if MARK_COUNT in marks else []) + (["flag-partial"] if MARK_PARTIAL in marks else [])
    return Cell(_percent(value) + marks, value, "\n".join(parts), classes)


def leaderboard_data(runs: list[ModelRun], catalog: Catalog, refs: Optional[list[ReferenceRow]] = None,
                     params: Optional[dict[str, float]] = None, tolerance: Optional[float] = None) -> Leaderboard:
    from .plots import primary_columns, run_labels

    suites, tasks = primary_columns(runs, catalog)
    columns = suites + tasks
    labels = run_labels(runs)
    pages = _page_names(labels)
    rows = []
    for run, label, page in zip(runs, labels, pages):
        cells = [(_suite_cell if c.task.startswith("suite:") else _task_cell)(run, c, catalog, refs, tolerance)
                 for c in columns]
        results = [run.row(t) for t in run.tasks]
        rows.append(Row(label, run.model, page, (params or {}).get(run.model), cells,
                        run.flags(sorted(run.tasks, key=[c.task for c in tasks].index)),
                        any(is_partial(r) for r in results),
                        any(r["count_status"] in COUNT_MISMATCHES for r in results)))
    return Leaderboard(columns, rows, refs[0].report if refs else "")


def _page_names(labels: list[str]) -> list[str]:
    names: list[str] = []
    for label in labels:
        base, k = f"model-{_slug(label)}", 2
        name = base
        while f"{name}.html" in names:
            name, k = f"{base}-{k}", k + 1
        names.append(f"{name}.html")
    return names


# ---------------------------------------------------------------------------------------------------------------
# rendering


CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.5em; margin: 0 0 .3em; } h2 { font-size: 1.15em; margin: 1.6em 0 .5em; }
.meta, .note { color: #555; font-size: 12.5px; } a { color: #0b5cad; }
.scroll { overflow-x: auto; max-width: 100%; border: 1px solid #ddd; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 7px; border-bottom: 1px solid #e6e6e6; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; position: sticky; top: 0; font-weight: 600; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; font-size: 9px; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; font-size: 9px; }
th.text, td.text { text-align: left; } td.model { position: sticky; left: 0; background: #fff; font-weight: 600; }
th.model { left: 0; z-index: 2; }
td.delta-within { background: #d8efdf; } td.delta-above { background: #d6e6f7; } td.delta-below { background: #f7d9d2; }
td.refused { background: repeating-linear-gradient(45deg, #eee, #eee 4px, #ddd 4px, #ddd 8px); color: #555; }
td.flag-count, td.flag-partial { font-style: italic; } td.empty { color: #aaa; }
tr.partial td.model::after, tr.count-mismatch td.model::after { content: " \\26A0"; color: #b35900; }
td.flags { text-align: left; color: #8a4b00; font-size: 12px; }
.legend span { display: inline-block; padding: 1px 8px; margin-right: 6px; border: 1px solid #ccc; }
img { max-width: 100%; border: 1px solid #eee; margin: .4em 0; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; } dt { color: #555; } dd { margin: 0; }
"""

SORT_JS = """
(function () {
  function key(cell, text) {
    if (!cell) return null;
    var v = cell.getAttribute("data-value");
    if (v === null || v === "") return null;
    return text ? v.toLowerCase() : parseFloat(v);
  }
  function sortBy(th) {
    var table = th.closest("table"), body = table.tBodies[0];
    var index = Array.prototype.indexOf.call(th.parentNode.children, th);
    var text = th.classList.contains("text");
    var current = th.getAttribute("aria-sort");
    var dir = current ? (current === "descending" ? "ascending" : "descending") : (text ? "ascending" : "descending");
    table.querySelectorAll("th[aria-sort]").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var rows = Array.prototype.slice.call(body.rows);
    var sign = dir === "ascending" ? 1 : -1;
    rows.sort(function (a, b) {
      var x = key(a.cells[index], text), y = key(b.cells[index], text);
      if (x === null && y === null) return 0;
      if (x === null) return 1;
      if (y === null) return -1;
      return x < y ? -sign : x > y ? sign : 0;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.sortable th").forEach(function (th) {
    th.tabIndex = 0;
    th.addEventListener("click", function () { sortBy(th); });
    th.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(th); }
    });
  });
})();
"""


def _page(title: str, body: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{_e(title)}</title>\n'
            f"<style>{CSS}</style>\n</head>\n<body>\n{body}\n"
            f'<p class="meta">Made by evalsuite {_e(__version__)} on {stamp} from the task CSVs; static files, no'
            f" server or network needed.</p>\n<script>{SORT_JS}</script>\n</body>\n</html>\n")


def _td(cell: Cell) -> str:
    value = "" if cell.value is None else repr(cell.value)
    classes = f' class="{" ".join(cell.classes)}"' if cell.classes else ""
    return f'<td{classes} data-value="{value}" title="{_e(cell.title)}">{_e(cell.text)}</td>'


def _legend(board: Leaderboard) -> str:
    parts = []
    if board.reference:
        parts.append(f"Cells coloured by the delta to reference report <b>{_e(board.reference)}</b>: "
                     '<span class="legend"><span style="background:#d8efdf">within tolerance</span>'
                     '<span style="background:#d6e6f7">above</span><span style="background:#f7d9d2">below</span>'
                     '<span style="background:repeating-linear-gradient(45deg,#eee,#eee 4px,#ddd 4px,#ddd 8px)">'
                     "refused by check (partial, sample count or protocol)</span></span>")
    parts.append(f"Primary metric in percent. {MARK_COUNT} sample count not the protocol's (count_status fewer/more),"
                 f" {MARK_PARTIAL} partial (--limit), \u26A0 on a run holding either; hover a cell for its interval,"
                 " counts, protocol and reference; click a header to sort.")
    return "".join(f'<p class="note">{p}</p>' for p in parts)


def _figures(images: list[tuple[str, str]]) -> str:
    """Each PNG under its caption, linked to itself at full size (wide tables of tasks shrink to the page)."""
    return "".join(f'<h2>{_e(caption)}</h2><a href="{_e(src)}" title="full size"><img src="{_e(src)}"'
                   f' alt="{_e(caption)}"></a>' for src, caption in images)


def render_index(board: Leaderboard, images: list[tuple[str, str]]) -> str:
    head = ['<th class="text model" title="run (click to sort)">model</th>',
            '<th title="parameters in millions, from the model card">params (M)</th>']
    for col in board.columns:
        what = "suite average" if col.task.startswith("suite:") else "task"
        head.append(f'<th title="{_e(col.task)} ({what}); click to sort">{_e(col.header)}</th>')
    head.append('<th class="text" title="results whose sample count is not the protocol\'s, or partial">flags</th>')
    body = []
    for row in board.rows:
        classes = " ".join(c for c, on in (("partial", row.partial), ("count-mismatch", row.count_mismatch)) if on)
        cells = [f'<td class="text model" data-value="{_e(row.label)}">'
                 f'<a href="{_e(row.page)}">{_e(row.label)}</a></td>',
                 f'<td data-value="{"" if row.params is None else repr(row.params)}">'
                 f'{"–" if row.params is None else f"{row.params:,.0f}" if row.params >= 10 else f"{row.params:g}"}'
                 "</td>"]
        cells += [_td(c) for c in row.cells]
        flags = " ".join(row.flags)
        cells.append(f'<td class="text flags" data-value="{_e(flags)}">{_e(flags)}</td>')
        attrs = f' class="{classes}"' if classes else ""
        body.append(f'<tr{attrs} data-model="{_e(row.model)}">' + "".join(cells) + "</tr>")
    table = (f'<div class="scroll"><table id="leaderboard" class="sortable"><thead><tr>{"".join(head)}</tr></thead>'
             f'<tbody>\n{chr(10).join(body)}\n</tbody></table></div>')
    figures = _figures(images)
    return _page("evalsuite leaderboard",
                 f"<h1>Zero-shot leaderboard</h1>\n<p class=\"meta\">{len(board.rows)} run(s).</p>\n"
                 f"{_legend(board)}\n{table}\n{figures}")


def render_model_page(run: ModelRun, row: Row, board: Leaderboard, catalog: Catalog,
                      images: list[tuple[str, str]]) -> str:
    def distinct(key: str) -> str:
        return ", ".join(sorted({str(r[key]) for rows in run.tasks.values() for r in rows if r[key] not in ("", None)}))

    info = [("model", run.model), ("folder", str(run.folder)), ("adapter", distinct("adapter")),
            ("weights", distinct("weights")), ("model fingerprint", distinct("model_fingerprint")),
            ("protocol", distinct("protocol")), ("evalsuite", distinct("evalsuite_version")),
            ("git", distinct("git_sha")), ("finished", distinct("finished_utc"))]
    dl = "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v or '–')}</dd>" for k, v in info) + "</dl>"
    flags = ""
    if row.flags:
        flags = ('<p class="note"><b>Flags:</b> ' + _e(" ".join(row.flags))
                 + " — not the protocol's sample set or partial; such numbers are not the papers'.</p>")
    suite_cells = [(c, cell) for c, cell in zip(board.columns, row.cells) if c.task.startswith("suite:")]
    suites = ""
    if suite_cells:
        def counts(cell: Cell) -> str:
            lines = cell.title.splitlines()
            return "; ".join(lines[1:]) if cell.value is not None else lines[0]

        body = "".join(f'<tr><td class="text">{_e(c.task[6:])}</td>{_td(cell)}'
                       f'<td class="text">{_e(counts(cell))}</td></tr>' for c, cell in suite_cells)
        suites = ('<h2>Suites</h2><div class="scroll"><table class="sortable"><thead><tr><th class="text">suite</th>'
                  '<th>mean (%)</th><th class="text">counts and reference</th></tr></thead><tbody>' + body
                  + "</tbody></table></div>")
    tasks = []
    order = [c.task for c in board.columns if not c.task.startswith("suite:")]
    by_task = {c.task: cell for c, cell in zip(board.columns, row.cells)}
    for task in sorted(run.tasks, key=order.index):
        primary = run.row(task)
        others = ", ".join(f"{r['metric']} {100 * r['value']:.2f}" for r in run.tasks[task] if not r["is_primary"])
        ci = ("" if primary["ci_low"] is None or primary["ci_high"] is None
              else f"{100 * primary['ci_low']:.2f}–{100 * primary['ci_high']:.2f}")
        expected = "" if primary["expected_num_samples"] is None else primary["expected_num_samples"]
        texts = "" if primary["num_texts"] is None else (
            f"{primary['num_texts']}" + ("" if primary["expected_num_texts"] is None
                                         else f" / {primary['expected_num_texts']}"))
        flag = count_flag(primary)
        cells = [f'<td class="text" data-value="{_e(task)}">{_e(task)}</td>',
                 f'<td class="text" data-value="{_e(primary["metric"])}">{_e(primary["metric"])}</td>',
                 _td(by_task[task]),
                 f'<td class="text" data-value="{_e(ci)}">{_e(ci)}</td>',
                 f'<td data-value="{primary["num_samples"]}">{primary["num_samples"]}</td>',
                 f'<td data-value="{expected}">{expected}</td>',
                 f'<td class="text" data-value="{_e(texts)}">{_e(texts)}</td>',
                 f'<td data-value="{primary["num_failed"]}">{primary["num_failed"]}</td>',
                 f'<td class="text" data-value="{_e(primary["count_status"])}"'
                 f' title="{_e(count_message(primary) if flag else "")}">{_e(primary["count_status"])}</td>',
                 f'<td class="text" data-value="{str(is_partial(primary)).lower()}">'
                 f'{"yes" if is_partial(primary) else "no"}</td>',
                 f'<td class="text protocol" data-value="{_e(primary["protocol"])}">{_e(primary["protocol"])}</td>',
                 f'<td class="text" data-value="{_e(others)}">{_e(others)}</td>',
                 f'<td data-value="{_e(primary["seconds"])}">{_e(primary["seconds"])}</td>']
        tasks.append(f'<tr data-task="{_e(task)}">' + "".join(cells) + "</tr>")
    heads = ["task", "metric", "value (%)", "95% interval", "samples", "expected", "captions", "failed",
             "count_status", "partial", "protocol", "other metrics", "seconds"]
    text_heads = {"task", "metric", "95% interval", "captions", "count_status", "partial", "protocol", "other metrics"}
    head = "".join(f'<th class="text">{h}</th>' if h in text_heads else f"<th>{h}</th>" for h in heads)
    details = (f'<h2>Tasks</h2><div class="scroll"><table id="tasks" class="sortable"><thead><tr>{head}</tr></thead>'
               f"<tbody>\n{chr(10).join(tasks)}\n</tbody></table></div>")
    figures = _figures(images)
    return _page(f"{row.label} — evalsuite",
                 f'<p><a href="index.html">&larr; leaderboard</a></p>\n<h1>{_e(row.label)}</h1>\n{dl}\n{flags}\n'
                 f"{_legend(board)}\n{figures}\n{suites}\n{details}")


# ---------------------------------------------------------------------------------------------------------------
# the site


@dataclass
class Site:
    index: Path
    pages: dict[str, Path]  # run label -> page
    images: list[Path]
    notes: list[str]  # plots not drawn, and why
    board: Leaderboard


def _have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def build_site(runs: list[ModelRun], catalog: Catalog, out: Path, refs: Optional[list[ReferenceRow]] = None,
               params: Optional[dict[str, float]] = None, references_all: Optional[list[ReferenceRow]] = None,
               tolerance: Optional[float] = None) -> Site:
    """Write ``out/index.html``, a page per run and their PNGs; returns what was written. Without matplotlib the
    pages are written without plots (a note says so)."""
    out.mkdir(parents=True, exist_ok=True)
    check_writable_folder(out, "--out")
    board = leaderboard_data(runs, catalog, refs, params, tolerance)
    notes, images = [], []
    plots = _have_matplotlib()
    if not plots:
        notes.append("plots left out: matplotlib is not installed (pip install 'evalsuite[report]')")
    index_images = []
    if plots:
        from .plots import plot_runs, plot_scaling

        if len(runs) > 1:
            plot_runs(runs, catalog, out / "runs.png")
            images.append(out / "runs.png")
            index_images.append(("runs.png", "The runs side by side"))
        scaling = load_layout()["report"]["scaling_suite"]
        members = set(catalog.suite_members(scaling)) if scaling in catalog.suites else set()
        if params is not None and any(set(r.tasks) & members for r in runs):
            data = plot_scaling(runs, catalog, params, out / "scaling.png", references_all)
            images.append(out / "scaling.png")
            index_images.append(("scaling.png", "27-dataset average vs parameters"))
            notes += [f"scaling plot, left out: {line}" for line in data.left_out]
    pages = {}
    for run, row in zip(runs, board.rows):
        stem = row.page[:-len(".html")]
        page_images = []
        if plots:
            from .plots import delta_data, plot_runs, plot_vs_reference

            if refs and any(p.bars for p in delta_data([run], refs, catalog, tolerance)):
                plot_vs_reference([run], refs, catalog, out / f"{stem}-deltas.png", tolerance)
                images.append(out / f"{stem}-deltas.png")
                page_images.append((f"{stem}-deltas.png", f"Result minus reference {board.reference} (pp)"))
            plot_runs([run], catalog, out / f"{stem}-tasks.png")
            images.append(out / f"{stem}-tasks.png")
            page_images.append((f"{stem}-tasks.png", "Primary metric per task"))
        path = out / row.page
        atomic_write_text(path, render_model_page(run, row, board, catalog, page_images))
        pages[row.label] = path
    index = out / "index.html"
    atomic_write_text(index, render_index(board, index_images))
    for note in notes:
        log.warning("report: %s", note)
    return Site(index, pages, images, notes, board)
