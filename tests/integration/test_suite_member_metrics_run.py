"""suites.csv written by `evalsuite run` averages a suite's member_metrics, as `aggregate` does."""

from __future__ import annotations

import csv

from evalsuite.cli import main

from helpers import write_class_folders, write_include_task


def suites(folder):
    return {r["suite"]: float(r["value"]) for r in csv.DictReader(next(folder.iterdir()).joinpath("suites.csv").open())}


def test_run_writes_suite_means_of_member_metrics(tiny_model_dir, tmp_path):
    write_class_folders(tmp_path / "data" / "pets", ["cat", "dog", "cow"], per_class=4)
    write_class_folders(tmp_path / "data" / "pets", ["cat"], per_class=9)  # unbalanced: recall != accuracy
    write_class_folders(tmp_path / "data" / "cars", ["sedan", "truck"], per_class=3)
    inc = tmp_path / "inc"
    write_include_task(inc, "pets", ["cat", "dog", "cow"], metrics=("acc1", "mean_per_class_recall"))
    write_include_task(inc, "cars", ["sedan", "truck"], metrics=("acc1", "mean_per_class_recall"))
    (inc / "tasks" / "suites").mkdir()
    (inc / "tasks" / "suites" / "mix.yaml").write_text("name: mix\nmembers: [pets, cars]\n"
                                            "member_metrics: {pets: mean_per_class_recall}\n")
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
