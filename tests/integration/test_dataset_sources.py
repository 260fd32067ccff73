"""The downloader-backed sources without a network: CLIP_benchmark's builder on a torchvision layout written
here, the Hugging Face webdataset conversion on shards written here, and `prepare` offline."""

import csv
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from evalsuite.catalog import Catalog
from evalsuite.cli import main
from evalsuite.data.hf_webdataset import HFWebdatasetSource, convert_shards
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


def write_shards(snapshot: Path, samples: list[tuple[str, int]], per_shard: int = 3, classes: int = 4) -> None:
    (snapshot / "test").mkdir(parents=True)
    (snapshot / "classnames.txt").write_text("".join(f"class {i}\n" for i in range(classes)))
    for shard_index in range(0, len(samples), per_shard):
        with tarfile.open(snapshot / "test" / f"{shard_index // per_shard}.tar", "w") as tar:
            for key, label in samples[shard_index:shard_index + per_shard]:
                buf = io.BytesIO()
                Image.new("RGB", (8, 8), (label * 60, 0, 0)).save(buf, format="PNG")
                for suffix, payload in (("png", buf.getvalue()), ("cls", f"{label}\n".encode())):
                    info = tarfile.TarInfo(f"{key}.{suffix}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))


def test_convert_shards_keeps_every_sample_and_label(tmp_path):
    samples = [(f"s{i:04d}", i % 4) for i in range(8)]
    write_shards(tmp_path / "snap", samples)
    assert convert_shards(tmp_path / "snap", "test", tmp_path / "out", num_classes=4) == 8
    rows = list(csv.DictReader((tmp_path / "out" / "labels.csv").open()))
    assert [int(r["label"]) for r in rows] == [label for _, label in samples]
    first = Image.open(tmp_path / "out" / rows[1]["path"])
    assert first.getpixel((0, 0)) == (60, 0, 0)


def test_convert_shards_rejects_wrong_class_count_and_incomplete_samples(tmp_path):
    write_shards(tmp_path / "a", [("x", 0)], classes=3)
    with pytest.raises(DatasetUnavailableError, match="lists 3 classes"):
        convert_shards(tmp_path / "a", "test", tmp_path / "out-a", num_classes=4)
    write_shards(tmp_path / "b", [("x", 5)])
    with pytest.raises(DatasetUnavailableError, match="label 5"):
        convert_shards(tmp_path / "b", "test", tmp_path / "out-b", num_classes=4)


def test_hf_webdataset_fetch_then_samples(tmp_path, monkeypatch):
    """stanford_cars through its real YAML; only the hub download is replaced by local shards."""
    snapshot = tmp_path / "snap"
    write_shards(snapshot, [(f"k{i}", i * 40) for i in range(5)], classes=196)
    monkeypatch.setattr(HFWebdatasetSource, "download", lambda self, stage: (snapshot, "0" * 40))
    outcome = prepare_task(CATALOG.tasks["stanford_cars"], tmp_path / "data")
    assert outcome.num_samples == 5 and "expects 8041" in outcome.message
    root = tmp_path / "data" / "stanford_cars"
    assert json.loads((root / "source.json").read_text())["commit"] == "0" * 40
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["stanford_cars"]  # no staging left
    task = build_task(CATALOG.tasks["stanford_cars"])
    assert task.find_samples(task.source_context(tmp_path / "data")).labels == [0, 40, 80, 120, 160]


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
    assert proc.returncode == 3, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["FAIL cifar100", "FAIL stanford_cars", "FAIL birdsnap"]
    assert "get_birdsnap.py" in lines[2]  # manual dataset: the instructions
    assert not data_root.exists() and not any(workdir.iterdir())
    assert "3 of 3 task(s) not ready" in proc.stderr
