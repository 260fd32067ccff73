"""Nothing made for one input is served for another that only looks alike.

A loader started ahead for one task, a pixel-cache entry or a cached video frame is keyed by everything that
makes its pixels: the pixel spec, the samples and how they are read (a video's frame rule), and the versions of
the libraries that decode and resize them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from evalsuite.cli import main

TASK = ("name: {name}\ntype: video_middle_frame\nversion: 1\nsource:\n  kind: synthetic_clips\n"
        "  args: {{per_class: 1, frames: 9, seed: 0, frame_rule: {rule}}}\nclassnames: demo_shapes\n"
        "templates: {templates}\nnum_classes: 30\nmetrics: [acc1, acc5]\nprimary_metric: acc1\n")


@pytest.fixture
def broken_prompt_model(tiny_model_dir, tmp_path) -> Path:
    """The tiny model with one token's embedding set to inf: prompts holding that word give NaN features."""
    import open_clip
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    weights = folder / "open_clip_model.safetensors"
    state = load_file(str(weights))
    state["token_embedding.weight"][int(open_clip.tokenize(["qqqq"])[0, 1])] = float("inf")
    save_file(state, str(weights))
    return folder


def predictions(out: Path, task: str) -> str:
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    return (folder / f"{task}.predictions.csv").read_text().split("\n", 1)[1]  # rows, not the header


def test_a_loader_started_ahead_is_never_handed_to_a_task_reading_other_frames(broken_prompt_model, tmp_path,
                                                                                monkeypatch):
    """Two tasks over the same clips, center frame and vissl's frame: the first fails while its loader runs
    ahead; the second must decode its own frames (it was handed the first's loader, keyed by files and size)."""
    inc = tmp_path / "inc"
    for sub in ("tasks", "prompts/templates"):
        (inc / sub).mkdir(parents=True)
    for name, rule, templates in (("clips_center", "center", "bad"), ("clips_vissl", "vissl", "good")):
        (inc / "tasks" / f"{name}.yaml").write_text(TASK.format(name=name, rule=rule, templates=templates))
    (inc / "prompts/templates/bad.yaml").write_text('source: t\ntemplates: ["a qqqq photo of a {c}."]\n')
    (inc / "prompts/templates/good.yaml").write_text('source: t\ntemplates: ["a photo of a {c}."]\n')

    def run(tasks: str, out: str, cache: str) -> int:
        monkeypatch.setenv("EVALSUITE_CACHE_DIR", str(tmp_path / cache))
        return main(["run", "--model", f"local-dir:{broken_prompt_model}", "--tasks", tasks, "--data-root",
                     str(tmp_path / "data"), "--include-path", str(inc), "--output-dir", str(tmp_path / out),
                     "--workers", "1", "--batch-size", "4", "--bootstrap", "0"])

    assert run("clips_center,clips_vissl", "both", "cache-a") != 0  # clips_center fails: NaN prompt features
    assert run("clips_vissl", "alone", "cache-b") == 0
    assert predictions(tmp_path / "both", "clips_vissl") == predictions(tmp_path / "alone", "clips_vissl")


def test_pixel_and_feature_keys_change_with_the_pixel_libraries(monkeypatch):
    """A Pillow or torchvision upgrade that moves a pixel decodes again instead of serving the old pixels."""
    from evalsuite.data import pixels
    from evalsuite.encoding.pixel_cache import pixels_key

    spec, samples = {"size": 224, "resize_mode": "shortest"}, {"data": "abc", "limit": None}
    before = pixels_key(spec, samples)
    monkeypatch.setattr(pixels, "pixel_libraries", lambda: {"pillow": "0.0", "torchvision": "0.0"})
    assert pixels_key(spec, samples) != before


def test_cached_video_frames_are_keyed_by_the_pillow_version(tmp_path, monkeypatch):
    """The cached frame is written by Pillow (vissl's JPEG; else PNG): another Pillow makes another entry."""
    import PIL

    from evalsuite.data.video import frame_cache_key

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not decoded here")
    before = frame_cache_key(clip, "vissl")
    monkeypatch.setattr(PIL, "__version__", "0.0.0")
    assert frame_cache_key(clip, "vissl") != before
