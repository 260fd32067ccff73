import csv
import os

import pytest

from evalsuite.results import (
    TASK_COLUMNS,
    OutputWriteError,
    TaskIdentity,
    atomic_write_text,
    is_done,
    read_task_csv,
    task_rows,
    write_suites,
    write_summary,
    write_task_csv,
)
from evalsuite.tasks.base import TaskResult

IDENT = TaskIdentity("m", "mfp", "open_clip", "file:/w.pt", "t", 1, "tfp")


def result(**kw):
    base = dict(metrics={"acc1": 0.25, "acc5": 0.75}, num_samples=8, num_failed=0, failures=[], seconds=1.5,
                images_per_second=5.3)
    return TaskResult(**{**base, **kw})


def test_task_csv_schema_one_row_per_metric(tmp_path):
    path = tmp_path / "m" / "t.csv"
    write_task_csv(path, task_rows(IDENT, result(), "acc1"))
    with path.open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == TASK_COLUMNS
    assert [r["metric"] for r in rows] == ["acc1", "acc5"]
    assert [r["is_primary"] for r in rows] == ["true", "false"]
    assert float(rows[0]["value"]) == 0.25  # a fraction at full precision, not a percentage
    back = read_task_csv(path)
    assert back[1]["value"] == 0.75 and back[0]["num_samples"] == 8 and back[0]["partial"] is False


def test_atomic_write_leaves_old_file_intact_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OutputWriteError, match="f.txt: cannot write"):  # a user-facing error (exit 2), not a crash
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temp file left behind


def test_is_done_matches_fingerprints_only(tmp_path):
    path = tmp_path / "t.csv"
    assert not is_done(path, "mfp", "tfp")
    write_task_csv(path, task_rows(IDENT, result(), "acc1"))
    assert is_done(path, "mfp", "tfp")
    assert not is_done(path, "other", "tfp")
    assert not is_done(path, "mfp", "other")
    path.write_text("garbage,\n")
    assert not is_done(path, "mfp", "tfp")


def test_summary_and_suites(tmp_path):
    for name, v in [("a", 0.5), ("b", 0.7)]:
        ident = TaskIdentity("m", "mfp", "open_clip", "file:/w.pt", name, 1, f"fp-{name}")
        write_task_csv(tmp_path / f"{name}.csv", task_rows(ident, result(metrics={"acc1": v}), "acc1"))
    fps = {"a": "fp-a", "b": "fp-b", "c": "fp-c"}
    summary = write_summary(tmp_path, ["a", "b", "c"], "mfp", fps)
    assert [(r["task"], r["value"]) for r in summary] == [("a", 0.5), ("b", 0.7)]
    suites = write_suites(tmp_path, {"ab": ["a", "b"], "abc": ["a", "b", "c"]}, summary)
    assert [(s["suite"], round(s["value"], 12)) for s in suites] == [("ab", 0.6)]  # abc is incomplete: no row
    # a result from another configuration is not this run's
    assert write_summary(tmp_path, ["a"], "other-model", fps) == []
