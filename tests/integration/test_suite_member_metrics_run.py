"""suites.csv written by `evalsuite run` averages a suite's member_metrics, as `aggregate` does."""

from __future__ import annotations

import csv

import pytest

from evalsuite.cli import main
from helpers import write_class_folders, write_include_task


def suites(folder):
    return {r["suite"]: float(r["value"]) for r in csv.DictReader(next(folder.iterdir()).joinpath("suites.csv").open())}


def write_mix_suite(tmp_path):
    """Data for tasks pets (unbalanced: its recall differs from its accuracy) and cars, and the include path of a
    suite mix averaging pets' mean per-class recall with cars' primary metric."""
    write_class_folders(tmp_path / "data" / "pets", ["cat", "dog", "cow"], per_class=4)
    write_class_folders(tmp_path / "data" / "pets", ["cat"], per_class=9)
    write_class_folders(tmp_path / "data" / "cars", ["sedan", "truck"], per_class=3)
    inc = tmp_path / "inc"
    write_include_task(inc, "pets", ["cat", "dog", "cow"], metrics=("acc1", "mean_per_class_recall"))
    write_include_task(inc, "cars", ["sedan", "truck"], metrics=("acc1", "mean_per_class_recall"))
    (inc / "tasks" / "suites").mkdir()
    (inc / "tasks" / "suites" / "mix.yaml").write_text("name: mix\nmembers: [pets, cars]\n"
                                                      "member_metrics: {pets: mean_per_class_recall}\n")
    return inc


def test_run_writes_suite_means_of_member_metrics(tiny_model_dir, tmp_path):
    inc = write_mix_suite(tmp_path)
    out = tmp_path / "out"
    assert main(["run", "--model", f"local-dir:{tiny_model_dir}", "--tasks", "mix", "--data-root",
                 str(tmp_path / "data"), "--include-path", str(inc), "--output-dir", str(out), "--workers", "0",
                 "--bootstrap", "0"]) == 0
    written = suites(out)
    rows = {}
    for task in ("pets", "cars"):
        rows[task] = {r["metric"]: float(r["value"]) for r in
                      csv.DictReader(next(out.iterdir()).joinpath(f"{task}.csv").open())}
    assert rows["pets"]["mean_per_class_recall"] != rows["pets"]["acc1"]
    assert written["mix"] == (rows["pets"]["mean_per_class_recall"] + rows["cars"]["acc1"]) / 2
    assert main(["aggregate", str(out), "--include-path", str(inc)]) == 0
    assert suites(out) == written  # the rebuild agrees with the run


def test_compare_averages_the_suite_member_metrics(tiny_model_dir, tmp_path, capsys):
    """`compare`'s suite row is the difference of the suites.csv means: a member named in member_metrics takes
    that metric, not its primary one (before: the primary, so A's suite value was not the suite's mean)."""
    from evalsuite.models.tiny import write_tiny_clip

    inc = write_mix_suite(tmp_path)
    other = write_tiny_clip(tmp_path / "other", seed=1)
    outs = []
    for name, model in (("a", tiny_model_dir), ("b", other)):
        outs.append(tmp_path / name)
        assert main(["run", "--model", f"local-dir:{model}", "--tasks", "mix", "--data-root", str(tmp_path / "data"),
                     "--include-path", str(inc), "--output-dir", str(outs[-1]), "--workers", "0",
                     "--bootstrap", "0"]) == 0
    table = tmp_path / "cmp.csv"
    assert main(["compare", str(next(outs[0].iterdir())), str(next(outs[1].iterdir())), "--include-path", str(inc),
                 "--iterations", "200", "--out", str(table)]) == 0
    capsys.readouterr()
    row = next(r for r in csv.DictReader(table.open()) if r["name"] == "suite:mix")
    assert float(row["value_a"]) == pytest.approx(suites(outs[0])["mix"], abs=1e-9)
    assert float(row["value_b"]) == pytest.approx(suites(outs[1])["mix"], abs=1e-9)
