"""The datacomp38 suite (open_clip's 38-dataset protocol, 29 of its 38 here), the VTAB variants, the suite-level
member_metrics override, and no suite/task/card name left in the reporting modules (their layout is data)."""

import ast
import re
from pathlib import Path

import pytest

from evalsuite.catalog import Catalog
from evalsuite.cli import main
from evalsuite.errors import ConfigError
from evalsuite.report import ModelRun, suite_value
from evalsuite.results import TASK_COLUMNS, count_status, format_protocol, read_task_csv, write_task_csv
from helpers import REPO

CATALOG = Catalog.load()
NEW = ["caltech101_vtab", "eurosat_vtab", "resisc45_vtab", "clevr_count", "kitti_distance", "svhn", "imagenet_o"]


def test_new_tasks_validate_and_stay_out_of_eva_cls27(capsys):
    assert main(["validate", "--tasks", ",".join(NEW + ["datacomp38"])]) == 0
    eva = set(CATALOG.suite_members("eva_cls27"))
    for name in NEW:
        spec = CATALOG.tasks[name]
        assert name not in eva and "eva_cls27" not in spec.tags, name
        assert spec.expected_num_samples and "webdataset" in {s.kind for s in spec.sources}
    counts = {t: CATALOG.tasks[t].expected_num_samples for t in NEW[:3]}
    assert counts == {"caltech101_vtab": 6084, "eurosat_vtab": 5400, "resisc45_vtab": 6300}
    assert {s.name for s in CATALOG.select(["tag:vtab"])} >= set(NEW[:3])


def test_suite_holds_29_of_38_with_datacomp_main_metrics():
    suite = CATALOG.suites["datacomp38"]
    members = CATALOG.suite_members("datacomp38")
    assert len(members) == suite.expected_size == 29 and "29 of the 38" in suite.notes
    assert {"caltech101_vtab", "eurosat_vtab", "resisc45_vtab"} <= set(members)
    assert not {"caltech101", "eurosat", "resisc45", "fer2013", "birdsnap"} & set(members)  # EVA-only copies
    mpcr = {m for m in members if (CATALOG.member_metric("datacomp38", m) or CATALOG.tasks[m].primary_metric)
            == "mean_per_class_recall"}
    assert mpcr == {"caltech101_vtab", "fgvc_aircraft", "flowers102", "oxford_pets"}
    assert CATALOG.tasks["flowers102"].primary_metric == "acc1"  # the EVA protocol's own stays


@pytest.mark.parametrize("override, error", [
    ("member_metrics: {flowers102: f1_macro}", "not among task 'flowers102'"),
    ("member_metrics: {mnist: acc1}", "no member of suite"),
])
def test_member_metrics_are_checked(tmp_path, override, error):
    (tmp_path / "tasks" / "suites").mkdir(parents=True)
    (tmp_path / "tasks" / "suites" / "mine.yaml").write_text(f"name: mine\nmembers: [flowers102, dtd]\n{override}\n")
    with pytest.raises(ConfigError, match=error):
        Catalog.load([tmp_path])


def _write(folder: Path, values: dict[str, dict[str, float]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for task, metrics in values.items():
        spec = CATALOG.tasks[task]
        n = spec.expected_num_samples
        protocol = format_protocol({"transform": "shortest", "decoder": "pil", "precision": "fp32"})
        write_task_csv(folder / f"{task}.csv", [{c: "" for c in TASK_COLUMNS} | {
            "model": "m", "model_fingerprint": "f" * 16, "adapter": "open_clip", "weights": "tag:x", "task": task,
            "task_version": spec.version, "task_fingerprint": "t" * 16, "transform": "shortest",
            "protocol": protocol, "metric": m, "value": v, "is_primary": m == spec.primary_metric, "num_samples": n,
            "num_texts": None, "num_failed": 0, "expected_num_samples": n, "expected_num_texts": None,
            "count_status": count_status(n, n, False), "partial": False, "seconds": 1.0,
            "images_per_second": 1.0} for m, v in metrics.items()])


def test_suite_means_use_the_member_metrics(tmp_path):
    import csv
    import json

    members = CATALOG.suite_members("datacomp38")
    values = {t: {"acc1": 0.5, "mean_per_class_recall": 0.9} for t in members}
    folder = tmp_path / "m"
    _write(folder, values)
    run = ModelRun(folder, {t: read_task_csv(folder / f"{t}.csv") for t in members})
    expected = (0.5 * 25 + 0.9 * 4) / 29  # mean per-class recall for Caltech (primary), Aircraft, Flowers, Pets
    assert suite_value(run, CATALOG, "datacomp38") == pytest.approx(expected)
    assert main(["aggregate", str(folder)]) == 0
    suites = {r["suite"]: float(r["value"]) for r in csv.DictReader((folder / "suites.csv").open())}
    assert suites["datacomp38"] == pytest.approx(expected)
    assert main(["export", "--runs", str(folder), "--format", "json", "--out", str(tmp_path / "x.json")]) == 0
    exported = json.loads((tmp_path / "x.json").read_text())["models"][0]["suites"]["datacomp38"]["value"]
    assert exported == pytest.approx(expected)
    # a member without the overriding metric leaves the suite out instead of averaging its primary metric
    _write(folder, {"flowers102": {"acc1": 0.5}})
    assert main(["aggregate", str(folder)]) == 0
    assert "datacomp38" not in {r["suite"] for r in csv.DictReader((folder / "suites.csv").open())}


def test_no_suite_task_or_card_name_in_the_reporting_modules():
    """Layout and name maps live in results/reference/layout.yaml: no string literal (docstrings aside) of these
    modules names a suite, task or model card."""
    from evalsuite.models.card import all_cards

    names = (set(CATALOG.tasks) | set(CATALOG.suites) | set(all_cards())) - {"all"}  # 'all' is an English word
    pattern = re.compile(r"(?<![\w-])(" + "|".join(sorted(map(re.escape, names), key=len, reverse=True))
                         + r")(?![\w-])")
    found = []
    for module in ("report.py", "reference.py", "plots.py", "report_html.py", "exports.py"):
        tree = ast.parse((REPO / "evalsuite" / module).read_text())
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
                and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        found += [f"{module}:{n.lineno} {m.group(0)}" for n in ast.walk(tree)
                  if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
                  for m in pattern.finditer(n.value)]
    assert not found, found
