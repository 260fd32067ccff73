"""Retrieval end to end: COCO caption files (../shared/data/coco-mini) as a user-defined task, Karpathy split
files, the Hugging Face conversion, squash resize whatever --transform says, and the demo's pinned numbers."""

import csv
import io
import json

import pytest
from PIL import Image

from evalsuite.catalog import Catalog
from evalsuite.cli import main
from evalsuite.data.captions import HFCaptionsSource, convert_rows
from evalsuite.prepare import prepare_task
from evalsuite.tasks import build_task
from helpers import shared

RECALLS = [f"{d}_retrieval_recall@{k}" for d in ("image", "text") for k in (1, 5, 10)]


def rows_of(path):
    return {r["metric"]: r for r in csv.DictReader(path.open())}


def write_coco_captions_task(inc, name="coco_mini_retrieval"):
    """A user-defined retrieval task over plain COCO caption files (every image they list): the coco_captions
    source is for such tasks, never for the canonical mscoco (which needs the Karpathy test split)."""
    (inc / "tasks").mkdir(parents=True, exist_ok=True)
    (inc / "tasks" / f"{name}.yaml").write_text(
        f"name: {name}\ntype: zeroshot_retrieval\nversion: 1\nsource: {{kind: coco_captions, args: {{}}}}\n"
        f"metrics: [{', '.join(RECALLS + ['mean_recall'])}]\nprimary_metric: mean_recall\n")
    return inc


def test_coco_captions_task_on_coco_mini(tiny_model_dir, tmp_path):
    data = shared("coco-mini")
    out = tmp_path / "out"
    inc = write_coco_captions_task(tmp_path / "inc")
    assert main(["run", "--model", f"local-dir:{tiny_model_dir}", "--tasks", "coco_mini_retrieval",
                 "--include-path", str(inc), "--data-root", str(data), "--output-dir", str(out), "--workers", "1",
                 "--transform", "shortest"]) == 0
    rows = rows_of(next(out.iterdir()) / "coco_mini_retrieval.csv")
    assert list(rows) == RECALLS + ["mean_recall"]
    assert {r["num_samples"] for r in rows.values()} == {"159"} and {r["num_texts"] for r in rows.values()} == {"795"}
    assert {r["transform"] for r in rows.values()} == {"squash"}  # retrieval always squashes
    assert rows["mean_recall"]["is_primary"] == "true"
    assert float(rows["mean_recall"]["value"]) == pytest.approx(sum(float(rows[m]["value"]) for m in RECALLS) / 6)


def test_mscoco_refuses_plain_coco_caption_files(tmp_path, capsys):
    """coco-mini holds captions_{train,val}2017.json and no Karpathy split: not a gallery mscoco may score."""
    data = shared("coco-mini")
    out = tmp_path / "out"
    assert main(["run", "--model", "demo-clip", "--tasks", "mscoco", "--data-root", str(data),
                 "--output-dir", str(out), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "dataset_coco.json" in err and "coco_test_karpathy.json" in err and "captions_val2017.json" in err
    assert not list(out.rglob("mscoco.csv"))


def write_images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.new("RGB", (20, 16), (i * 40 % 256, 80, 120)).save(folder / name)


def test_karpathy_split_file_with_variable_caption_counts(tmp_path):
    root = tmp_path / "flickr30k"
    write_images(root / "flickr30k-images", ["a.jpg", "b.jpg", "c.jpg"])
    images = [{"filename": "a.jpg", "split": "test", "sentences": [{"raw": "one"}, {"raw": "two"}]},
              {"filename": "b.jpg", "split": "train", "sentences": [{"raw": "skip"}]},
              {"filename": "c.jpg", "split": "test", "sentences": [{"raw": f"c{i}"} for i in range(7)]}]
    (root / "dataset_flickr30k.json").write_text(json.dumps({"images": images}))
    task = build_task(Catalog.load().tasks["flickr30k"])
    samples = task.find_samples(task.source_context(tmp_path))
    assert task.source_used == "karpathy_json"
    assert [len(c) for c in samples.captions] == [2, 7] and samples.items[1].endswith("flickr30k-images/c.jpg")


def test_hf_rows_are_converted_to_a_karpathy_layout(tmp_path, monkeypatch):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, format="JPEG")
    rows = [{"image": {"bytes": buf.getvalue(), "path": "x.jpg"}, "caption": ["a", "b"], "filename": "x.jpg"},
            {"image": Image.new("RGB", (8, 8)), "caption": "single caption", "filename": "y.jpg"}]
    monkeypatch.setattr(HFCaptionsSource, "load_rows", lambda self, stage: rows)
    outcome = prepare_task(Catalog.load().tasks["flickr30k"], tmp_path / "data")
    assert outcome.num_samples == 2 and "expects 1000" in outcome.message
    root = tmp_path / "data" / "flickr30k"
    assert (root / "images" / "x.jpg").read_bytes() == buf.getvalue()  # original bytes kept
    task = build_task(Catalog.load().tasks["flickr30k"])
    samples = task.find_samples(task.source_context(tmp_path / "data"))
    assert samples.captions == [["a", "b"], ["single caption"]]


def test_convert_rows_rejects_rows_without_captions(tmp_path):
    from evalsuite.errors import DatasetUnavailableError

    with pytest.raises(DatasetUnavailableError, match="caption"):
        convert_rows([{"image": Image.new("RGB", (4, 4))}], tmp_path / "out")


def test_demo_retrieval_pinned(tmp_path):
    out = tmp_path / "out"
    assert main(["run", "--model", "demo-clip", "--tasks", "demo_retrieval", "--output-dir", str(out),
                 "--workers", "0"]) == 0
    rows = rows_of(out / "demo-clip" / "demo_retrieval.csv")
    assert float(rows["image_retrieval_recall@1"]["value"]) == pytest.approx(87 / 90)
    assert float(rows["text_retrieval_recall@1"]["value"]) == pytest.approx(28 / 30)
    assert float(rows["mean_recall"]["value"]) == pytest.approx((87 / 90 + 1 + 1 + 28 / 30 + 1 + 1) / 6)
    assert rows["mean_recall"]["num_samples"] == "30" and rows["mean_recall"]["num_texts"] == "90"


def test_eva_retrieval_suite_is_mr():
    catalog = Catalog.load()
    assert catalog.suite_members("eva_retrieval") == ["flickr30k", "mscoco"]
    for name in ("flickr30k", "mscoco"):
        spec = catalog.tasks[name]
        assert spec.primary_metric == "mean_recall" and sorted(spec.metrics) == sorted(RECALLS + ["mean_recall"])
    assert len(catalog.suite_members("all")) == 33
