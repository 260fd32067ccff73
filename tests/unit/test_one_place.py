"""Things kept in one place (issue 17): the precision-name -> dtype map, the atomic writer, the demo's upward
import; and decord, which nothing uses, is not declared."""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "evalsuite"


def sources():
    return sorted(PACKAGE.rglob("*.py"))


def test_one_precision_dtype_map():
    import torch

    from evalsuite.models.base import DTYPES, MODE_OF_DTYPE, autocast_dtype, weight_dtype
    from evalsuite.models.card import PRECISIONS

    assert {p: (weight_dtype(p), autocast_dtype(p)) for p in PRECISIONS} == {
        "fp32": (torch.float32, None), "amp_fp16": (torch.float32, torch.float16),
        "amp_bf16": (torch.float32, torch.bfloat16), "fp16": (torch.float16, None), "bf16": (torch.bfloat16, None)}
    assert {MODE_OF_DTYPE[d] for d in DTYPES.values()} == set(DTYPES)
    with pytest.raises(ValueError, match="expected one of"):
        weight_dtype("half")
    # no other precision-name -> dtype dict: a dict literal mapping "fp16"/"bf16" or keyed by torch.float16
    pattern = re.compile(r"""["'](fp16|bf16|fp32)["']\s*:\s*torch\.|torch\.(float16|bfloat16)\s*:\s*["']""")
    found = [str(p.relative_to(PACKAGE)) for p in sources() if pattern.search(p.read_text(encoding="utf-8"))]
    assert found == ["models/base.py"]


def evalsuite_imports(path: Path) -> set[str]:
    """The evalsuite modules a source file imports (relative imports resolved)."""
    package = ".".join(("evalsuite",) + path.relative_to(PACKAGE).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module) if p)
            found |= {module} if node.module else {f"{module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m == "evalsuite" or m.startswith("evalsuite.")}


def test_demo_has_one_upward_import():
    """The demo (shapes world, trainer) imports only itself and models.card; only its two source kinds (the
    generated shapes and clips) import it, and only its shapes world."""
    demo = {p: evalsuite_imports(p) for p in sources() if p.relative_to(PACKAGE).parts[0] == "demo"}
    outside = {m for imports in demo.values() for m in imports if not m.startswith("evalsuite.demo")}
    assert outside == {"evalsuite.models.card"}
    users = {str(p.relative_to(PACKAGE)): sorted(m for m in evalsuite_imports(p) if m.startswith("evalsuite.demo"))
             for p in sources() if p not in demo}
    assert {k: v for k, v in users.items() if v} == {"data/synthetic.py": ["evalsuite.demo.shapes"],
                                                     "data/synthetic_clips.py": ["evalsuite.demo.shapes"]}


def test_one_atomic_writer():
    """Temp files are made only by evalsuite/atomic.py (mode kept, names housekeeping sweeps)."""
    users = [str(p.relative_to(PACKAGE)) for p in sources()
             if re.search(r"^\s*(import tempfile|from tempfile)", p.read_text(encoding="utf-8"), re.M)]
    assert users == ["atomic.py"]


def test_demo_clips_are_written_atomically(tmp_path, monkeypatch):
    from PIL import Image

    from evalsuite import atomic
    from evalsuite.data.synthetic_clips import write_clip
    from evalsuite.data.video import count_frames

    made = []
    real = atomic.new_temp_file
    monkeypatch.setattr(atomic, "new_temp_file", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    write_clip(tmp_path / "c.mp4", [Image.new("RGB", (32, 24), (10 * i, 0, 0)) for i in range(5)])
    assert len(made) == 1 and made[0].endswith(".tmp") and sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4"]
    assert count_frames(tmp_path / "c.mp4") == 5


def test_decord_is_not_declared():
    """Video is read with PyAV (vissl's reader); decord is never imported, so it is no dependency either."""
    text = (PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8")
    declared = [line for line in text.splitlines() if re.match(r'\s*[^#]*["\']decord', line)]
    assert declared == []
    assert not [p for p in sources() if re.search(r"^\s*(import|from) decord", p.read_text(encoding="utf-8"), re.M)]
