"""benchmarks/gpu_check.py on the CPU: the one-line refusal without CUDA, the budget's skips, and --cpu-smoke running
every section with tiny models (the GPU numbers themselves need a GPU machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def run_script(*args: str, env_extra: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          cwd=str(REPO), timeout=timeout, check=False)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(cuda_available(), reason="the refusal is for machines without CUDA")
def test_without_cuda_exits_with_one_line():
    result = run_script()
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "no CUDA device" in lines[0] and "--cpu-smoke" in lines[0]


def test_bad_sections_refused():
    result = run_script("--sections", "a,z")
    assert result.returncode == 2
    assert "--sections" in result.stderr and "Traceback" not in result.stderr


def test_spent_budget_skips_with_notes(tmp_path):
    """A budget too small for anything: every section says it was skipped and why; still a summary, exit 0."""
    result = run_script("--cpu-smoke", "--budget", "0.01", "--json", str(tmp_path / "r.json"), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for section in ("b", "c", "d"):
        assert f"SKIPPED section {section}:" in out, out
    assert "SKIPPED a EVA-CLIP-8B:" in out
    assert "### gpu_check:" in out and "Skipped / failed:" in out
    assert json.loads((tmp_path / "r.json").read_text())["notes"]


@pytest.mark.slow
def test_cpu_smoke_runs_every_section(tmp_path):
    """~2 minutes on 2 shared cores: six `evalsuite run` processes."""
    report = tmp_path / "gpu_check.json"
    result = run_script("--cpu-smoke", "--json", str(report), env_extra={"EVALSUITE_PEAK_BF16_TFLOPS": "1"})
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Traceback" not in out + result.stderr
    for header in ("[a]", "[b]", "[c]", "[d]", "[e]", "### gpu_check:"):
        assert header in out, out
    results = json.loads(report.read_text())["results"]

    # a: three towers x five modes, each with a rate and (peak override) a share of the FLOP bound
    assert set(results["a"]) == {"EVA02-CLIP-B-16", "EVA02-CLIP-L-14", "EVA-CLIP-8B"}
    for row in results["a"].values():
        assert row["gflops"] > 0 and row["bound"] > 0
        assert list(row["modes"]) == ["fp32", "amp_fp16", "amp_bf16", "fp16", "bf16"]
        for mode in row["modes"].values():
            assert mode["images_per_second"] > 0 and mode["of_bound"] > 0 and mode["finite"]
    assert "| EVA-CLIP-8B |" in out and "| bf16 |" in out

    # b: pil, tensor, the pixel cache filled then read (cuda skipped on a CPU), all the same predictions
    runs = {r["label"]: r for r in results["b"]["runs"]}
    assert len(runs) == 4 and all(r["ok"] for r in runs.values()), runs
    assert not any("cuda" in label for label in runs)
    for label, r in runs.items():
        assert r["images_per_second"] > 0 and r["ratio"] > 0
        if label != "decoder pil":
            same, total = r["top1_same_as_pil"]
            assert total == results["b"]["images"]
            if "cache" in label:  # the pixel cache holds pil's pixels: the same predictions
                assert same == total
    assert "SKIPPED b decoder cuda: no CUDA device" in out

    # c: the tensor decoder stands in for cuda; within 2/255 of pil
    assert results["c"]["decoder"] == "tensor" and results["c"]["max_abs"] <= 2
    assert results["c"]["cos_min"] > 0.99

    # d: batch 65536 vs a small batch, same metrics and predictions (no OOM on a CPU, said so)
    d = results["d"]
    assert d["same_metrics"] and d["same_predictions"][0] == d["same_predictions"][1] == d["images"]
    assert not d["oom"]
    assert "SKIPPED d out-of-memory: no CUDA device" in out
