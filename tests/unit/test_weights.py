"""Weights resolution: local override, EVALSUITE_WEIGHTS_DIR, hub cache; offline gives one clear error."""

import pytest

from evalsuite.cli import main
from evalsuite.errors import ModelLoadError
from evalsuite.models.card import find_card
from evalsuite.models.eva_native import EvaNativeAdapter
from evalsuite.models.weights import resolve


def test_weights_dir_copy_wins_over_the_hub(tmp_path, monkeypatch):
    (tmp_path / "EVA_CLIP_8B_psz14_s9B.pt").write_bytes(b"x")
    monkeypatch.setenv("EVALSUITE_WEIGHTS_DIR", str(tmp_path))
    source = EvaNativeAdapter.weights_source(find_card("EVA-CLIP-8B"))
    assert source.kind == "file" and source.ref == str(tmp_path / "EVA_CLIP_8B_psz14_s9B.pt")


def test_hub_file_offline_names_file_place_and_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("EVALSUITE_WEIGHTS_DIR", raising=False)
    source = EvaNativeAdapter.weights_source(find_card("EVA-CLIP-8B"))
    assert source.kind == "hf_file"
    with pytest.raises(ModelLoadError) as exc:
        resolve(source, download=False)
    msg = str(exc.value)
    assert "EVA_CLIP_8B_psz14_s9B.pt" in msg and "BAAI/EVA-CLIP-8B" in msg
    assert "--weights" in msg and "EVALSUITE_WEIGHTS_DIR" in msg


def test_cli_unavailable_weights_exit_2_and_never_random(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("EVALSUITE_WEIGHTS_DIR", raising=False)
    code = main(["run", "--model", "EVA-CLIP-8B", "--tasks", "demo_shapes", "--output-dir", str(tmp_path / "o"),
                 "--workers", "0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "EVA_CLIP_8B_psz14_s9B.pt" in err
    assert not list((tmp_path / "o").rglob("demo_shapes.csv"))  # nothing evaluated with missing weights


def test_missing_local_weights_file_is_clear(tmp_path):
    from evalsuite.models.card import WeightsSource

    with pytest.raises(ModelLoadError, match="not found"):
        resolve(WeightsSource("file", str(tmp_path / "nope.pt")))
