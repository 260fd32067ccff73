"""The Encoder owns the path from task inputs to features (issue 17): a fully cached re-run loads no weights,
task types know nothing of caches, loaders or ranks, and RunContext holds only what a task needs."""

from __future__ import annotations

import ast
import csv
import dataclasses
from pathlib import Path

import pytest

import evalsuite.runner
from evalsuite.cli import main
from evalsuite.tasks.base import RunContext

TASKS_DIR = Path(evalsuite.runner.__file__).parent / "tasks"


def primary_values(folder: Path) -> dict:
    out = {}
    for path in sorted(folder.glob("*/*.csv")):
        if path.name in ("summary.csv", "suites.csv") or path.name.endswith(".predictions.csv"):
            continue
        for row in csv.DictReader(path.open()):
            out[(row["task"], row["metric"])] = row["value"]
    return out


def test_a_fully_cached_rerun_loads_no_weights(tmp_path, monkeypatch, capsys):
    """Classification, video frames and retrieval captions all come from the feature cache the second time;
    the model is never built, the numbers are the same and the log says why."""
    monkeypatch.setenv("EVALSUITE_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["run", "--model", "demo-clip", "--tasks", "demo", "--workers", "0", "--no-resume"]
    assert main(argv + ["--output-dir", str(tmp_path / "first")]) == 0
    loads = []
    real = evalsuite.runner.load_model
    monkeypatch.setattr(evalsuite.runner, "load_model", lambda *a, **k: loads.append(a) or real(*a, **k))
    capsys.readouterr()
    assert main(argv + ["--output-dir", str(tmp_path / "second")]) == 0
    assert loads == []
    assert "not loaded: every image feature, classifier and caption was in the feature cache" in capsys.readouterr().err
    assert primary_values(tmp_path / "first") == primary_values(tmp_path / "second")
    manifest = (tmp_path / "second" / "demo-clip" / "run.json").read_text()
    assert '"model_loaded": false' in manifest and '"size": 48' in manifest  # preprocessing known, unloaded


def test_a_fully_cached_rerun_imports_no_model_library(tmp_path, monkeypatch):
    """The re-run is start-up bound: in a fresh process it imports torch for the cache, but not open_clip,
    torchvision or transformers (about 2.5 s of imports; before: imported by the adapter and the pixel transform)."""
    import subprocess
    import sys

    monkeypatch.setenv("EVALSUITE_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["run", "--model", "demo-clip", "--tasks", "demo", "--workers", "0", "--no-resume"]
    assert main(argv + ["--output-dir", str(tmp_path / "first")]) == 0
    code = ("import sys\nfrom evalsuite.cli import main\n"
            f"code = main({argv + ['--output-dir', str(tmp_path / 'second')]!r})\n"
            "heavy = [m for m in ('open_clip', 'torchvision', 'transformers', 'timm') if m in sys.modules]\n"
            "print('imported:', heavy)\nsys.exit(code)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "imported: []" in out.stdout, out.stdout
    assert primary_values(tmp_path / "first") == primary_values(tmp_path / "second")


def test_without_the_feature_cache_the_model_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("EVALSUITE_CACHE_DIR", str(tmp_path / "cache"))
    loads = []
    real = evalsuite.runner.load_model
    monkeypatch.setattr(evalsuite.runner, "load_model", lambda *a, **k: loads.append(a) or real(*a, **k))
    argv = ["run", "--model", "demo-clip", "--tasks", "demo_shapes", "--workers", "0", "--no-resume",
            "--no-cache-features"]
    assert main(argv + ["--output-dir", str(tmp_path / "a")]) == 0
    assert main(argv + ["--output-dir", str(tmp_path / "b")]) == 0
    assert len(loads) == 2


def test_a_model_that_cannot_load_stops_the_run_once(tmp_path, monkeypatch, capsys):
    """Exit 2 with the loader's message, one attempt (not one per task or per head start), no task failed."""
    from evalsuite.errors import ModelLoadError

    attempts = []

    def broken(*args, **kwargs):
        attempts.append(1)
        raise ModelLoadError("weights /x.pt do not fit architecture 'ViT-B-16' (injected)")

    monkeypatch.setattr(evalsuite.runner, "load_model", broken)
    monkeypatch.setenv("EVALSUITE_CACHE_DIR", str(tmp_path / "cache"))
    code = main(["run", "--model", "demo-clip", "--tasks", "demo_shapes,demo_heldout", "--workers", "0",
                 "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and attempts == [1] and "(injected)" in err.strip().splitlines()[-1]
    assert "failed: demo_shapes" not in err


FORBIDDEN = ("evalsuite.encoding.encoder", "evalsuite.encoding.feature_cache", "evalsuite.encoding.pixel_cache",
             "evalsuite.encoding.loaders", "evalsuite.encoding.images", "evalsuite.distributed",
             "evalsuite.data.loader")


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved from evalsuite.tasks)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ["evalsuite", "tasks"][: 2 - (node.level - 1)] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize("path", sorted(TASKS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_no_task_type_imports_caches_loaders_or_ranks(path):
    bad = sorted(m for m in imported_modules(path) if m.startswith(FORBIDDEN))
    assert bad == [], f"{path.name} imports {bad}"


def test_run_context_holds_only_what_a_task_needs_to_find_and_score_its_data():
    assert {f.name for f in dataclasses.fields(RunContext)} == {
        "data_root", "limit", "resize_mode", "verify_data", "bootstrap_iterations", "bootstrap_seed", "log"}


def test_adapters_carry_no_run_state(tiny_model_dir):
    from evalsuite.models.loading import load_model, resolve_card

    model = load_model(resolve_card(f"local-dir:{tiny_model_dir}"), device="cpu")
    assert not {"image_batch_limit", "oom_logged", "class_embeddings"} & set(vars(model))
