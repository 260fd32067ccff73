"""The canonical retrieval tasks read only sources that define the Karpathy test split (issue 14, defect 3):
a COCO-2014 caption download is refused, CLIP_benchmark's own split files are read as CLIP_benchmark reads them,
and a split with the right images but too few captions is flagged (count_status=fewer, exit 3)."""

import csv
import json

import pytest
from PIL import Image

from evalsuite.catalog import Catalog
from evalsuite.cli import main
from evalsuite.tasks import build_task


def write_image(path, i):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10), (i * 37 % 256, i * 11 % 256, 90)).save(path)


def coco_file(path, images, captions_per_image):
    """A COCO caption file: ``images`` [(id, file_name)], annotations interleaved (not grouped by image)."""
    anns = [{"id": 1000 + len(images) * k + n, "image_id": image_id, "caption": f" {name} caption {k} "}
            for k in range(captions_per_image) for n, (image_id, name) in enumerate(images)]
    path.write_text(json.dumps({"info": {}, "images": [{"id": i, "file_name": n} for i, n in images],
                                "annotations": anns}))


def write_coco2014(root):
    """A standard COCO-2014 download: captions_{train,val}2014.json and the train2014/ and val2014/ images."""
    for split, ids in (("train2014", [9, 2]), ("val2014", [7, 3, 5])):
        images = [(i, f"COCO_{split}_{i:012d}.jpg") for i in ids]
        for i, name in images:
            write_image(root / split / name, i)
        coco_file(root / f"captions_{split}.json", images, 5)


def csv_rows(path):
    return {r["metric"]: r for r in csv.DictReader(path.open())}


def run(args, tmp_path):
    out = tmp_path / "out"
    code = main(["run", "--model", "demo-clip", "--output-dir", str(out), "--workers", "0", *args])
    return code, out


def test_coco2014_download_without_karpathy_file_is_refused_for_mscoco(tmp_path, capsys):
    write_coco2014(tmp_path / "data" / "mscoco")
    code, out = run(["--tasks", "mscoco", "--data-root", str(tmp_path / "data")], tmp_path)
    assert code == 2
    err = capsys.readouterr().err
    assert "dataset_coco.json" in err and "coco_test_karpathy.json" in err  # the files it needs
    assert "captions_train2014.json" in err and "coco_captions" in err  # why the files it found are not used
    assert not list(out.rglob("mscoco.csv"))  # nothing scored on the 5-image train+val gallery


def test_coco2014_download_as_data_root_itself_is_refused(tmp_path, capsys):
    write_coco2014(tmp_path / "coco2014")
    code, _ = run(["--tasks", "mscoco", "--data-root", str(tmp_path / "coco2014")], tmp_path)
    assert code == 2 and "coco_test_karpathy.json" in capsys.readouterr().err


def write_clip_benchmark_coco(folder):
    """CLIP_benchmark's mscoco_captions layout: coco_test_karpathy.json + val2014/ (ids deliberately unsorted)."""
    images = [(42, "COCO_val2014_000000000042.jpg"), (7, "COCO_val2014_000000000007.jpg"),
              (19, "COCO_val2014_000000000019.jpg")]
    for i, name in images:
        write_image(folder / "val2014" / name, i)
    coco_file(folder / "coco_test_karpathy.json", images, 5)
    return images


def test_clip_benchmark_coco_split_file_is_read_as_clip_benchmark_reads_it(tmp_path):
    folder = tmp_path / "mscoco"
    images = write_clip_benchmark_coco(folder)
    write_coco2014(folder)  # the full caption files beside it are ignored: the split file defines the gallery
    task = build_task(Catalog.load().tasks["mscoco"])
    samples = task.find_samples(task.source_context(tmp_path))
    assert task.source_used == "clip_benchmark_captions"
    assert samples.names == [f"val2014/{n}" for _, n in sorted(images)]  # sorted by image id
    assert [len(c) for c in samples.captions] == [5, 5, 5]

    pytest.importorskip("pycocotools")
    from torchvision.datasets import CocoCaptions  # what CLIP_benchmark's builder uses for mscoco_captions

    reference = CocoCaptions(root=str(folder / "val2014"), annFile=str(folder / "coco_test_karpathy.json"))
    assert [reference.coco.imgs[i]["file_name"] for i in reference.ids] == [n.split("/")[1] for n in samples.names]
    assert [[c.strip() for c in reference._load_target(i)] for i in reference.ids] == samples.captions
    assert samples.items == [str(folder.resolve() / n) for n in samples.names]


def test_clip_benchmark_coco_layout_runs_mscoco(tmp_path):
    write_clip_benchmark_coco(tmp_path / "mscoco")
    code, out = run(["--tasks", "mscoco", "--data-root", str(tmp_path)], tmp_path)
    assert code == 3  # 3 of 5,000 images: flagged, not a full result
    rows = csv_rows(out / "demo-clip" / "mscoco.csv")
    assert {r["num_samples"] for r in rows.values()} == {"3"} and {r["num_texts"] for r in rows.values()} == {"15"}
    assert rows["mean_recall"]["count_status"] == "fewer" and rows["mean_recall"]["num_failed"] == "0"


FLICKR_LINES = [("1000092795.jpg",
                 "Two young guys with shaggy hair look at their hands while hanging out in the yard."),
                ("1000092795.jpg", "Two friends enjoy time spent together, outside, in the yard."),
                ("10002456.jpg", "Several men in hard hats are operating a giant pulley system."),
                ("1000092795.jpg", "Two men in green shirts are standing in a yard."),
                ("10002456.jpg", "Workers look down from up above on a piece of equipment.")]


def write_clip_benchmark_flickr(folder, images_under="."):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "flickr30k_test_karpathy.txt").write_text(
        "image,caption\n" + "".join(f"{image},{caption}\n" for image, caption in FLICKR_LINES) + "\n")
    for i, image in enumerate(dict.fromkeys(image for image, _ in FLICKR_LINES)):
        write_image(folder / images_under / image, i)


@pytest.mark.parametrize("images_under", [".", "flickr30k-images"])
def test_clip_benchmark_flickr_split_file_is_read_as_clip_benchmark_reads_it(tmp_path, images_under):
    folder = tmp_path / "flickr30k"
    write_clip_benchmark_flickr(folder, images_under)
    task = build_task(Catalog.load().tasks["flickr30k"])
    samples = task.find_samples(task.source_context(tmp_path))
    assert task.source_used == "clip_benchmark_captions"
    expected_dir = folder.resolve() if images_under == "." else folder.resolve() / images_under
    assert samples.items == [str(expected_dir / "1000092795.jpg"), str(expected_dir / "10002456.jpg")]
    assert samples.captions[0][1] == "Two friends enjoy time spent together, outside, in the yard."  # commas kept

    from clip_benchmark.datasets.flickr import Flickr  # CLIP_benchmark's own reader of this file

    reference = Flickr(root=str(folder), ann_file=str(folder / "flickr30k_test_karpathy.txt"))
    assert [image for image, _ in reference.data] == [name.split("/")[-1] for name in samples.names]
    assert [captions for _, captions in reference.data] == samples.captions


def test_clip_benchmark_flickr_layout_runs_flickr30k(tmp_path):
    write_clip_benchmark_flickr(tmp_path / "flickr30k")
    code, out = run(["--tasks", "flickr30k", "--data-root", str(tmp_path)], tmp_path)
    assert code == 3
    rows = csv_rows(out / "demo-clip" / "flickr30k.csv")
    assert rows["mean_recall"]["num_samples"] == "2" and rows["mean_recall"]["num_texts"] == "5"
    assert rows["mean_recall"]["expected_num_texts"] == "5000" and rows["mean_recall"]["count_status"] == "fewer"


def test_karpathy_split_with_all_images_but_fewer_captions_is_flagged(tmp_path, capsys):
    """flickr30k's 1,000 test images, one caption short (4,999 of 5,000): the image count alone would pass."""
    root = tmp_path / "flickr30k"
    (root / "flickr30k-images").mkdir(parents=True)
    images = []
    for i in range(1000):
        name = f"{i:06d}.png"
        Image.new("RGB", (8, 8), (i % 256, i // 256 * 60, 7)).save(root / "flickr30k-images" / name)
        images.append({"filename": name, "split": "test",
                       "sentences": [{"raw": f"picture {i} number {k}"} for k in range(4 if i == 500 else 5)]})
    images.append({"filename": "train.png", "split": "train", "sentences": [{"raw": "not in the test split"}]})
    (root / "dataset_flickr30k.json").write_text(json.dumps({"images": images}))
    code, out = run(["--tasks", "flickr30k", "--data-root", str(tmp_path)], tmp_path)
    assert code == 3
    row = csv_rows(out / "demo-clip" / "flickr30k.csv")["mean_recall"]
    assert (row["num_samples"], row["expected_num_samples"]) == ("1000", "1000")
    assert (row["num_texts"], row["expected_num_texts"]) == ("4999", "5000")
    assert row["count_status"] == "fewer"
    assert "4999 captions" in capsys.readouterr().err
