"""The webdataset source kinds on shards written by CLIP_benchmark's own converter: read in place (tar members by
offset), every layout CLIP_benchmark and DataComp use, classnames.txt checked, broken shards named."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from evalsuite.catalog import Catalog
from evalsuite.data.webdataset import TarMember, scan_plain_tar, scan_with_tarfile
from evalsuite.errors import ConfigError, DatasetUnavailableError
from evalsuite.tasks import build_task
from webdataset_hub import write_classification_shards, write_retrieval_shards

CLASSES = ["cat", "dog", "bird"]
LABELS = [2, 0, 1, 1, 0, 2, 2, 1, 0, 0]  # 10 samples in shards of 4: 0.tar, 1.tar, 2.tar
CAPTIONS = [["a cat.", "a cat on a mat"], ["a dog."], ["a bird, flying", "two words", "three"]]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return write_classification_shards(tmp_path_factory.mktemp("cb") / "wds_toy", CLASSES, LABELS)


@pytest.fixture(scope="module")
def caption_shards(tmp_path_factory) -> Path:
    return write_retrieval_shards(tmp_path_factory.mktemp("cbr") / "wds_toycaps", CAPTIONS, max_count=2,
                                  image_format="jpg")


def include(tmp_path: Path, name: str = "toy", kind: str = "webdataset", classes=CLASSES, **args) -> Path:
    """An --include-path folder with one task reading the given source arguments."""
    inc = tmp_path / "inc"
    for sub in ("tasks", "prompts/classnames", "prompts/templates"):
        (inc / sub).mkdir(parents=True, exist_ok=True)
    args = {"repo": "clip-benchmark/wds_toy", **args}
    arg_lines = "".join(f"      {k}: {v!r}\n" for k, v in args.items())
    if kind == "webdataset_captions":
        body = ("type: zeroshot_retrieval\nmetrics: [image_retrieval_recall@1, text_retrieval_recall@1]\n"
                "primary_metric: image_retrieval_recall@1\n")
    else:
        body = (f"type: classification\nclassnames: {name}\ntemplates: {name}\nnum_classes: {len(classes)}\n"
                "metrics: [acc1]\nprimary_metric: acc1\n")
        (inc / "prompts/classnames" / f"{name}.yaml").write_text(f"source: test\nclassnames: {list(classes)}\n")
        (inc / "prompts/templates" / f"{name}.yaml").write_text("source: test\ntemplates: ['a photo of a {c}.']\n")
    (inc / "tasks" / f"{name}.yaml").write_text(f"name: {name}\nversion: 1\n{body}source:\n  - kind: {kind}\n"
                                                f"    args:\n{arg_lines}")
    return inc


def listing(inc: Path, data_root: Path, name: str = "toy"):
    task = build_task(Catalog.load([inc]).tasks[name], [inc])
    return task.find_samples(task.source_context(data_root))


@pytest.fixture(autouse=True)
def no_hub(monkeypatch, tmp_path):
    """A cache of its own, offline: these tests never reach a hub."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def test_converter_shards_are_read_in_place(shards, tmp_path):
    data_root = tmp_path / "data"
    data_root.mkdir()
    samples = listing(include(tmp_path, path=str(shards)), data_root)
    assert samples.labels == LABELS
    assert samples.names[:5] == ["test/0.tar:s0000000", "test/0.tar:s0000001", "test/0.tar:s0000002",
                                 "test/0.tar:s0000003", "test/1.tar:s0000004"]
    assert all(isinstance(item, TarMember) for item in samples.items)
    assert samples.root == str(shards.resolve())
    assert [os.path.basename(f) for f in samples.data_files] == ["0.tar", "1.tar", "2.tar"]
    with tarfile.open(shards / "test" / "1.tar") as tar:  # the member's bytes, decoded as a file would be
        expected = Image.open(io.BytesIO(tar.extractfile("s0000005.webp").read())).convert("RGB")
    assert samples.load(samples.items[5]).tobytes() == expected.tobytes()
    assert not any(data_root.iterdir()) and sorted(p.name for p in shards.iterdir()) == [
        "classnames.txt", "test", "zeroshot_classification_templates.txt"]  # nothing unpacked anywhere


@pytest.mark.parametrize("layout", ["wds_repo", "wds_task", "datacomp", "root_is_dataset", "root_is_split"])
def test_every_local_layout_gives_the_same_listing(shards, tmp_path, layout):
    """CLIP_benchmark's wds_<name>/ (repo name or task name), DataComp's <name>/test/, and --data-root at the
    dataset folder or at its test/ folder itself (named like the copy). Copies keep mtimes, so the data identity
    is the same too."""
    reference = listing(include(tmp_path / "a", path=str(shards)), tmp_path)
    where = {"wds_repo": "data/wds_toy", "wds_task": "data/wds_mytask", "datacomp": "data/toy",
             "root_is_dataset": "elsewhere/wds_toy", "root_is_split": "elsewhere/toy"}[layout]
    shutil.copytree(shards, tmp_path / where)
    data_root = tmp_path / "data"
    if layout == "root_is_dataset":
        data_root = tmp_path / where
    elif layout == "root_is_split":
        data_root = tmp_path / where / "test"
    inc = include(tmp_path / "b", name="mytask" if layout == "wds_task" else "toy")
    samples = listing(inc, data_root, "mytask" if layout == "wds_task" else "toy")
    assert samples.names == reference.names and samples.labels == reference.labels
    assert samples.identity() == reference.identity()


def test_identity_covers_the_shards(shards, tmp_path):
    copy = shutil.copytree(shards, tmp_path / "copy")
    inc = include(tmp_path, path=str(copy))
    before = listing(inc, tmp_path).identity()
    st = os.stat(copy / "test" / "2.tar")
    os.utime(copy / "test" / "2.tar", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert listing(inc, tmp_path).identity() != before


def test_classnames_differing_at_one_index_fail_naming_it(shards, tmp_path):
    copy = shutil.copytree(shards, tmp_path / "copy")
    (copy / "classnames.txt").write_text("cat\nhound\nbird\n")
    with pytest.raises(DatasetUnavailableError) as err:
        listing(include(tmp_path, path=str(copy)), tmp_path)
    message = str(err.value)
    assert str(copy / "classnames.txt") in message and "index 1" in message
    assert "'hound'" in message and "'dog'" in message
    (copy / "classnames.txt").write_text("cat\ndog\n")  # one short: named as the end of the file
    with pytest.raises(DatasetUnavailableError, match=r"index 2: the file has nothing \(the list ends\)"):
        listing(include(tmp_path / "b", path=str(copy)), tmp_path)
    samples = listing(include(tmp_path / "c", path=str(copy), classnames_check="off"), tmp_path)
    assert samples.labels == LABELS  # off: for copies whose file is known to be wrong


def test_task_class_names_are_checked_not_its_label_keys(shards, tmp_path):
    """Tasks with label keys (ImageNet's wnids) compare classnames.txt with their names, not their keys."""
    inc = include(tmp_path, path=str(shards))
    (inc / "prompts/classnames/toy.yaml").write_text(f"source: test\nclassnames: {CLASSES}\nkeys: [n1, n2, n3]\n")
    assert listing(inc, tmp_path).labels == LABELS


def test_bad_arguments_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="classnames_check"):
        listing(include(tmp_path / "a", classnames_check="count"), tmp_path)
    with pytest.raises(ConfigError, match="owner/name"):
        listing(include(tmp_path / "b", repo="wds_toy"), tmp_path)


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("members, message", [
    ([("s0.png", png())], r"0.tar: sample 's0' has no .cls label"),
    ([("s0.cls", b"1")], r"0.tar: sample 's0' has no image"),
    ([("s0.png", png()), ("s0.cls", b"3")], r"0.tar: sample 's0' has label '3', not a class index 0..2"),
    ([("s0.png", png()), ("s0.cls", b"-1")], r"sample 's0' has label '-1'"),
    ([("s0.png", png()), ("s0.cls", b"0"), ("s1.png", png()), ("s0.cls", b"0")], r"sample 's0' is split"),
])
def test_broken_samples_are_errors_naming_shard_and_key(tmp_path, members, message):
    write_tar(tmp_path / "shards" / "test" / "0.tar", members)
    (tmp_path / "shards" / "classnames.txt").write_text("\n".join(CLASSES) + "\n")
    with pytest.raises(DatasetUnavailableError, match=message):
        listing(include(tmp_path, path="shards"), tmp_path)


def test_missing_and_truncated_shards_are_errors(shards, tmp_path):
    copy = shutil.copytree(shards, tmp_path / "copy")
    (copy / "test" / "1.tar").unlink()
    with pytest.raises(DatasetUnavailableError, match=r"1 of the 3 shards named by nshards.txt are missing \(1.tar\)"):
        listing(include(tmp_path / "a", path=str(copy)), tmp_path)
    shutil.copy(shards / "test" / "1.tar", copy / "test" / "1.tar")
    with tarfile.open(shards / "test" / "2.tar") as tar:
        image = tar.getmember("s0000008.webp")
        second = tar.getmember("s0000009.cls").offset  # where the second sample's first header starts
    data = (shards / "test" / "2.tar").read_bytes()
    for cut, message in ((image.offset_data + image.size - 10, r"truncated inside sample 's0000008' \(.webp\)"),
                         (second - 1, r"truncated after 2 members \(no end-of-archive marker\)"),
                         (second, r"truncated after 2 members \(no end-of-archive marker\)"),
                         (second + 200, r"truncated after 2 members")):
        (copy / "test" / "2.tar").write_bytes(data[:cut])
        with pytest.raises(DatasetUnavailableError, match=message):
            listing(include(tmp_path / str(cut), path=str(copy)), tmp_path)


def test_missing_data_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(DatasetUnavailableError) as err:
        listing(include(tmp_path), tmp_path / "data")
    message = str(err.value)
    assert "evalsuite prepare toy" in message and "clip-benchmark/wds_toy@main" in message
    assert str(tmp_path / "data" / "wds_toy") in message and "Hugging Face cache" in message


def test_retrieval_shards_keep_each_images_captions(caption_shards, tmp_path):
    samples = listing(include(tmp_path, kind="webdataset_captions", repo="clip-benchmark/wds_toycaps",
                              path=str(caption_shards)), tmp_path)
    assert samples.captions == CAPTIONS
    assert samples.names == ["test/0.tar:s0000000", "test/0.tar:s0000001", "test/1.tar:s0000002"]
    assert samples.load(samples.items[2]).size == (24, 20)
    with pytest.raises(DatasetUnavailableError, match="holds a 'retrieval' dataset"):  # dataset_type.txt
        listing(include(tmp_path / "b", repo="clip-benchmark/wds_toycaps", path=str(caption_shards)), tmp_path)


def test_pixels_from_tar_members_equal_those_from_files(caption_shards, tmp_path):
    """The pixel pipeline gets the member's image: the pil decoder's pixels equal those of the same bytes read
    from a file; the tensor decoder (PIL decode for members) stays within its documented 2 levels."""
    from evalsuite.data.pixels import PixelSpec, UInt8Pixels

    samples = listing(include(tmp_path, kind="webdataset_captions", repo="clip-benchmark/wds_toycaps",
                              path=str(caption_shards)), tmp_path)
    file = tmp_path / "member.jpg"
    file.write_bytes(samples.items[1].read())
    for decoder, tolerance in (("pil", 0), ("tensor", 2)):
        transform = UInt8Pixels(PixelSpec(16, "shortest", "bicubic", decoder))
        pixels, label, index, error = samples.dataset(transform)[1]
        assert error is None and label == 1 and index == 1
        from_file = transform.from_file(str(file))
        assert (pixels.int() - from_file.int()).abs().max() <= tolerance


def test_members_are_read_in_dataloader_workers(shards, tmp_path):
    import torch

    from evalsuite.data.pixels import PixelSpec, UInt8Pixels

    samples = listing(include(tmp_path, path=str(shards)), tmp_path)
    dataset = samples.dataset(UInt8Pixels(PixelSpec(8, "squash", "bilinear", "pil")))
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=list)
    got = [sample for batch in loader for sample in batch]
    assert [s[2] for s in got] == list(range(len(LABELS))) and all(s[3] is None for s in got)
    assert [s[1] for s in got] == LABELS


@pytest.mark.parametrize("tar_format, names, fast", [
    (tarfile.PAX_FORMAT, ["s0.png", "s0.cls", "p/" + "y" * 150 + ".jpg", "\u00fcn\u00ef.cls",
                          "z" * 90 + "/" + "w" * 60 + ".txt"], True),  # pax path records, ustar prefix
    (tarfile.USTAR_FORMAT, ["a.png", "a.cls", "x" * 90 + "/" + "b.png"], True),
    (tarfile.GNU_FORMAT, ["a.cls", "d/" + "x" * 120 + ".png"], False),  # GNU long name: tarfile reads it
])
def test_header_scan_agrees_with_tarfile(tmp_path, tar_format, names, fast):
    path = tmp_path / "0.tar"
    with tarfile.open(path, "w", format=tar_format) as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = 5, 1.5  # a fractional mtime: pax writes a record for it
            tar.addfile(info, io.BytesIO(b"hello"))
        folder = tarfile.TarInfo("folder")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
    with path.open("rb") as f:
        scanned = scan_plain_tar(f, path, path.stat().st_size)
    expected = scan_with_tarfile(path, path.stat().st_size)
    assert [n for n, _, _ in expected] == names
    assert (scanned == expected) if fast else scanned is None
