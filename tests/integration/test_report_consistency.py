"""The numbers a results folder shows are of one configuration: a suite is never averaged over members made
under different ones, a result replaced by a failing re-run does not stay on show, and a resumed result carries
the count status of the task file as it is now."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from evalsuite.cli import main
from helpers import write_class_folders, write_include_task

CLASSES = ["cat", "dog", "car"]


@pytest.fixture
def world(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("EVALSUITE_CACHE_DIR", str(tmp_path / "cache"))
    inc = tmp_path / "inc"
    for task in ("t1", "t2", "t3"):
        write_include_task(inc, task, CLASSES)
        write_class_folders(tmp_path / "data" / task, CLASSES, per_class=2, seed=len(task))
    (inc / "tasks" / "suites").mkdir(parents=True)
    (inc / "tasks" / "suites" / "s3.yaml").write_text("name: s3\ndescription: t\nmembers: [t1, t2, t3]\n")

    def run(tasks: str, *extra: str) -> int:
        return main(["run", "--model", f"local-dir:{tiny_model_dir}", "--tasks", tasks, "--data-root",
                     str(tmp_path / "data"), "--include-path", str(inc), "--output-dir", str(tmp_path / "out"),
                     "--workers", "0", "--bootstrap", "0", *extra])

    return run, inc, tmp_path


def folder(tmp_path: Path) -> Path:
    (model,) = (tmp_path / "out").iterdir()
    return model


def suites(tmp_path: Path) -> list[str]:
    return [r["suite"] for r in csv.DictReader((folder(tmp_path) / "suites.csv").open())]


def test_a_suite_is_not_averaged_over_members_of_different_transforms_or_models(world):
    run, inc, tmp_path = world
    assert run("t1,t2", "--transform", "squash") == 0
    assert run("t3") == 0  # the default transform (shortest)
    assert suites(tmp_path) == []  # was s3: the mean of two squash members and one shortest
    assert main(["aggregate", str(folder(tmp_path)), "--include-path", str(inc)]) == 0
    assert suites(tmp_path) == []
    assert run("t1,t2") == 0  # all three under one configuration now
    assert suites(tmp_path) == ["s3"]
    t2 = folder(tmp_path) / "t2.csv"  # another model's (precision's) row among the members
    t2.write_text(t2.read_text().replace(next(csv.DictReader(t2.open()))["model_fingerprint"], "0123456789abcdef"))
    assert main(["aggregate", str(folder(tmp_path)), "--include-path", str(inc)]) == 0
    assert suites(tmp_path) == []


def test_a_result_replaced_by_a_failing_rerun_moves_to_history(world):
    run, inc, tmp_path = world
    assert run("s3") == 0
    for image in (tmp_path / "data" / "t1").rglob("*.png"):
        image.write_bytes(b"not an image")  # other data (a new fingerprint), and the evaluation fails
    assert run("s3") != 0
    model = folder(tmp_path)
    assert not (model / "t1.csv").exists()  # the old data's number stayed, and s3 averaged it
    assert list((model / "history").glob("t1.*.csv"))
    assert suites(tmp_path) == []


def test_resume_does_not_keep_a_count_status_checked_against_other_counts(world):
    run, inc, tmp_path = world
    task_file = inc / "tasks" / "t1.yaml"
    task_file.write_text(task_file.read_text() + "expected_num_samples: 6\n")
    assert run("t1") == 0
    task_file.write_text(task_file.read_text().replace("expected_num_samples: 6", "expected_num_samples: 50"))
    assert run("t1") == 3  # flagged: 6 of 50 (was resumed: exit 0, status ok against 6)
    row = next(csv.DictReader((folder(tmp_path) / "t1.csv").open()))
    assert (row["expected_num_samples"], row["count_status"]) == ("50", "fewer")
