"""The offline demo's numbers, pinned. A change in preprocessing, templates, prompts, metrics or the shipped
weights moves them (bilinear instead of bicubic already moves one sample): update them only on purpose,
together with the README."""

import csv
import dataclasses
from pathlib import Path

import pytest

from evalsuite.catalog import Catalog
from evalsuite.cli import main
from evalsuite.models.loading import load_model, resolve_card
from evalsuite.tasks import build_task
from evalsuite.tasks.base import RunContext
from helpers import encoder_for

# (metric -> exact count of correct samples, out of N); see README "Quickstart"
GOLDEN = {
    "demo_shapes": (600, {"acc1": 562, "acc5": 600}),
    "demo_heldout": (240, {"acc1": 183, "acc5": 240}),
    # vissl's frame through vissl's JPEG file (PIL quality 75), as the papers' models saw it; the lossless frame
    # gave 111 / 120 (the demo model was trained on lossless frames)
    "demo_clips": (120, {"acc1": 106, "acc5": 120}),
}
DEMO_RETRIEVAL_MEAN_RECALL = (87 / 90 + 1 + 1 + 28 / 30 + 1 + 1) / 6  # pinned in test_retrieval.py
GOLDEN_MEAN_PER_CLASS_RECALL = {"demo_shapes": 562 / 600, "demo_heldout": 183 / 240}  # balanced classes


def test_make_demo_command_prints_pinned_numbers(tmp_path, capsys):
    assert main(["run", "--model", "demo-clip", "--tasks", "demo", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "demo_shapes" in out and "93.67" in out and "76.25" in out and "88.33" in out and "suite demo" in out
    for task, (n, counts) in GOLDEN.items():
        with (tmp_path / "demo-clip" / f"{task}.csv").open() as f:
            rows = {r["metric"]: r for r in csv.DictReader(f)}
        assert {r["num_samples"] for r in rows.values()} == {str(n)}
        for metric, correct in counts.items():
            assert float(rows[metric]["value"]) == pytest.approx(correct / n, abs=1e-12), (task, metric)
        if task in GOLDEN_MEAN_PER_CLASS_RECALL:
            assert float(rows["mean_per_class_recall"]["value"]) == pytest.approx(
                GOLDEN_MEAN_PER_CLASS_RECALL[task], abs=1e-9)
    with (tmp_path / "demo-clip" / "suites.csv").open() as f:
        suite = next(csv.DictReader(f))
    assert suite["suite"] == "demo" and float(suite["value"]) == pytest.approx(
        (562 / 600 + 183 / 240 + 106 / 120 + DEMO_RETRIEVAL_MEAN_RECALL) / 4)


@pytest.mark.parametrize("rule", ["center", "first"])
def test_demo_clips_need_the_vissl_frame(rule):
    """Reading any frame but the protocol's one sees only distractors: accuracy collapses from 88.3%."""
    spec = Catalog.load().tasks["demo_clips"]
    source = dataclasses.replace(spec.source, args={**spec.source.args, "frame_rule": rule})
    task = build_task(dataclasses.replace(spec, source=source))
    acc1 = task.evaluate(encoder_for(load_model(resolve_card("demo-clip"), device="cpu")), RunContext(Path(".")))
    assert acc1.metrics["acc1"] < 0.1


@pytest.mark.parametrize("change", [
    {"resize_mode": "squash"},
    {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
])
def test_a_preprocessing_regression_breaks_the_pins(change):
    card = resolve_card("demo-clip")
    broken = dataclasses.replace(card, preprocess=dataclasses.replace(card.preprocess, **change))
    model = load_model(broken, device="cpu")
    task = build_task(Catalog.load().tasks["demo_shapes"])
    acc1 = task.evaluate(encoder_for(model), RunContext(Path("."))).metrics["acc1"]
    assert round(acc1 * 600) != GOLDEN["demo_shapes"][1]["acc1"]


def test_transform_squash_and_best_of_both(tmp_path):
    """--transform squash uses direct resizing; best-of-both keeps the better per task and records the winner."""
    import json

    out = tmp_path / "out"
    assert main(["run", "--model", "demo-clip", "--tasks", "demo_shapes", "--output-dir", str(out),
                 "--transform", "squash", "--workers", "0"]) == 0
    with (out / "demo-clip" / "demo_shapes.csv").open() as f:
        squash = {r["metric"]: r for r in csv.DictReader(f)}
    assert squash["acc1"]["transform"] == "squash" and float(squash["acc1"]["value"]) == pytest.approx(539 / 600)

    assert main(["run", "--model", "demo-clip", "--tasks", "demo_shapes", "--output-dir", str(out),
                 "--transform", "best-of-both", "--workers", "0"]) == 0  # a new fingerprint: not skipped
    with (out / "demo-clip" / "demo_shapes.csv").open() as f:
        best = {r["metric"]: r for r in csv.DictReader(f)}
    assert best["acc1"]["transform"] == "shortest" and float(best["acc1"]["value"]) == pytest.approx(562 / 600)
    record = json.loads((out / "demo-clip" / "run.json").read_text())["best_of_both"]["demo_shapes"]
    assert record == {"chosen": "shortest", "shortest": pytest.approx(562 / 600), "squash": pytest.approx(539 / 600)}
    # resumed (skipped as done): the losing value, written nowhere else, stays in run.json
    assert main(["run", "--model", "demo-clip", "--tasks", "demo_shapes", "--output-dir", str(out),
                 "--transform", "best-of-both", "--workers", "0"]) == 0
    assert json.loads((out / "demo-clip" / "run.json").read_text())["best_of_both"]["demo_shapes"] == record
