"""open_clip's own measurements as a reference family: the checked-in CSV is the conversion of
../shared/reference/openclip_measured_numbers.yaml, and `evalsuite check --reference` verifies a run against it."""

from pathlib import Path

import pytest
import yaml

from evalsuite.catalog import Catalog
from evalsuite.cli import main
from evalsuite.reference import (
    convert_openclip_numbers,
    load_layout,
    load_reference,
    reference_dir,
    rows_to_csv,
    select_report,
)
from evalsuite.results import TASK_COLUMNS, count_status, format_protocol, write_task_csv
from helpers import SHARED_DATA

CATALOG = Catalog.load()
REPORT = load_layout()["openclip"]["report"]
MODEL = "EVA02-CLIP-B-16"
SOURCE = SHARED_DATA.parent / "reference" / "openclip_measured_numbers.yaml"  # absent on a fresh machine: skip


def test_checked_in_csv_equals_the_conversion():
    if not SOURCE.is_file():
        pytest.skip("openclip_measured_numbers.yaml not available")
    data = yaml.safe_load(SOURCE.read_text())
    rows = convert_openclip_numbers(data)
    assert rows_to_csv(rows) == (reference_dir() / "openclip_measured.csv").read_text(), \
        "regenerate: python -m evalsuite.reference --openclip ../shared/reference/openclip_measured_numbers.yaml" \
        " results/reference/openclip_measured.csv"
    ours = {(r.model, r.task, r.metric): r.value for r in rows}
    b16 = data["models"]["EVA02-B-16:merged2b_s8b_b131k"]
    assert ours[(MODEL, "flowers102", "mean_per_class_recall")] == pytest.approx(100 * b16["Oxford Flowers-102"])
    assert ours[(MODEL, "caltech101_vtab", "mean_per_class_recall")] == pytest.approx(100 * b16["Caltech-101"])
    assert ours[(MODEL, "mscoco", "image_retrieval_recall@1")] == pytest.approx(
        100 * b16["retrieval"]["MSCOCO image retr. R@1"])
    # a column the layout neither maps nor leaves out stops the conversion
    data["models"]["EVA02-B-16:merged2b_s8b_b131k"]["New Dataset"] = 0.5
    with pytest.raises(ValueError, match="New Dataset"):
        convert_openclip_numbers(data)


def test_rows_name_tasks_metrics_cards_and_the_datacomp_protocol():
    from evalsuite.models.card import all_cards

    rows = select_report(load_reference(), REPORT)
    assert len({r.model for r in rows}) == 7 and {r.model for r in rows} <= set(all_cards())
    for r in rows:
        assert r.metric in CATALOG.tasks[r.task].metrics, r
        assert (r.decoder, r.precision, r.transform) == ("pil", "fp32", "shortest"), r
        retrieval = CATALOG.tasks[r.task].type == "zeroshot_retrieval"
        assert bool(r.not_reproducible) == retrieval, r  # DataComp's retrieval used the crop transform
    assert not any(r.is_suite for r in rows)  # the 38-average is not the datacomp38 suite's (29 of 38)


def write_run(folder: Path, nudge: dict | None = None, precision: str = "fp32") -> Path:
    """Task CSVs holding the maintainers' own values for MODEL (classification rows), as a run writes them."""
    by_task: dict[str, dict[str, float]] = {}
    for r in select_report(load_reference(), REPORT):
        if r.model == MODEL and not r.not_reproducible:
            by_task.setdefault(r.task, {})[r.metric] = r.value / 100
    folder.mkdir(parents=True)
    for task, metrics in by_task.items():
        spec = CATALOG.tasks[task]
        metrics.setdefault(spec.primary_metric, metrics[next(iter(metrics))])
        for name, delta in (nudge or {}).get(task, {}).items():
            metrics[name] += delta / 100
        protocol = format_protocol({"transform": "shortest", "decoder": "pil", "precision": precision})
        n = spec.expected_num_samples
        rows = [{c: "" for c in TASK_COLUMNS} | {
            "model": MODEL, "model_fingerprint": "f" * 16, "adapter": "open_clip", "weights": "tag:x", "task": task,
            "task_version": spec.version, "task_fingerprint": "t" * 16, "transform": "shortest", "protocol": protocol,
            "metric": m, "value": v, "is_primary": m == spec.primary_metric, "num_samples": n, "num_texts": None,
            "num_failed": 0, "expected_num_samples": n, "expected_num_texts": None,
            "count_status": count_status(n, n, False), "partial": False, "seconds": 1.0,
            "images_per_second": 1.0} for m, v in metrics.items()]
        write_task_csv(folder / f"{task}.csv", rows)
    return folder


def test_check_passes_on_the_maintainers_values_and_fails_past_the_tolerance(tmp_path, capsys):
    run = write_run(tmp_path / "a" / MODEL)
    assert main(["check", str(run), "--reference", REPORT]) == 0
    out = capsys.readouterr().out
    assert sum(line.startswith("ok") for line in out.splitlines()) == 29 and "BREACH" not in out
    nudged = write_run(tmp_path / "b" / MODEL, nudge={"flowers102": {"mean_per_class_recall": 0.6}})
    assert main(["check", str(nudged), "--reference", REPORT]) == 4
    breaches = [line for line in capsys.readouterr().out.splitlines() if line.startswith("BREACH")]
    assert len(breaches) == 1 and "flowers102 mean_per_class_recall" in breaches[0]


def test_check_refuses_amp_results_with_the_fp32_advice(tmp_path, capsys):
    run = write_run(tmp_path / MODEL, precision="amp_fp16")
    assert main(["check", str(run), "--reference", REPORT]) == 2
    refused = [line for line in capsys.readouterr().out.splitlines() if line.startswith("REFUSED")]
    assert len(refused) == 29 and all("rerun with --precision fp32" in line for line in refused)


def test_unknown_report_lists_both_families(tmp_path, capsys):
    run = write_run(tmp_path / MODEL)
    assert main(["check", str(run), "--reference", "openclip"]) == 2
    err = capsys.readouterr().err
    assert REPORT in err and "evaclip18b_paper_2402.04252v1" in err
