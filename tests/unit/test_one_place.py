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
