"""evaluate() inside a training job: it leaves the job's random stream and multiprocessing start method alone,
writes the run's log although the job shows only warnings, and works in a DDP job whether every rank or one rank
calls it (never a hang, never every rank writing)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import open_clip
import pytest
import torch

import evalsuite
from evalsuite.errors import UserInputError
from helpers import CIFAR10_CLASSES, write_class_folders, write_include_task


@pytest.fixture
def world(tmp_path):
    inc = tmp_path / "inc"
    write_include_task(inc, "toy10", CIFAR10_CLASSES, metrics=("acc1", "acc5"))
    write_class_folders(tmp_path / "data" / "toy10", CIFAR10_CLASSES, per_class=2)
    return {"data_root": tmp_path / "data", "include_paths": [inc], "bootstrap": 0}


@pytest.fixture
def tiny(tiny_model_dir):
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tiny_model_dir}")
    return model, {"preprocess": preprocess, "tokenizer": open_clip.get_tokenizer(f"local-dir:{tiny_model_dir}")}


def test_the_training_jobs_random_stream_and_start_method_are_left_alone(tiny, world, tmp_path):
    model, parts = tiny
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    evalsuite.evaluate(model, "toy10", output_dir=tmp_path / "out", workers=1, **parts, **world)
    assert torch.equal(torch.rand(3), expected)  # DataLoader seeds drawn from the global generator shifted it
    code = textwrap.dedent("""
        import multiprocessing, sys, torch
        from evalsuite.data.loader import TurnGate, make_loader
        TurnGate()
        list(make_loader([(torch.zeros(1), 0, i, None) for i in range(4)], 2, 1, torch.device("cpu")))
        multiprocessing.set_start_method("spawn")  # raised: a default context was fixed for the process
        print(multiprocessing.get_start_method())
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "spawn", proc.stderr[-2000:]


def test_run_log_holds_the_info_lines_while_the_callers_console_gets_warnings_only(tiny, world, tmp_path):
    model, parts = tiny
    seen: list[logging.LogRecord] = []
    catcher = logging.Handler()
    catcher.emit = seen.append
    root = logging.getLogger()
    root.addHandler(catcher)
    ours = logging.getLogger("evalsuite")
    before = (ours.level, ours.propagate, list(ours.handlers))
    try:
        results = evalsuite.evaluate(model, "toy10", output_dir=tmp_path / "out", workers=0, **parts, **world)
    finally:
        root.removeHandler(catcher)
    lines = (results.folder / "run.log").read_text().splitlines()
    assert "INFO === evalsuite" in lines[0] and "(Python API)" in lines[0]
    assert any("[1/1] toy10" in line for line in lines)
    assert not [r for r in seen if r.name.startswith("evalsuite") and r.levelno < logging.WARNING]
    assert (ours.level, ours.propagate, list(ours.handlers)) == before


def test_evaluate_outside_a_process_group_refuses_distributed_true(tiny, world, tmp_path):
    model, parts = tiny
    with pytest.raises(UserInputError, match="init_process_group"):
        evalsuite.evaluate(model, "toy10", output_dir=tmp_path / "out", distributed=True, **parts, **world)


DDP_JOB = """
import os, sys, torch, torch.distributed as dist, open_clip, evalsuite, evalsuite.errors
mode, model_dir, data, inc, out = sys.argv[1:6]
dist.init_process_group("gloo")
rank = dist.get_rank()
model, _, pre = open_clip.create_model_and_transforms(f"local-dir:{model_dir}")
kw = dict(data_root=data, include_paths=[inc], output_dir=out, workers=0, bootstrap=0, preprocess=pre,
          tokenizer=open_clip.get_tokenizer(f"local-dir:{model_dir}"))
said = None
try:
    if mode == "all":
        r = evalsuite.evaluate(model, "toy10", distributed=True, **kw)
        said = f"{r.primary} {r.model_fingerprint}"
    elif rank == 0:
        r = evalsuite.evaluate(model, "toy10", distributed=(False if mode == "rank0" else None), **kw)
        said = f"{r.primary} {r.model_fingerprint}"
except evalsuite.errors.UserInputError as exc:
    said = f"refused: {exc}"
if said is not None:  # a file per rank: two ranks printing into one pipe may interleave their lines
    open(f"{out}.rank{rank}", "w").write(said)
dist.barrier()
"""


@pytest.mark.slow
def test_a_ddp_job_evaluates_with_every_rank_or_with_rank_0_alone(tiny_model_dir, world, tmp_path):
    from test_distributed import free_port

    script = tmp_path / "job.py"
    script.write_text(DDP_JOB)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EVALSUITE_CACHE_DIR": str(tmp_path / "cache")}

    def job(mode: str) -> list[str]:
        """What the ranks printed (sorted by rank)."""
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                               "--master-port", str(free_port()), str(script), mode, str(tiny_model_dir),
                               str(world["data_root"]), str(world["include_paths"][0]), str(tmp_path / mode)],
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
        return [f"rank {r}: {p.read_text()}" for r in (0, 1) if (p := tmp_path / f"{mode}.rank{r}").is_file()]

    every = job("all")  # both ranks get rank 0's Results (rank 1 used to find no run.json)
    assert [line.split(":", 1)[0] for line in every] == ["rank 0", "rank 1"]
    assert every[0].split(":", 1)[1] == every[1].split(":", 1)[1]
    assert job("rank0") == [every[0]]  # rank 0 alone (it used to wait in a collective for rank 1 forever)
    (refused,) = job("unsaid")
    assert refused.startswith("rank 0: refused: evaluate: this process is rank 0 of a 2-rank")
