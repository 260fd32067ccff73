"""Plots (issue 19, item 3), tested on the data each plot function draws and returns (not on pixels): deltas against
a reference with the tolerance band and bootstrap intervals, the user's own runs side by side without a reference,
and the scaling figure with the papers' points and partial suites labelled."""

import csv
from pathlib import Path

import pytest
from test_reporting import CATALOG, REPORT, write_synthetic_run

from evalsuite.cli import main
from evalsuite.reference import load_reference, select_report
from evalsuite.report import load_runs
from evalsuite.results import TASK_COLUMNS, count_status, write_task_csv

pytest.importorskip("matplotlib")

from evalsuite.plots import plot_runs, plot_scaling, plot_vs_reference, run_labels  # noqa: E402

MODEL = "EVA-CLIP-18B"
DRAFT = "evaclip_paper_draft_2303.15389"


def add_intervals(folder: Path, half_width_pp: float = 0.4) -> Path:
    """Give every primary row of a synthetic run a bootstrap interval of +-half_width_pp around its value."""
    for path in folder.glob("*.csv"):
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        for r in rows:
            if r["is_primary"] == "true":
                v = float(r["value"])
                r["ci_low"], r["ci_high"] = (repr(max(0.0, v - half_width_pp / 100)),
                                             repr(min(1.0, v + half_width_pp / 100)))
        write_task_csv(path, rows)
    return folder


def write_custom_run(folder: Path, model: str, values: dict[str, float], half_width: float = 0.02,
                     partial: frozenset = frozenset(), counts: dict | None = None, expected: int | None = None,
                     model_fingerprint: str = "a" * 16) -> Path:
    """A run of user-defined tasks (not in the catalogue): ``values`` {task: fraction}, each the primary acc1 with an
    interval of +-half_width, 200 samples (``counts`` changes one; ``expected`` states a protocol count)."""
    folder.mkdir(parents=True, exist_ok=True)
    for task, value in values.items():
        n = (counts or {}).get(task, 200)
        status = count_status(n, expected, task in partial)
        common = {c: "" for c in TASK_COLUMNS} | {
            "model": model, "model_fingerprint": model_fingerprint, "adapter": "open_clip", "weights": "file:w.pt",
            "task": task, "task_version": 1, "task_fingerprint": "b" * 16, "transform": "shortest",
            "protocol": "decoder=pil;precision=fp32;transform=shortest", "num_samples": n, "num_failed": 0,
            "expected_num_samples": expected, "count_status": status, "partial": task in partial,
            "seconds": 2.0, "images_per_second": 100.0, "evalsuite_version": "0.1.0", "git_sha": "abc",
            "finished_utc": "2025-01-01T00:00:00Z"}
        rows = [common | {"metric": "acc1", "value": value, "ci_low": max(0.0, value - half_width),
                          "ci_high": min(1.0, value + half_width), "is_primary": True},
                common | {"metric": "acc5", "value": min(1.0, value + 0.1), "is_primary": False}]
        write_task_csv(folder / f"{task}.csv", rows)
    return folder


def refs(report=REPORT):
    return select_report(load_reference(), report)


# ---------------------------------------------------------------------------------------------------------------
# deltas against a reference


def test_delta_plot_bars_band_and_intervals(tmp_path):
    run = add_intervals(write_synthetic_run(tmp_path / MODEL, MODEL, nudge={"dtd": {"acc1": 0.6}},
                                            partial={"cifar10"}), half_width_pp=0.4)
    png = tmp_path / "deltas.png"
    (panel,) = plot_vs_reference(load_runs(run), refs(), CATALOG, png)
    assert png.stat().st_size > 10_000
    bars = {b.task if b.metric in ("acc1", "mean_primary", "mean_acc1_acc5") else f"{b.task} {b.metric}": b
            for b in panel.bars}
    # 27 classification + avg27, 4 video + average, 12 retrieval recalls + MR
    assert len(panel.bars) == 27 + 1 + 4 + 1 + 12 + 1
    dtd = bars["dtd"]
    assert dtd.delta == pytest.approx(0.6) and not dtd.within and dtd.tolerance == 0.5 and not dtd.refused
    assert dtd.interval == pytest.approx((0.2, 1.0))  # the bootstrap interval, as a delta in pp
    assert bars["imagenet1k"].delta == pytest.approx(0.0) and bars["imagenet1k"].within
    assert bars["cifar10"].refused.startswith("partial") and bars["cifar10"].label == "cifar10‡"
    avg = bars["suite:eva_cls27"]
    assert avg.tolerance == 0.3 and avg.interval is None and avg.label == "avg27‡"
    assert avg.refused.startswith("1 of 27 members refused: cifar10")
    values = {r.task: r.value for r in refs() if r.model == MODEL and r.metric == "acc1"}
    mean27 = sum(values[t] for t in CATALOG.suite_members("eva_cls27")) / 27  # the paper rounds its average
    assert avg.delta == pytest.approx(mean27 + 0.6 / 27 - 80.7, abs=1e-6)
    recall = bars["mscoco image_retrieval_recall@5"]
    assert recall.interval is None  # intervals belong to the primary metric (mean_recall) only
    # the axis is in pp and fits the deltas: a 0.6 pp delta is a quarter of the half-height, not 0.6 % of 0-100
    assert panel.limit == pytest.approx(2.5 * 0.5) and not panel.clipped


def test_delta_plot_clips_a_far_value_and_writes_it(tmp_path):
    run = write_synthetic_run(tmp_path / MODEL, MODEL, nudge={"mnist": {"acc1": -25}, "dtd": {"acc1": 3}})
    (panel,) = plot_vs_reference(load_runs(run), refs(), CATALOG, tmp_path / "d.png")
    assert panel.limit == pytest.approx(10.0)  # at most 20 tolerances: the band stays visible
    assert [b.task for b in panel.clipped] == ["mnist"] and panel.clipped[0].delta == pytest.approx(-25)


def test_delta_plot_leaves_out_values_evalsuite_cannot_reproduce(tmp_path):
    run = write_synthetic_run(tmp_path / "g", "EVA01-CLIP-g-14", report=DRAFT)
    (panel,) = plot_vs_reference(load_runs(run), refs(DRAFT), CATALOG, tmp_path / "d.png")
    assert len(panel.not_reproducible) == 12 and all("R@" in h for h in panel.not_reproducible)
    assert not any(b.task in ("mscoco", "flickr30k") for b in panel.bars)
    assert panel.bars and all(b.within for b in panel.bars)


def test_delta_plot_refuses_runs_without_reference_values(tmp_path):
    run = write_custom_run(tmp_path / "mine", "demo-clip", {"logos": 0.5})
    assert main(["aggregate", str(run), "--reference", REPORT, "--plot", str(tmp_path / "p.png")]) == 2
    assert not (tmp_path / "p.png").exists()


# ---------------------------------------------------------------------------------------------------------------
# the user's own runs side by side


def test_runs_side_by_side_without_a_reference(tmp_path, capsys):
    a = write_custom_run(tmp_path / "runs" / "prompts_a", "my-clip", {"logos": 0.70, "pets_mine": 0.80, "signs": 0.55})
    write_custom_run(tmp_path / "runs" / "prompts_b", "my-clip", {"logos": 0.74, "pets_mine": 0.79},
                     partial=frozenset({"pets_mine"}))
    png = tmp_path / "side.png"
    assert main(["aggregate", str(tmp_path / "runs"), "--plot", str(png)]) == 0  # no --reference: side by side
    assert png.stat().st_size > 10_000
    data = plot_runs(load_runs(tmp_path / "runs"), CATALOG, tmp_path / "again.png")
    assert data.columns == ["logos", "pets_mine", "signs"] and data.tasks == data.columns
    assert [s.label for s in data.series] == ["my-clip (prompts_a)", "my-clip (prompts_b)"]
    first, second = data.series
    assert first.values == pytest.approx([70.0, 80.0, 55.0])
    assert second.values[:2] == pytest.approx([74.0, 79.0]) and second.values[2] is None
    assert first.intervals[0] == pytest.approx((68.0, 72.0))
    assert second.odd == [False, True, False]  # partial: hatched and named in the note
    (diff,) = data.differences
    assert diff.label == "my-clip (prompts_b) − my-clip (prompts_a)"
    assert diff.values[:2] == pytest.approx([4.0, -1.0]) and diff.values[2] is None
    assert run_labels(load_runs(a)) == ["my-clip"]


def test_runs_side_by_side_with_suites_and_paper_order(tmp_path):
    write_synthetic_run(tmp_path / "runs" / "EVA-CLIP-18B", MODEL)
    write_synthetic_run(tmp_path / "runs" / "EVA-CLIP-8B", "EVA-CLIP-8B")
    data = plot_runs(load_runs(tmp_path / "runs"), CATALOG, tmp_path / "side.png")
    assert data.columns[:3] == ["imagenet1k", "imagenetv2", "imagenet_a"]
    assert data.columns[-4:] == ["eva_cls27 avg", "imagenet_variants avg", "eva_video avg", "eva_retrieval avg"]
    assert "mscoco" in data.columns  # retrieval by its primary metric (mean_recall)
    i = data.columns.index("eva_cls27 avg")
    by_label = {s.label: s for s in data.series}
    assert by_label[MODEL].values[i] == pytest.approx(80.7, abs=0.05)
    assert by_label["EVA-CLIP-8B"].values[i] == pytest.approx(79.4, abs=0.05)


def test_aggregate_plot_of_the_demo_tasks_only(tmp_path):
    run = write_custom_run(tmp_path / "demo-clip", "demo-clip", {"demo_shapes": 0.9367, "demo_heldout": 0.7625})
    assert main(["aggregate", str(run), "--plot", str(tmp_path / "demo.png")]) == 0
    data = plot_runs(load_runs(run), CATALOG, tmp_path / "demo2.png")
    assert data.columns == ["demo_heldout", "demo_shapes"] and not data.differences


# ---------------------------------------------------------------------------------------------------------------
# scaling


def test_scaling_plot_papers_points_and_a_partial_suite(tmp_path):
    from evalsuite.models.card import all_cards

    params = {n: c.params_millions for n, c in all_cards().items() if c.params_millions}
    write_synthetic_run(tmp_path / "runs" / MODEL, MODEL)
    part = write_synthetic_run(tmp_path / "runs" / "EVA-CLIP-8B", "EVA-CLIP-8B")
    keep = CATALOG.suite_members("eva_cls27")[:10]
    for path in part.glob("*.csv"):
        if path.stem in CATALOG.suite_members("eva_cls27") and path.stem not in keep:
            path.unlink()
    write_custom_run(tmp_path / "runs" / "demo-clip", "demo-clip", {"demo_shapes": 0.93})
    write_custom_run(tmp_path / "runs" / "mystery", "mystery-model", {"imagenet1k": 0.5})
    png = tmp_path / "scaling.png"
    data = plot_scaling(load_runs(tmp_path / "runs"), CATALOG, params, png)
    assert png.stat().st_size > 10_000
    paper = {(p.model, p.source): p for p in data.papers}
    assert paper[(MODEL, REPORT)].value == 80.7 and paper[(MODEL, REPORT)].params == 18325
    assert paper[("EVA02-CLIP-B-16", DRAFT)].value == 65.6 and paper[("EVA02-CLIP-B-16", DRAFT)].params == 149
    runs = {p.model: p for p in data.runs}
    assert set(runs) == {MODEL, "EVA-CLIP-8B"}
    assert not runs[MODEL].partial and runs[MODEL].value == pytest.approx(80.7, abs=0.05)
    eight = runs["EVA-CLIP-8B"]
    assert eight.partial and (eight.num_tasks, eight.total) == (10, 27)
    reference = {r.task: r.value for r in refs() if r.model == "EVA-CLIP-8B" and r.metric == "acc1"}
    assert eight.value == pytest.approx(sum(reference[t] for t in keep) / 10)  # the mean of what it has
    assert sorted(data.left_out) == ["demo-clip: none of the 27 classification tasks",
                                     "mystery-model: no params_millions in a model card named 'mystery-model'"]


def test_export_plot_draws_even_when_no_run_has_a_point(tmp_path):
    write_custom_run(tmp_path / "runs" / "demo-clip", "demo-clip", {"demo_shapes": 0.93})
    png = tmp_path / "scaling.png"
    assert main(["export", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "lb.csv"), "--plot",
                 str(png)]) == 0
    assert png.stat().st_size > 10_000
