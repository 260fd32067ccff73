"""Data path defects found by the data audit (each test failed before its fix)."""

from __future__ import annotations

import logging

import pytest

from evalsuite.catalog import Catalog
from evalsuite.data.base import LocalArgs, locate

CATALOG = Catalog.load()


def test_a_data_root_taken_by_its_contents_alone_is_said_out_loud(tmp_path, caplog):
    """--data-root at ImageNet val with --tasks imagenet_sketch: the wnid class folders look right for Sketch too,
    so the run scored ImageNet val as ImageNet-Sketch with only a count mismatch to show for it."""
    val = tmp_path / "val"
    (val / "n01440764").mkdir(parents=True)
    spec = CATALOG.tasks["imagenet_sketch"]
    with caplog.at_level(logging.WARNING, "evalsuite"):
        assert locate(spec, LocalArgs(dirs=["imagenet_sketch", "sketch"]), val, lambda d: True) == val.resolve()
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "imagenet_sketch" in record.getMessage() and "by its contents alone" in record.getMessage()
    assert "this number is that dataset's" in record.getMessage()
    caplog.clear()
    named = tmp_path / "ImageNet-Sketch"
    named.mkdir()
    with caplog.at_level(logging.WARNING, "evalsuite"):
        locate(spec, LocalArgs(dirs=["imagenet_sketch", "sketch"]), named, lambda d: True)
    assert not caplog.records  # a folder named for the task is no surprise


EUROSAT = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
           "Residential", "River", "SeaLake"]


def _eurosat(data_root, classes):
    from PIL import Image

    for i, name in enumerate(classes):
        folder = data_root / "eurosat" / "eurosat" / "2750" / name  # torchvision's EuroSAT layout
        folder.mkdir(parents=True)
        Image.new("RGB", (64, 64), (20 * i, 0, 0)).save(folder / f"{name}_1.jpg")


def test_a_missing_class_folder_is_refused_not_a_shift_of_every_later_label(tmp_path):
    """torchvision's ImageFolder numbers the folders it finds: without Forest/, HerbaceousVegetation took label 1."""
    import pytest

    from evalsuite.errors import DatasetUnavailableError
    from evalsuite.tasks import build_task

    task = build_task(CATALOG.tasks["eurosat"])
    _eurosat(tmp_path / "whole", EUROSAT)
    samples = task.find_samples(task.source_context(tmp_path / "whole"))
    assert samples.labels == list(range(10))
    _eurosat(tmp_path / "gap", [c for c in EUROSAT if c != "Forest"])
    with pytest.raises(DatasetUnavailableError, match="has 9 class folders, the task has 10 classes"):
        task.find_samples(task.source_context(tmp_path / "gap"))


def test_prepare_fails_a_listing_whose_files_or_captions_are_not_all_there(tmp_path, capsys):
    """A Karpathy JSON of 1,000 test images with no image file beside it, and 4,996 of the 5,000 captions, was
    'ok flickr30k: 1000 samples found'."""
    import json

    from evalsuite.cli import main

    images = [{"filename": f"{i}.jpg", "split": "test",
               "sentences": [{"raw": f"c{i}-{k}"} for k in range(4 if i < 4 else 5)]} for i in range(1000)]
    (tmp_path / "flickr30k").mkdir()
    (tmp_path / "flickr30k" / "dataset_flickr30k.json").write_text(json.dumps({"images": images}))
    assert main(["prepare", "flickr30k", "--data-root", str(tmp_path)]) == 3
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("FAIL flickr30k")]
    assert "1000 of the files the listing names are missing" in line and "4996 captions" in line


def test_a_download_that_stopped_half_way_is_not_moved_into_place(tmp_path, monkeypatch):
    """CLIP_benchmark's shell steps (wget, tar) go on after a failure: the partial copy became the data, and every
    later prepare planned it as present."""
    import pytest

    from evalsuite.data.clip_benchmark import ClipBenchmarkSource
    from evalsuite.errors import DatasetUnavailableError
    from evalsuite.tasks import build_task

    task = build_task(CATALOG.tasks["eurosat"])
    (source,) = [s for s in task.sources if isinstance(s, ClipBenchmarkSource)]

    def half_download(target, ctx, stage):  # what an interrupted unpack leaves: 10 of 27,000 images
        _eurosat(target.parent, EUROSAT)
        (target.parent / "eurosat").rename(target)

    monkeypatch.setattr(source, "download_into", half_download)
    data_root = tmp_path / "data"
    data_root.mkdir()
    with pytest.raises(DatasetUnavailableError, match="holds 10 of the 27000 samples.*nothing was moved"):
        source.fetch(task.source_context(data_root))
    assert list(data_root.iterdir()) == []  # no partial copy in place, no staging folder left


def _karpathy(entry):
    def build(root):
        import json

        (root / "flickr30k").mkdir()
        (root / "flickr30k" / "dataset_flickr30k.json").write_text(json.dumps({"images": [entry]}))
    return build


def _bytes(relative, data):
    def build(root):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    return build


MALFORMED = {
    "karpathy entry without filename": ("flickr30k", _karpathy({"split": "test", "sentences": [{"raw": "x"}]}),
                                         "images[0] is not a Karpathy entry"),
    "karpathy sentence without raw": ("flickr30k", _karpathy({"split": "test", "filename": "a.jpg",
                                                              "sentences": [{"tokens": ["x"]}]}),
                                      "images[0] is not a Karpathy entry"),
    "flickr split not UTF-8": ("flickr30k", _bytes("flickr30k/flickr30k_test_karpathy.txt",
                                                    b"image,caption\n1.jpg,caf\xe9\n"), "not UTF-8 text"),
    "UCF test list not UTF-8": ("ucf101_split1", _bytes("ucf101/testlist01.txt",
                                                        b"Basketball/v_Basketball_g01_c01.avi\n\xe9\n"),
                                "not UTF-8 text"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_data_file_is_one_line_naming_it_and_exit_2(case, tmp_path, capsys):
    from evalsuite.cli import main

    task, build, message = MALFORMED[case]
    build(tmp_path)
    assert main(["prepare", task, "--data-root", str(tmp_path), "--dry-run"]) == 0  # the plan says what is wrong
    out = capsys.readouterr().out
    assert message in out and "Traceback" not in out
    code = main(["run", "--model", "demo-clip", "--tasks", task, "--data-root", str(tmp_path), "--output-dir",
                 str(tmp_path / "out"), "--workers", "0"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_shell_output_of_a_download_stays_off_standard_output(capfd):
    """CLIP_benchmark's os.system('tar xvf ...') listed every file among prepare's plan and outcome lines."""
    import os

    from evalsuite.data.clip_benchmark import stdout_to_stderr

    with stdout_to_stderr():
        os.system("echo from-a-shell-step")
        print("from-python")
    print("ours")
    out, err = capfd.readouterr()
    assert out == "ours\n" and "from-a-shell-step" in err and "from-python" in err


def test_a_file_list_naming_an_image_twice_is_refused(tmp_path):
    """cat/0000.jpg listed under cat, dog and ship was scored as three samples without a word."""
    from evalsuite.data.file_list import read_file_list
    from evalsuite.errors import DatasetUnavailableError

    listing = tmp_path / "list.csv"
    listing.write_text("path,label\ncat/0000.jpg,cat\ndog/0000.jpg,dog\n./cat/0000.jpg,dog\n")
    with pytest.raises(DatasetUnavailableError, match=r"list.csv:4: the path of line 2 again"):
        read_file_list(listing, ["cat", "dog"], "t")
