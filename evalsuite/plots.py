"""PNG plots (matplotlib, the ``report`` extra): a run's datasets beside the reference, and the leaderboard's
27-dataset average against parameter count (the EVA-CLIP scaling figure)."""

from __future__ import annotations

from pathlib import Path

from .catalog import Catalog
from .errors import UserInputError
from .reference import ReferenceRow
from .report import ModelRun, column_tasks, column_value, paper_columns, reference_value


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; no display needed
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise UserInputError(f"plots need matplotlib: pip install 'evalsuite[report]' ({exc})") from None
    return plt


def plot_vs_reference(runs: list[ModelRun], refs: list[ReferenceRow], catalog: Catalog, out: Path) -> None:
    plt = _pyplot()
    cols = [c for c in paper_columns(catalog) if not c.task.startswith("suite:")]
    fig, axes = plt.subplots(len(runs), 1, figsize=(16, 4.5 * len(runs)), squeeze=False)
    for ax, run in zip(axes[:, 0], runs):
        # a label marked † / ‡: sample count not the protocol's / partial (report.paper_table's marks)
        shown = [(c.header + run.marks(column_tasks(c, catalog)), column_value(run, c, catalog),
                  reference_value(refs, run.model, c, run)) for c in cols]
        shown = [s for s in shown if s[1] is not None or s[2] is not None]
        x = range(len(shown))
        ax.bar([i - 0.2 for i in x], [s[1] or 0 for s in shown], width=0.4, label=f"{run.model} (this run)")
        ax.bar([i + 0.2 for i in x], [s[2] or 0 for s in shown], width=0.4, label="reference")
        ax.set_xticks(list(x), [s[0] for s in shown], rotation=70, ha="right", fontsize=8)
        ax.set_ylabel("percent")
        ax.legend(loc="lower left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_scaling(runs: list[ModelRun], catalog: Catalog, params: dict[str, float], out: Path) -> None:
    from .report import suite_value

    plt = _pyplot()
    members = catalog.suite_members("eva_cls27")
    points = [(params[r.model], 100 * v, r.model) for r in runs
              if r.model in params and (v := suite_value(r, members)) is not None]
    if not points:
        raise UserInputError("scaling plot: no run has all 27 classification results and a known parameter count")
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter([p[0] for p in points], [p[1] for p in points])
    for x, y, name in points:
        ax.annotate(name, (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("27-dataset average top-1 (%)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
