"""torchrun with 2 CPU processes (gloo) gives exactly the single-process metrics and counts."""

import csv
import os
import socket
import subprocess
import sys

import pytest

from helpers import CIFAR10_CLASSES, write_class_folders


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rows_of(out):
    return {r["metric"]: r for r in csv.DictReader((next(out.iterdir()) / "cifar10.csv").open())}


@pytest.mark.slow
def test_two_gloo_ranks_equal_one_process(tiny_model_dir, tmp_path):
    write_class_folders(tmp_path / "data" / "cifar10", CIFAR10_CLASSES, per_class=3)  # 30: odd shard sizes
    (tmp_path / "data" / "cifar10" / "cat" / "broken.png").write_bytes(b"not an image")
    common = ["run", "--model", f"local-dir:{tiny_model_dir}", "--tasks", "cifar10", "--data-root",
              str(tmp_path / "data"), "--workers", "0", "--batch-size", "4", "--no-cache-features"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "evalsuite", *common, "--output-dir", str(tmp_path / "one")],
                            env=env, capture_output=True, text=True, timeout=600)
    assert single.returncode == 3, single.stderr  # flagged: one unreadable image
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                            "--master-port", str(free_port()), "-m", "evalsuite", *common,
                            "--output-dir", str(tmp_path / "two")], env=env, capture_output=True, text=True,
                           timeout=600)
    assert multi.returncode != 0 and "flagged: cifar10" in multi.stderr, multi.stderr[-3000:]
    assert "distributed: 2 ranks (gloo)" in multi.stderr
    one, two = rows_of(tmp_path / "one"), rows_of(tmp_path / "two")
    for metric in one:
        assert two[metric]["value"] == one[metric]["value"], metric
        assert two[metric]["num_samples"] == one[metric]["num_samples"] == "30"
        assert two[metric]["num_failed"] == one[metric]["num_failed"] == "1"
    assert (tmp_path / "two").is_dir() and len(list((tmp_path / "two").rglob("cifar10.csv"))) == 1
