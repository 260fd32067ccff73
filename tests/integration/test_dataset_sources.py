"""The downloader-backed sources without a network: CLIP_benchmark's builder on a torchvision layout written
here, and `prepare` offline (the webdataset kinds: tests/unit/test_webdataset_*.py)."""

import csv
import os
import subprocess
import sys

import pytest

from evalsuite.catalog import Catalog
from evalsuite.cli import main
from evalsuite.errors import DatasetUnavailableError
from evalsuite.prepare import prepare_task
from evalsuite.tasks import build_task
from helpers import FEWER_THAN_EXPECTED, write_fake_mnist

CATALOG = Catalog.load()
LABELS = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4]


def test_clip_benchmark_source_reads_torchvision_layout(tmp_path):
    write_fake_mnist(tmp_path / "mnist", LABELS)
    task = build_task(CATALOG.tasks["mnist"])
    samples = task.find_samples(task.source_context(tmp_path))
    assert task.source_used == "clip_benchmark"
    assert samples.labels == LABELS
    image = samples.load(samples.items[7])
    assert image.mode == "RGB" and image.size == (28, 28)


def test_clip_benchmark_source_missing_data_says_how(tmp_path):
    task = build_task(CATALOG.tasks["mnist"])
    with pytest.raises(DatasetUnavailableError, match=r"evalsuite prepare mnist"):
        task.find_samples(task.source_context(tmp_path))


def test_prepare_verifies_the_count(tmp_path):
    write_fake_mnist(tmp_path / "mnist", LABELS)
    outcome = prepare_task(CATALOG.tasks["mnist"], tmp_path)
    assert not outcome.ok and outcome.num_samples == 20
    assert "expects 10000" in outcome.line() and outcome.line().startswith("FAIL mnist:")


def test_cli_runs_a_clip_benchmark_task(tiny_model_dir, tmp_path):
    write_fake_mnist(tmp_path / "data" / "mnist", LABELS)
    out = tmp_path / "results"
    code = main(["run", "--model", f"local-dir:{tiny_model_dir}", "--tasks", "mnist", "--data-root",
                 str(tmp_path / "data"), "--output-dir", str(out), "--workers", "1"])
    assert code == FEWER_THAN_EXPECTED
    rows = list(csv.DictReader((next(out.iterdir()) / "mnist.csv").open()))
    assert {r["num_samples"] for r in rows} == {"20"} and {r["num_failed"] for r in rows} == {"0"}


OFFLINE = {"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1", "no_proxy": "", "NO_PROXY": ""}


def test_prepare_offline_fails_per_task_and_touches_nothing(tmp_path):
    """Network forced off (a dead proxy) so the test is the same on machines with internet."""
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    data_root = tmp_path / "data"
    env = {**os.environ, **OFFLINE}
    proc = subprocess.run([sys.executable, "-m", "evalsuite.cli", "prepare", "cifar100,stanford_cars,birdsnap",
                           "--data-root", str(data_root)], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr  # offline: the plan, then one FAIL line per task (test_prepare_plan.py)
    lines = [line for line in proc.stdout.splitlines() if not line.startswith("plan ")]
    assert [line.split(":")[0] for line in lines] == ["FAIL cifar100", "FAIL stanford_cars", "FAIL birdsnap"]
    assert "get_birdsnap.py" in lines[2]  # manual dataset: the instructions
    assert not data_root.exists() and not any(workdir.iterdir())
    assert "3 of 3 task(s) not ready" in proc.stderr
