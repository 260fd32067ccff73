"""Caches never serve corrupt data, and never stop a run.

Every entry (image features, text classifiers, pixels, video frames) carries a checksum and the identity of what
it was made for: a damaged or edited entry is one warning naming it, then recomputed and overwritten, and the
metrics equal a clean run's. Two writers of one entry leave one of them whole. A cache that cannot be written is
a warning. Stale temp files of killed writes are removed when a run starts.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evalsuite.cli import main
from evalsuite.data.pixels import UInt8Pixels
from helpers import write_class_folders, write_include_task


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A cache dir of this test's own (the session's shared one holds other tests' entries)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("EVALSUITE_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def pets(tmp_path, tiny_model_dir) -> list[str]:
    write_class_folders(tmp_path / "data" / "pets", ["cat", "dog"], per_class=6, size=(50, 40))
    write_include_task(tmp_path / "inc", "pets", ["cat", "dog"])
    return ["run", "--model", f"local-dir:{tiny_model_dir}", "--tasks", "pets", "--data-root", str(tmp_path / "data"),
            "--include-path", str(tmp_path / "inc"), "--workers", "0", "--bootstrap", "0"]


@pytest.fixture
def decoded(monkeypatch) -> list:
    """Image files decoded (every file-based sample goes through ``UInt8Pixels.from_file``)."""
    calls = []
    real = UInt8Pixels.from_file
    monkeypatch.setattr(UInt8Pixels, "from_file", lambda self, p: calls.append(p) or real(self, p))
    return calls


def metrics(out: Path) -> dict:
    rows = csv.DictReader((next(out.iterdir()) / "pets.csv").open())
    return {r["metric"]: (r["value"], r["num_samples"], r["num_failed"]) for r in rows}


def run(capsys, argv: list[str], out: Path, *extra: str) -> str:
    code = main(argv + ["--output-dir", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Traceback" not in err and "internal error" not in err, err
    return err


def the_entry(folder: Path, pattern: str) -> Path:
    (entry,) = folder.glob(pattern)
    return entry


# ---------------------------------------------------------------------------------------------------- features

def negate_tensor(path: Path, field: str) -> None:
    """Flip every sign and save the entry again, checksum field and all (an edit torch.load cannot notice)."""
    entry = torch.load(path, weights_only=True)
    entry[field] = -entry[field]
    torch.save(entry, path)


def flip_a_bit(path: Path, field: str) -> None:
    """One bit flipped inside the tensor's bytes in the file (a storage fault)."""
    raw = bytearray(path.read_bytes())
    needle = torch.load(path, weights_only=True)[field].numpy().tobytes()[:64]
    at = raw.find(needle)
    assert at > 0
    raw[at + 9] ^= 0x10
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("kind,field", [("images", "features"), ("classifiers", "classifier")])
@pytest.mark.parametrize("damage", [negate_tensor, flip_a_bit])
def test_damaged_feature_cache_entry_is_recomputed(pets, cache, decoded, tmp_path, capsys, kind, field, damage):
    clean = tmp_path / "clean"
    run(capsys, pets, clean)
    assert len(decoded) == 12
    entry = the_entry(cache / "features" / kind, "*.pt")
    damage(entry, field)
    decoded.clear()
    err = run(capsys, pets, tmp_path / "again", "--no-resume")
    assert err.count(str(entry)) == 1 and "checksum" in err, err  # one warning, naming the entry
    assert metrics(tmp_path / "again") == metrics(clean)
    assert len(decoded) == (12 if kind == "images" else 0)  # recomputed: images decoded again
    err = run(capsys, pets, tmp_path / "third", "--no-resume")  # the entry was overwritten and verifies
    assert str(entry) not in err and metrics(tmp_path / "third") == metrics(clean)


def test_feature_entry_without_checksum_is_recomputed(pets, cache, decoded, tmp_path, capsys):
    """An entry of an earlier evalsuite (no checksum, labels stored) is never scored."""
    clean = tmp_path / "clean"
    run(capsys, pets, clean)
    entry = the_entry(cache / "features" / "images", "*.pt")
    held = torch.load(entry, weights_only=True)
    torch.save({"features": held["features"], "labels": torch.ones(12, dtype=torch.long), "kept": held["kept"],
                "failures": held["failures"], "names": []}, entry)
    decoded.clear()
    err = run(capsys, pets, tmp_path / "again", "--no-resume")
    assert err.count(str(entry)) == 1 and "no checksum" in err, err
    assert metrics(tmp_path / "again") == metrics(clean) and len(decoded) == 12


# ------------------------------------------------------------------------------------------------------ pixels

def pixel_entry(cache: Path) -> tuple[Path, Path]:
    data = the_entry(cache / "pixels", "*.npy")
    return data, data.with_suffix(".json")


def test_bit_flip_in_pixel_cache_is_caught_and_rewritten(pets, cache, decoded, tmp_path, capsys):
    argv = pets + ["--cache-pixels", "--no-cache-features"]
    clean = tmp_path / "clean"
    run(capsys, argv, clean)
    data, _ = pixel_entry(cache)
    pixels = np.load(data, mmap_mode="r")
    at = pixels.offset + 7 * pixels[0].nbytes + 100  # inside row 7
    del pixels
    raw = bytearray(data.read_bytes())
    raw[at] ^= 0x01
    data.write_bytes(bytes(raw))
    decoded.clear()
    err = run(capsys, argv, tmp_path / "again", "--no-resume")
    assert err.count(str(data)) == 1 and "row 7" in err and "checksum" in err, err
    assert metrics(tmp_path / "again") == metrics(clean) and len(decoded) == 12  # decoded again ...
    decoded.clear()
    err = run(capsys, argv, tmp_path / "third", "--no-resume")
    assert decoded == [] and str(data) not in err  # ... and the rewritten entry is read, verified
    assert metrics(tmp_path / "third") == metrics(clean)


def shift_labels_old_format(index: Path) -> None:
    """The index of an earlier evalsuite (labels stored and scored from it), its labels shifted by one."""
    meta = json.loads(index.read_text())
    labels = [1 if i < 6 else 0 for i in meta["kept"]]  # every sample with the other class
    index.write_text(json.dumps({"labels": labels, "kept": meta["kept"], "failures": meta["failures"]}))


def edit_kept(index: Path) -> None:
    meta = json.loads(index.read_text())
    meta["kept"] = meta["kept"][1:] + meta["kept"][:1]  # rows shifted against their samples
    index.write_text(json.dumps(meta))


def drop_kept(index: Path) -> None:
    meta = json.loads(index.read_text())
    del meta["kept"]
    index.write_text(json.dumps(meta))


def not_json(index: Path) -> None:
    index.write_bytes(index.read_bytes()[:40])


@pytest.mark.parametrize("damage,says", [(shift_labels_old_format, "older evalsuite"), (edit_kept, "checksum"),
                                         (drop_kept, "without kept"), (not_json, "unreadable")])
def test_damaged_pixel_index_is_a_warning_and_decoded_again(pets, cache, decoded, tmp_path, capsys, damage, says):
    argv = pets + ["--cache-pixels", "--no-cache-features"]
    clean = tmp_path / "clean"
    run(capsys, argv, clean)
    data, index = pixel_entry(cache)
    damage(index)
    decoded.clear()
    err = run(capsys, argv, tmp_path / "again", "--no-resume")  # never a crash (KeyError 'kept'), never scored
    assert err.count(str(data)) == 1 and says in err, err
    assert metrics(tmp_path / "again") == metrics(clean) and len(decoded) == 12


def test_labels_come_from_the_listing_not_the_cache(pets, cache, tmp_path, capsys):
    """A verified entry holds no labels: scoring takes them from the dataset, so relabelled data (another
    listing, same pixels) is scored with its own labels."""
    from evalsuite.data.base import SampleDataset
    from evalsuite.encoding.feature_cache import sample_identity

    run(capsys, pets + ["--cache-pixels"], tmp_path / "clean")
    entry = torch.load(the_entry(cache / "features" / "images", "*.pt"), weights_only=True)
    assert "labels" not in entry
    _, index = pixel_entry(cache)
    assert "labels" not in json.loads(index.read_text())
    listing = SampleDataset(["a", "b"], [0, 1], None, None)
    assert sample_identity(listing) != sample_identity(SampleDataset(["a", "b"], [1, 0], None, None))


# ------------------------------------------------------------------------------------------------------ frames

def test_damaged_but_decodable_frame_is_caught_by_its_checksum(tmp_path, caplog):
    from evalsuite.data.synthetic_clips import write_clip
    from evalsuite.data.video import CachedFrameLoader

    clip = tmp_path / "clip.mp4"
    write_clip(clip, [Image.new("RGB", (64, 48), (20 * i, 100, 200 - 20 * i)) for i in range(9)])
    for rule, fmt in (("vissl", "JPEG"), ("decoded_middle", "PNG")):
        loader = CachedFrameLoader(rule, tmp_path / "cache")
        first = loader(str(clip))
        (entry,) = (tmp_path / "cache").rglob("*.jpg" if rule == "vissl" else "*.png")
        other = Image.new("RGB", (64, 48), (0, 255, 0))  # a valid image, another picture
        other.save(entry, fmt)
        caplog.clear()
        assert loader(str(clip)).tobytes() == first.tobytes()
        assert caplog.text.count(str(entry)) == 1 and "checksum" in caplog.text
        assert loader(str(clip)).tobytes() == first.tobytes()  # rewritten, and read back verified
        assert caplog.text.count(str(entry)) == 1


# ------------------------------------------------------------------------------------------------ concurrency

WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import torch
    import evalsuite.encoding.pixel_cache as pc

    root, value, marker = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    if value == 1:  # writer 1 stops between publishing its pixels and its index
        real = pc.atomic_write_bytes
        pc.atomic_write_bytes = lambda path, data: (marker.touch(), time.sleep(2), real(path, data))
    kept = [0, 1, 2, 3] if value == 1 else [0, 1, 2]
    writer = pc.PixelCache(root).writer("key", 4, 8, {"count": 4, "names": "n", "labels": "l"})
    writer.add(torch.full((len(kept), 3, 8, 8), value, dtype=torch.uint8), torch.tensor(kept))
    while value == 2 and not marker.exists():  # writer 2 publishes while writer 1 is stopped
        time.sleep(0.005)
    writer.commit([] if value == 1 else [(3, "sample 3: unreadable")])
""")


def test_two_writers_of_one_pixel_entry_leave_one_of_them(tmp_path):
    """Writer 1 stops between its two renames; writer 2 publishes meanwhile. The entry afterwards verifies and is
    wholly writer 1's or wholly writer 2's (unlocked, it held writer 2's pixels under writer 1's index)."""
    from evalsuite.encoding.pixel_cache import PixelCache

    marker = tmp_path / "in-the-gap"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), v, str(marker)]) for v in ("1", "2")]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    entry = PixelCache(tmp_path).load("key", {"count": 4, "names": "n", "labels": "l"}, 8)
    assert entry is not None
    pixels = torch.cat(list(entry.batches(list(range(len(entry.kept))), 2)))  # every row verified
    assert (entry.kept, pixels.unique().tolist()) in [([0, 1, 2, 3], [1]), ([0, 1, 2], [2])]
    assert not list(tmp_path.glob("pixels/*.tmp"))


FEATURE_WRITER = textwrap.dedent("""
    import sys
    import torch
    from evalsuite.encoding.feature_cache import FeatureCache

    cache, value = FeatureCache(sys.argv[1]), float(sys.argv[2])
    for _ in range(40):
        cache.save("images", "key", {"features": torch.full((500, 64), value), "kept": list(range(500)),
                                     "failures": []}, {"count": 500, "names": "n", "labels": "l"})
""")


def test_two_writers_of_one_feature_entry_leave_one_of_them(tmp_path):
    from evalsuite.encoding.feature_cache import FeatureCache

    writers = [subprocess.Popen([sys.executable, "-c", FEATURE_WRITER, str(tmp_path), v]) for v in ("1", "2")]
    assert [w.wait(timeout=300) for w in writers] == [0, 0]
    entry = FeatureCache(tmp_path).load("images", "key", {"count": 500, "names": "n", "labels": "l"})
    assert entry is not None and entry["features"].unique().tolist() in ([1.0], [2.0])


# ------------------------------------------------------------------------------------------ unwritable caches

def cache_folders_are_files(cache: Path) -> None:
    """Every cache folder is a file: each write fails with a real OSError, whoever runs the test (root too)."""
    cache.mkdir(parents=True, exist_ok=True)
    for name in ("features", "pixels", "video-frames"):
        (cache / name).write_text("not a folder")


def full_disk(cache: Path, monkeypatch) -> None:
    """Temp files under the cache dir cannot be created: ENOSPC (the output folder is fine)."""
    import evalsuite.atomic
    import evalsuite.encoding.pixel_cache

    real = evalsuite.atomic.new_temp_file

    def no_space(folder, *args, **kwargs):
        if str(folder).startswith(str(cache)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder))
        return real(folder, *args, **kwargs)

    monkeypatch.setattr(evalsuite.atomic, "new_temp_file", no_space)
    monkeypatch.setattr(evalsuite.encoding.pixel_cache, "new_temp_file", no_space)


@pytest.mark.parametrize("break_cache", ["files", "enospc"])
def test_unwritable_cache_is_a_warning_and_the_run_goes_on(pets, cache, tmp_path, capsys, monkeypatch, break_cache):
    clean = tmp_path / "clean"
    run(capsys, pets, clean, "--no-cache-features")
    if break_cache == "files":
        cache_folders_are_files(cache)
    else:
        full_disk(cache, monkeypatch)
    err = run(capsys, pets + ["--cache-pixels"], tmp_path / "out")
    assert metrics(tmp_path / "out") == metrics(clean)
    # one each: the model's preprocessing, the classifier, the image features; the pixels
    assert err.count("feature cache entry") == 3 and err.count("pixel cache entry") == 1, err
    assert "not written" in err


def test_pixel_write_failing_midway_drops_the_entry(pets, cache, tmp_path, capsys, monkeypatch):
    from evalsuite.encoding.pixel_cache import PixelCacheWriter

    def no_space(self, block):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    clean = tmp_path / "clean"
    run(capsys, pets, clean, "--no-cache-features")
    monkeypatch.setattr(PixelCacheWriter, "_write", no_space)
    err = run(capsys, pets + ["--cache-pixels", "--no-cache-features", "--batch-size", "4"], tmp_path / "out")
    assert err.count("pixel cache entry") == 1 and "No space left" in err, err
    assert metrics(tmp_path / "out") == metrics(clean)
    assert list((cache / "pixels").iterdir()) == []  # the temp file removed, nothing published


def test_frame_cache_write_failing_is_one_warning(tmp_path, caplog, monkeypatch):
    from evalsuite.data import video
    from evalsuite.data.synthetic_clips import write_clip

    clips = []
    for k in range(3):
        clips.append(tmp_path / f"clip{k}.mp4")
        write_clip(clips[-1], [Image.new("RGB", (64, 48), (30 * i, 10 * k, 100)) for i in range(7)])
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "video-frames").write_text("not a folder")
    loader = video.CachedFrameLoader("vissl", cache)
    frames = [loader(str(c)) for c in clips]
    assert caplog.text.count("not written") == 1
    assert [f.tobytes() for f in frames] == [video.CachedFrameLoader("vissl", None)(str(c)).tobytes() for c in clips]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod (the folders-as-files case covers it)")
def test_read_only_cache_is_a_warning(pets, cache, tmp_path, capsys):
    clean = tmp_path / "clean"
    run(capsys, pets, clean, "--no-cache-features")
    cache.mkdir(parents=True, exist_ok=True)
    cache.chmod(0o555)
    try:
        err = run(capsys, pets + ["--cache-pixels"], tmp_path / "out")
    finally:
        cache.chmod(0o755)
    assert metrics(tmp_path / "out") == metrics(clean) and "not written" in err


# ----------------------------------------------------------------------------------------------- housekeeping

def test_stale_temp_files_are_removed_by_age_and_owner(tmp_path):
    from evalsuite.housekeeping import remove_stale_temp_files

    cache, out = tmp_path / "cache", tmp_path / "out" / "model"
    stale = [cache / "pixels" / ".abc123.npy.tmp", cache / "features" / "images" / ".k.pt.x1y2.tmp",
             cache / "video-frames" / "ab" / ".abcd.0123.jpg.q9.tmp", out / ".cifar10.csv.zz.tmp",
             out / "history" / ".old.csv.yy.tmp"]
    kept = [cache / "pixels" / ".fresh.npy.tmp", cache / "pixels" / "entry.npy", out / "cifar10.csv",
            cache / "other" / ".elsewhere.tmp", out / "visible.tmp"]
    for path in stale + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    hour_ago = time.time() - 2 * 3600
    for path in stale + kept[1:]:
        os.utime(path, (hour_ago, hour_ago))
    removed = remove_stale_temp_files(cache, out)
    assert sorted(removed) == sorted(stale)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)
    assert remove_stale_temp_files(cache, tmp_path / "missing") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_other_users_temp_files_stay(tmp_path):
    from evalsuite.housekeeping import remove_stale_temp_files

    theirs = tmp_path / "cache" / "pixels" / ".theirs.npy.tmp"
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(b"x")
    os.chown(theirs, 12345, 12345)
    os.utime(theirs, (0, 0))
    assert remove_stale_temp_files(tmp_path / "cache", tmp_path / "out") == [] and theirs.exists()


def test_a_run_removes_the_temp_file_of_a_killed_pixel_write(pets, cache, tmp_path, capsys):
    leftover = cache / "pixels" / ".killed.npy.tmp"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"\0" * 4096)
    os.utime(leftover, (time.time() - 7200,) * 2)
    run(capsys, pets, tmp_path / "out")
    assert not leftover.exists()


def test_an_empty_pixel_array_beside_a_sound_index_is_decoded_again(pets, cache, decoded, tmp_path, capsys):
    """A crash between publishing the .npy (not yet on disk) and its fsynced index left a 0-byte array: numpy's
    EOFError made every later --cache-pixels run a traceback."""
    argv = pets + ["--cache-pixels", "--no-cache-features"]
    run(capsys, argv, tmp_path / "clean")
    data, _ = pixel_entry(cache)
    data.write_bytes(b"")
    decoded.clear()
    err = run(capsys, argv, tmp_path / "again", "--no-resume")
    assert "EOFError" in err and "decoding again" in err and len(decoded) == 12
    assert metrics(tmp_path / "again") == metrics(tmp_path / "clean")
