"""PNG plots (matplotlib, the ``report`` extra), each computed first as data (what the tests check) and then drawn:

- ``plot_vs_reference``: per task and suite, the run minus the reference in percentage points, the tolerance band
  behind each bar and the bootstrap interval of the primary metric (``ci_low``/``ci_high``) as error bars; values
  ``check`` would refuse (partial, another sample count, another protocol) are hatched grey.
- ``plot_runs``: two or more of the user's own runs side by side (no reference): the primary metric per task and
  the suite averages, with the intervals, and each run's difference from the first one in a panel of its own.
- ``plot_scaling``: the 27-dataset average against parameter count (the EVA-CLIP scaling figure) with the papers'
  points (``results/reference/eva_clip_papers.csv``; parameters from the model cards' ``params_millions``). A run
  that lacks some of the 27 tasks is drawn as the mean of those it has, hollow and labelled ``partial: N of 27``
  (never passed off as a 27-average); a run with none of them, or without a known parameter count, is left out and
  named in a note under the axes.

Legends sit outside the axes, never over the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .catalog import Catalog
from .errors import UserInputError
from .reference import ReferenceRow, load_layout
from .report import (
    Column,
    ModelRun,
    column_tasks,
    column_value,
    is_partial,
    not_averaged,
    not_compared,
    other_columns,
    paper_columns,
    paper_suites,
    reference_row,
    suite_value,
    suites_first,
)
from .results import COUNT_MISMATCHES

# colours: within tolerance, beyond it, refused by check; a run's series (colour-blind-safe, Okabe-Ito)
OK_COLOUR, BAD_COLOUR, REFUSED_COLOUR, BAND_COLOUR = "#009E73", "#D55E00", "#BBBBBB", "#DDEEDD"
SERIES_COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
PAPER_MARKERS = ["s", "^", "D", "v", "P", "X", "<", ">"]
PAPER_COLOURS = ["#4C72B0", "#55A868", "#8172B2", "#64B5CD", "#937860", "#8C8C8C", "#C44E52", "#DA8BC3"]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; no display needed
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise UserInputError(f"plots need matplotlib: pip install 'evalsuite[report]' ({exc})") from None
    return plt


def run_labels(runs: list[ModelRun]) -> list[str]:
    """One label per run: the model name, with the shortest tail of the folder path that tells two runs of the
    same model apart (``demo-clip (prompts_b/demo-clip)``)."""
    labels = []
    for run in runs:
        same = [r for r in runs if r.model == run.model]
        if len(same) == 1:
            labels.append(run.model)
            continue
        parts = run.folder.resolve().parts
        k = 1
        while k < len(parts) and len({r.folder.resolve().parts[-k:] for r in same}) < len(same):
            k += 1
        tail = "/".join(parts[-k:])
        if k > 1 and len({r.folder.resolve().name for r in same}) == 1:  # results_a/demo-clip -> results_a
            tail = "/".join(parts[-k:-1])
        if sum(r.folder.resolve().parts[-k:] == parts[-k:] for r in same) > 1:  # the same folder given twice
            tail += f" #{same.index(run) + 1}"
        labels.append(f"{run.model} ({tail})")
    return labels


def primary_columns(runs: list[ModelRun], catalog: Catalog) -> tuple[list[Column], list[Column]]:
    """(suite columns, task columns) of the primary metrics the runs hold: the paper's suites first, then the other
    suites some run holds completely; tasks in paper order (27 classification, video, retrieval), then the others
    (user-defined tasks, the demo) by name."""
    paper = list(dict.fromkeys(t for s in paper_suites(catalog) for t in catalog.suite_members(s)))
    held = {t for r in runs for t in r.tasks}
    tasks = [t for t in paper if t in held] + sorted(held - set(paper))
    names = suites_first(catalog)
    names += [s for s in sorted(catalog.suites) if s not in names and s not in not_averaged()]
    suites = [s for s in names if any(suite_value(r, catalog, s) is not None for r in runs)]
    return [Column(f"{s} avg", f"suite:{s}") for s in suites], [Column(t, t) for t in tasks]


def _interval_pp(row: Optional[dict]) -> Optional[tuple[float, float]]:
    """The bootstrap interval of a primary row, in percent, or None."""
    if row is None or not row["is_primary"] or row["ci_low"] is None or row["ci_high"] is None:
        return None
    return 100 * row["ci_low"], 100 * row["ci_high"]


def _odd(run: ModelRun, tasks: list[str]) -> bool:
    """True when a cell made of ``tasks`` holds a partial result or one of another sample count."""
    rows = [run.row(t) for t in tasks if run.row(t)]
    return any(is_partial(r) or r["count_status"] in COUNT_MISMATCHES for r in rows)


def _save(fig, plt, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _note(fig, lines: list[str]) -> None:
    """Notes under the axes (left out runs, refused values), wrapped, outside the data."""
    import textwrap

    if lines:
        text = "\n".join(w for line in lines for w in textwrap.wrap(line, 160))
        fig.text(0.01, -0.01, text, ha="left", va="top", fontsize=8, color="#444444")


# ---------------------------------------------------------------------------------------------------------------
# per-task deltas against a reference


@dataclass(frozen=True)
class DeltaBar:
    label: str  # column header with the table marks († another sample count, ‡ partial)
    task: str  # task name, or suite:<name>
    metric: str
    value: float  # percent
    reference: float  # percent
    tolerance: float  # percentage points
    interval: Optional[tuple[float, float]]  # bootstrap interval of the delta, pp (primary metrics only)
    refused: str  # '' or why `check` refuses to compare this value

    @property
    def delta(self) -> float:
        return self.value - self.reference

    @property
    def within(self) -> bool:
        return abs(self.delta) <= self.tolerance + 1e-9


@dataclass
class DeltaPanel:
    label: str  # the run's label
    model: str
    report: str
    bars: list[DeltaBar] = field(default_factory=list)
    not_reproducible: list[str] = field(default_factory=list)  # reference values evalsuite cannot run (left out)

    @property
    def limit(self) -> float:
        """The y axis half-height: every bar and interval fits, at least 2.5 tolerances, at most 20 (larger bars are
        clipped there and carry their value as text)."""
        tol = max((b.tolerance for b in self.bars), default=0.5)
        ends = [abs(b.delta) for b in self.bars] + [abs(e) for b in self.bars if b.interval for e in b.interval]
        return min(max(2.5 * tol, 1.15 * max(ends, default=0.0)), 20 * tol)

    @property
    def clipped(self) -> list[DeltaBar]:
        return [b for b in self.bars if abs(b.delta) > self.limit]


def delta_data(runs: list[ModelRun], refs: list[ReferenceRow], catalog: Catalog,
               tolerance: Optional[float] = None) -> list[DeltaPanel]:
    """Per run, a bar for every task/suite column (paper layout, then other tasks) that has both a value and a
    reference value of the run's model; reference rows of a protocol evalsuite cannot run are left out (named)."""
    cols = paper_columns(catalog) + other_columns(runs, catalog)
    panels = []
    for run, label in zip(runs, run_labels(runs)):
        report = next((r.report for r in refs if r.model == run.model), refs[0].report if refs else "")
        panel = DeltaPanel(label, run.model, report)
        for col in cols:
            value = column_value(run, col, catalog)
            if value is None:
                continue
            ref = reference_row(refs, col, run)
            if ref is None:
                continue
            if ref.not_reproducible:
                panel.not_reproducible.append(col.header)
                continue
            row = None if col.task.startswith("suite:") else run.row(col.task, col.metric)
            ci = _interval_pp(row)
            panel.bars.append(DeltaBar(
                col.header + run.marks(column_tasks(col, catalog)), col.task, ref.metric, value, ref.value,
                ref.tolerance_pp if tolerance is None else tolerance,
                None if ci is None else (ci[0] - ref.value, ci[1] - ref.value),
                not_compared(run, col, catalog, ref) or ""))
        panels.append(panel)
    return panels


def plot_vs_reference(runs: list[ModelRun], refs: list[ReferenceRow], catalog: Catalog, out: Path,
                      tolerance: Optional[float] = None) -> list[DeltaPanel]:
    """One panel per run with reference values (result minus reference, pp); returns the panels drawn."""
    from matplotlib.patches import Patch

    panels = delta_data(runs, refs, catalog, tolerance)
    drawn = [p for p in panels if p.bars]
    if not drawn:
        report = refs[0].report if refs else "?"
        raise UserInputError(f"--plot: no run's model has values in reference report {report!r}"
                             f" (models: {', '.join(sorted({r.model for r in runs}))}); without --reference the"
                             " runs are drawn side by side")
    plt = _pyplot()
    width = max(9.0, 0.3 * max(len(p.bars) for p in drawn) + 2)
    fig, axes = plt.subplots(len(drawn), 1, figsize=(width, 4.6 * len(drawn)), squeeze=False)
    notes = [f"{p.label}: no value in the reference report" for p in panels if not p.bars]
    for ax, panel in zip(axes[:, 0], drawn):
        x = list(range(len(panel.bars)))
        lim = panel.limit
        ax.bar(x, [2 * b.tolerance for b in panel.bars], bottom=[-b.tolerance for b in panel.bars], width=1.0,
               color=BAND_COLOUR, zorder=0)
        shown = [max(-lim, min(lim, b.delta)) for b in panel.bars]
        colours = [REFUSED_COLOUR if b.refused else OK_COLOUR if b.within else BAD_COLOUR for b in panel.bars]
        bars = ax.bar(x, shown, width=0.6, color=colours, zorder=2)
        ax.scatter(x, shown, marker="_", s=90, linewidths=2, color=colours, zorder=3)  # a zero delta shows too
        for bar, b in zip(bars, panel.bars):
            if b.refused:
                bar.set_hatch("///")
                bar.set_edgecolor("#666666")
        with_ci = [(i, b) for i, b in zip(x, panel.bars) if b.interval]
        if with_ci:
            ax.errorbar([i for i, _ in with_ci], [b.delta for _, b in with_ci],
                        yerr=[[max(0.0, b.delta - b.interval[0]) for _, b in with_ci],
                              [max(0.0, b.interval[1] - b.delta) for _, b in with_ci]],
                        fmt="none", ecolor="#222222", elinewidth=1, capsize=2, zorder=3)
        for i, b in zip(x, panel.bars):
            if abs(b.delta) > lim:  # clipped: the value is written at the edge
                ax.text(i, 0.97 * lim * (1 if b.delta > 0 else -1), f"{b.delta:+.1f}", ha="center",
                        va="top" if b.delta > 0 else "bottom", fontsize=7, rotation=90, color="white", zorder=4)
        ax.axhline(0, color="#333333", linewidth=0.8, zorder=1)
        ax.set_ylim(-lim, lim)
        ax.set_xlim(-0.7, len(x) - 0.3)
        ax.set_xticks(x, [b.label for b in panel.bars], rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("result − reference (pp)")
        ax.grid(axis="y", color="#EEEEEE", zorder=0)
        ok = sum(b.within and not b.refused for b in panel.bars)
        refused = sum(bool(b.refused) for b in panel.bars)
        ax.set_title(f"{panel.label} vs {panel.report}: {ok} of {len(panel.bars)} values within tolerance"
                     + (f", {refused} refused by check" if refused else ""), loc="left", fontsize=11, pad=26)
        tols = sorted({b.tolerance for b in panel.bars})
        handles = [Patch(color=BAND_COLOUR, label="tolerance ±" + " / ±".join(f"{t:g}" for t in tols) + " pp"),
                   Patch(color=OK_COLOUR, label="within tolerance"), Patch(color=BAD_COLOUR, label="beyond tolerance"),
                   Patch(facecolor=REFUSED_COLOUR, hatch="///", edgecolor="#666666",
                         label="refused by check (partial, sample count, protocol)")]
        if with_ci:
            from matplotlib.lines import Line2D

            handles.append(Line2D([], [], color="#222222", marker="|", linestyle="-", label="95% bootstrap interval"))
        ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=len(handles), frameon=False,
                  fontsize=8, borderaxespad=0.2)
        if panel.not_reproducible:
            notes.append(f"{panel.label}: left out, not reproducible by evalsuite: {', '.join(panel.not_reproducible)}")
        if panel.clipped:
            notes.append(f"{panel.label}: bars beyond ±{lim:.1f} pp are cut at the edge with their value written")
        reasons = [f"{b.label} ({b.refused})" for b in panel.bars if b.refused]
        if reasons:
            notes.append(f"{panel.label}, refused: " + "; ".join(reasons[:4])
                         + (f"; and {len(reasons) - 4} more (evalsuite check lists them)" if len(reasons) > 4 else ""))
    notes.append("† sample count not the protocol's, ‡ partial (--limit)"
                 if any("†" in b.label or "‡" in b.label for p in drawn for b in p.bars) else "")
    fig.tight_layout()
    _note(fig, [n for n in notes if n])
    _save(fig, plt, out)
    return panels


# ---------------------------------------------------------------------------------------------------------------
# runs side by side, no reference


@dataclass
class Series:
    label: str
    values: list[Optional[float]]  # percent, one per column (None: the run lacks it)
    intervals: list[Optional[tuple[float, float]]]  # percent (primary metrics with a bootstrap interval)
    odd: list[bool]  # partial or another sample count than the protocol's


@dataclass
class SideBySide:
    columns: list[str]  # headers
    tasks: list[str]  # task name or suite:<name> per column
    series: list[Series]
    differences: list[Series]  # each later run minus the first, pp (intervals None)


def runs_data(runs: list[ModelRun], catalog: Catalog) -> SideBySide:
    suites, tasks = primary_columns(runs, catalog)
    cols = tasks + suites
    series = []
    for run, label in zip(runs, run_labels(runs)):
        values = [column_value(run, c, catalog) for c in cols]
        intervals = [None if c.task.startswith("suite:") else _interval_pp(run.row(c.task)) for c in cols]
        odd = [v is not None and _odd(run, column_tasks(c, catalog)) for c, v in zip(cols, values)]
        series.append(Series(label, values, intervals, odd))
    base = series[0]
    differences = [Series(f"{s.label} − {base.label}",
                          [None if v is None or b is None else v - b for v, b in zip(s.values, base.values)],
                          [None] * len(cols), [o or bo for o, bo in zip(s.odd, base.odd)]) for s in series[1:]]
    return SideBySide([c.header for c in cols], [c.task for c in cols], series, differences)


def _grouped(ax, data: SideBySide, series: list[Series], colours: list[str]) -> list:
    """Grouped bars of ``series``; returns legend handles (plain colours: a hatched first bar must not make the
    whole series look hatched in the legend)."""
    from matplotlib.patches import Patch

    n = len(series)
    width = 0.8 / n
    for k, (s, colour) in enumerate(zip(series, colours)):
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(data.columns))]
        present = [(x, v, ci, odd) for x, v, ci, odd in zip(xs, s.values, s.intervals, s.odd) if v is not None]
        bars = ax.bar([p[0] for p in present], [p[1] for p in present], width=width * 0.92, color=colour,
                      label=s.label, zorder=2)
        for bar, p in zip(bars, present):
            if p[3]:
                bar.set_hatch("///")
                bar.set_edgecolor("white")
        with_ci = [p for p in present if p[2]]
        if with_ci:
            ax.errorbar([p[0] for p in with_ci], [p[1] for p in with_ci],
                        yerr=[[max(0.0, p[1] - p[2][0]) for p in with_ci], [max(0.0, p[2][1] - p[1]) for p in with_ci]],
                        fmt="none", ecolor="#222222", elinewidth=0.8, capsize=1.5, zorder=3)
    ax.set_xlim(-0.6, len(data.columns) - 0.4)
    ax.grid(axis="y", color="#EEEEEE", zorder=0)
    handles = [Patch(color=colour, label=s.label) for s, colour in zip(series, colours)]
    if any(o for s in series for o in s.odd):
        handles.append(Patch(facecolor="#999999", hatch="///", edgecolor="white",
                             label="partial or another sample count"))
    return handles


def plot_runs(runs: list[ModelRun], catalog: Catalog, out: Path) -> SideBySide:
    """The runs side by side (primary metric per task, then suite averages), and when there are two or more, each
    later run's difference from the first in pp; returns the data drawn."""
    data = runs_data(runs, catalog)
    if not data.columns:
        raise UserInputError("--plot: the runs hold no task result")
    plt = _pyplot()
    n = len(data.series)
    width = max(8.0, (0.12 * n + 0.2) * len(data.columns) + 2.5)
    rows = 2 if data.differences else 1
    fig, axes = plt.subplots(rows, 1, figsize=(width, 4.8 * rows), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 2][:rows]})
    top = axes[0, 0]
    colours = [SERIES_COLOURS[i % len(SERIES_COLOURS)] for i in range(n)]
    handles = _grouped(top, data, data.series, colours)
    top.set_ylim(0, 105)
    suites_from = next((i for i, t in enumerate(data.tasks) if t.startswith("suite:")), None)
    if suites_from:  # a dotted line between the tasks and the suite averages
        for ax in axes[:, 0]:
            ax.axvline(suites_from - 0.5, color="#999999", linestyle=":", linewidth=1)
    top.set_ylabel("primary metric (%)")
    what = "primary metric per task" + (" and suite average" if suites_from else "")
    top.set_title(f"{n} runs side by side: {what}" if n > 1 else f"{data.series[0].label}: {what}",
                  loc="left", fontsize=11, pad=24)
    top.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=min(len(handles), 4),
               frameon=False, fontsize=8, borderaxespad=0.2)
    last = top
    if data.differences:
        low = axes[1, 0]
        low_handles = _grouped(low, data, data.differences, colours[1:])
        spread = [abs(v) for s in data.differences for v in s.values if v is not None]
        lim = max(1.0, 1.15 * max(spread, default=0.0))
        low.set_ylim(-lim, lim)
        low.axhline(0, color="#333333", linewidth=0.8, zorder=1)
        low.set_ylabel(f"difference from\n{data.series[0].label} (pp)")
        low.set_title(f"each run minus {data.series[0].label}, in percentage points", loc="left", fontsize=10,
                      pad=22)
        low.legend(handles=low_handles, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=min(len(low_handles), 4),
                   frameon=False, fontsize=8, borderaxespad=0.2)
        top.set_xticks(range(len(data.columns)), [""] * len(data.columns))
        last = low
    last.set_xticks(range(len(data.columns)), data.columns, rotation=60, ha="right", fontsize=8)
    notes = ["error bars: 95% bootstrap intervals of the primary metric"
             if any(ci for s in data.series for ci in s.intervals) else ""]
    if any(o for s in data.series for o in s.odd):
        notes.append("hatched: partial (--limit) or a sample count other than the protocol's: "
                     + "; ".join(f"{s.label}: {', '.join(c for c, o in zip(data.columns, s.odd) if o)}"
                                 for s in data.series if any(s.odd)))
    fig.tight_layout()
    _note(fig, [n for n in notes if n])
    _save(fig, plt, out)
    return data


# ---------------------------------------------------------------------------------------------------------------
# scaling: 27-dataset average against parameters


@dataclass(frozen=True)
class ScalingPoint:
    label: str
    model: str
    params: float  # millions
    value: float  # percent: the mean of the tasks of the 27 that the run has
    num_tasks: int
    total: int
    source: str  # "run", or the paper report id
    marks: str = ""  # † / ‡ when a member's sample count is not the protocol's / partial

    @property
    def partial(self) -> bool:
        return self.num_tasks < self.total


@dataclass
class ScalingData:
    papers: list[ScalingPoint]
    runs: list[ScalingPoint]
    left_out: list[str]  # runs not drawn, with why


def scaling_data(runs: list[ModelRun], catalog: Catalog, params: dict[str, float],
                 references: Optional[list[ReferenceRow]] = None) -> ScalingData:
    """The papers' 27-averages (every report, models with a known parameter count) and the runs' points."""
    if references is None:
        from .reference import load_reference

        references = load_reference()
    suite = load_layout()["report"]["scaling_suite"]
    members = catalog.suite_members(suite)
    papers = [ScalingPoint(r.model, r.model, params[r.model], r.value, len(members), len(members), r.report)
              for r in references if r.task == f"suite:{suite}" and r.metric == "mean_primary" and r.model in params]
    points, left_out = [], []
    for run, label in zip(runs, run_labels(runs)):
        rows = [run.row(m) for m in members if run.row(m)]
        if not rows:
            left_out.append(f"{label}: none of the {len(members)} classification tasks")
        elif run.model not in params:
            left_out.append(f"{label}: no params_millions in a model card named {run.model!r}")
        else:
            points.append(ScalingPoint(label, run.model, params[run.model],
                                       100 * sum(r["value"] for r in rows) / len(rows), len(rows), len(members),
                                       "run", run.marks(members)))
    return ScalingData(papers, points, left_out)


def plot_scaling(runs: list[ModelRun], catalog: Catalog, params: dict[str, float], out: Path,
                 references: Optional[list[ReferenceRow]] = None) -> ScalingData:
    """The scaling figure; returns the data drawn. Drawn even when no run has a point (the papers' points and a
    note naming the runs left out)."""
    data = scaling_data(runs, catalog, params, references)
    if not data.papers and not data.runs:
        raise UserInputError("scaling plot: no run with a 27-task result and a known parameter count, and no paper"
                             " point with one")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.5))
    reports = list(dict.fromkeys(p.source for p in data.papers))
    for k, report in enumerate(reports):
        pts = [p for p in data.papers if p.source == report]
        ax.scatter([p.params for p in pts], [p.value for p in pts], marker=PAPER_MARKERS[k % len(PAPER_MARKERS)],
                   s=36, color=PAPER_COLOURS[k % len(PAPER_COLOURS)], edgecolor="#333333", linewidth=0.5,
                   label=f"paper: {report}", zorder=2)
    named = {}
    for p in data.papers:  # one name per model, beside its highest point
        if p.model not in named or p.value > named[p.model].value:
            named[p.model] = p
    for p in named.values():
        ax.annotate(p.model, (p.params, p.value), fontsize=7, color="#555555", xytext=(5, -3),
                    textcoords="offset points")
    full = [p for p in data.runs if not p.partial]
    part = [p for p in data.runs if p.partial]
    if full:
        ax.scatter([p.params for p in full], [p.value for p in full], s=70, color="#D55E00", edgecolor="black",
                   zorder=4, label="this evaluation: all 27 tasks")
    if part:
        ax.scatter([p.params for p in part], [p.value for p in part], s=70, facecolor="white", edgecolor="#D55E00",
                   linewidth=2, zorder=4, label="this evaluation: partial suite (mean of the tasks it has)")
    xs = [p.params for p in data.papers + data.runs]
    low, high = min(xs) / 1.6, max(xs) * 2.5  # room for the papers' names right of their points
    middle = (low * high) ** 0.5
    for p in data.runs:  # names left of points in the right half, so they stay inside the axes
        text = p.label + p.marks + (f" (partial: {p.num_tasks} of {p.total})" if p.partial else "")
        right = p.params > middle
        ax.annotate(text, (p.params, p.value), fontsize=8, color="#A04000", weight="bold",
                    xytext=(-8 if right else 8, 7), textcoords="offset points", ha="right" if right else "left")
    ax.set_xscale("log")
    ax.set_xlabel("parameters (millions, log scale; from the model cards)")
    ax.set_ylabel("27-dataset average top-1 (%)")
    ax.set_title("Zero-shot classification, 27-dataset average vs model size", loc="left", fontsize=11)
    ax.grid(color="#EEEEEE", zorder=0)
    ax.set_xlim(low, high)
    ax.margins(y=0.1)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    notes = [f"left out: {line}" for line in data.left_out]
    if any(p.marks for p in data.runs):
        notes.append("† a member's sample count is not the protocol's, ‡ a member is partial (--limit)")
    fig.tight_layout()
    _note(fig, notes)
    _save(fig, plt, out)
    return data
