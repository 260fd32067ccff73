"""torchrun with 2 CPU processes (gloo) gives exactly the single-process files: metrics, counts, the error list;
ranks agree on failures (an unreadable sample, one rank's error, one rank's cache miss) and never hang."""

import csv
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import CIFAR10_CLASSES, REPO, write_class_folders

TIMED = ("seconds", "images_per_second", "finished_utc")  # the only columns that may differ between runs
OWN_TRACEBACK = f'File "{REPO / "evalsuite"}'  # a frame of evalsuite's own code in a traceback


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model_dir(out: Path) -> Path:
    (folder,) = out.iterdir()
    return folder


def rows_of(out: Path, task: str = "cifar10") -> dict:
    return {r["metric"]: {k: v for k, v in r.items() if k not in TIMED}
            for r in csv.DictReader((model_dir(out) / f"{task}.csv").open())}


@pytest.fixture
def cifar(tmp_path, tiny_model_dir) -> list[str]:
    write_class_folders(tmp_path / "data" / "cifar10", CIFAR10_CLASSES, per_class=3)  # 30: odd shard sizes
    (tmp_path / "data" / "cifar10" / "cat" / "broken.png").write_bytes(b"not an image")
    return ["run", "--model", f"local-dir:{tiny_model_dir}", "--tasks", "cifar10", "--data-root",
            str(tmp_path / "data"), "--workers", "0", "--batch-size", "4", "--bootstrap", "0"]


def env_with_cache(tmp_path: Path) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "EVALSUITE_CACHE_DIR": str(tmp_path / "cache")}


def one_process(argv: list[str], out: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "evalsuite", *argv, "--output-dir", str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 3, proc.stderr  # flagged: one unreadable image
    return proc


def two_ranks(program: list[str], argv: list[str], out: Path, env: dict) -> subprocess.CompletedProcess:
    """torchrun, 2 gloo ranks; the launcher may turn rank 0's exit code into 1, so callers check the files."""
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                           str(free_port()), *program, *argv, "--output-dir", str(out)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert "distributed: 2 ranks (gloo)" in proc.stderr, proc.stderr[-3000:]
    assert OWN_TRACEBACK not in proc.stderr, proc.stderr[-5000:]
    return proc


def assert_same_files(one: Path, two: Path, task: str = "cifar10") -> None:
    assert rows_of(two, task) == rows_of(one, task)
    for name in (f"{task}.errors.txt", f"{task}.predictions.csv"):
        assert (model_dir(two) / name).read_text() == (model_dir(one) / name).read_text(), name


@pytest.mark.slow
def test_two_gloo_ranks_write_what_one_process_writes(cifar, tmp_path):
    env = env_with_cache(tmp_path)
    one_process(cifar + ["--no-cache-features", "--cache-pixels"], tmp_path / "one", env)
    multi = two_ranks(["-m", "evalsuite"], cifar + ["--no-cache-features"], tmp_path / "two", env)
    assert "flagged: cifar10" in multi.stderr and "unreadable sample:" in multi.stderr
    assert "broken.png" in multi.stderr
    assert_same_files(tmp_path / "one", tmp_path / "two")
    assert {r["num_samples"] for r in rows_of(tmp_path / "two").values()} == {"30"}
    assert {r["num_failed"] for r in rows_of(tmp_path / "two").values()} == {"1"}
    # the pixel cache the single process wrote, read by both ranks (its failures counted once)
    cached = two_ranks(["-m", "evalsuite"], cifar + ["--no-cache-features", "--cache-pixels"], tmp_path / "pix", env)
    assert "pixels from the pixel cache" in cached.stderr
    assert_same_files(tmp_path / "one", tmp_path / "pix")


def wrapper(tmp_path: Path, patch: str) -> list[str]:
    """A program for torchrun: ``patch`` applied on rank 1 only, then evalsuite's CLI."""
    script = tmp_path / "rank1_patched.py"
    script.write_text(textwrap.dedent("""
        import os
        import sys

        if os.environ["RANK"] == "1":
        {patch}
        from evalsuite.cli import main

        sys.exit(main(sys.argv[1:]))
    """).format(patch=textwrap.indent(textwrap.dedent(patch), "    ")))
    return [str(script)]


@pytest.mark.slow
def test_one_ranks_error_fails_the_task_on_every_rank(cifar, tmp_path, tiny_model_dir):
    """Rank 1's first batch raises a typed error: both ranks fail that task alike and go on together (before,
    rank 1 moved to the next task while rank 0 waited for its shard: crossed collectives, then a crash)."""
    from helpers import write_include_task

    write_class_folders(tmp_path / "data" / "pets", ["cat", "dog"], per_class=3)
    write_include_task(tmp_path / "inc", "pets", ["cat", "dog"])
    argv = cifar + ["--no-cache-features", "--include-path", str(tmp_path / "inc")]
    argv[argv.index("cifar10")] = "pets,cifar10"
    program = wrapper(tmp_path, """
        import evalsuite.encoding.encoder as encoder
        from evalsuite.errors import NonFiniteFeaturesError

        real, calls = encoder.encode_with_backoff, []

        def first_call_fails(encode, pixels, limit):
            calls.append(1)
            if len(calls) == 1:
                raise NonFiniteFeaturesError("rank 1: NaN features (injected)")
            return real(encode, pixels, limit)

        encoder.encode_with_backoff = first_call_fails
    """)
    multi = two_ranks(program, argv, tmp_path / "two", env_with_cache(tmp_path))
    assert "pets: failed: rank 1: NaN features (injected)" in multi.stderr, multi.stderr[-3000:]
    one = one_process(cifar + ["--no-cache-features"], tmp_path / "one", env_with_cache(tmp_path))
    assert one.returncode == 3
    assert_same_files(tmp_path / "one", tmp_path / "two")  # the next task, on both ranks, as one process
    assert not (model_dir(tmp_path / "two") / "pets.csv").exists()


@pytest.mark.slow
def test_ranks_take_the_cache_together(cifar, tmp_path):
    """Rank 0 finds the image features cached, rank 1 does not: both encode (before, rank 0 went on with the
    cached entry while rank 1 waited for it in the gather)."""
    env = env_with_cache(tmp_path)
    one_process(cifar, tmp_path / "one", env)  # fills the feature cache
    program = wrapper(tmp_path, """
        from evalsuite.encoding.feature_cache import FeatureCache

        FeatureCache.load = lambda self, *args, **kwargs: None
    """)
    multi = two_ranks(program, cifar, tmp_path / "two", env)
    assert "image features from the cache" not in multi.stderr
    assert_same_files(tmp_path / "one", tmp_path / "two")


@pytest.mark.slow
@pytest.mark.parametrize("blocked", ["output-dir", "predictions"])
def test_a_write_only_rank_0_makes_fails_every_rank_alike(cifar, tmp_path, tiny_model_dir, blocked):
    """Rank 0 could not write (an --output-dir that is a file; a predictions path that is a folder): it went to
    the exit barrier while rank 1 waited in the next collective, and the run hung with no message."""
    from evalsuite.models.loading import resolve_card, results_dirname
    from evalsuite.models.open_clip_adapter import OpenClipAdapter

    out = tmp_path / "two"
    if blocked == "output-dir":
        out.write_text("a file")
    else:
        card = resolve_card(f"local-dir:{tiny_model_dir}")
        (out / results_dirname(card, OpenClipAdapter.weights_identity(card)) / "cifar10.predictions.csv").mkdir(
            parents=True)
    multi = two_ranks(["-m", "evalsuite"], cifar + ["--no-cache-features"], out, env_with_cache(tmp_path))
    assert multi.returncode != 0 and "evalsuite: error:" in multi.stderr, multi.stderr[-3000:]
    assert ("cannot write there" if blocked == "output-dir" else "cannot write (Is a directory)") in multi.stderr


@pytest.mark.slow
def test_a_damaged_pixel_row_met_by_rank_1_is_said_by_rank_0(cifar, tmp_path):
    """Rank 1 caught the damage (the numbers stayed right) but only rank 0 logs: the run said it read the pixel
    cache and nothing of decoding again."""
    import numpy as np

    env = env_with_cache(tmp_path)
    one_process(cifar + ["--no-cache-features", "--cache-pixels"], tmp_path / "one", env)
    (entry,) = (tmp_path / "cache").rglob("pixels/*.npy")
    rows = np.load(entry, mmap_mode="r")
    offset = rows.offset + 27 * rows[0].nbytes + 10  # row 27 of 29: rank 1's shard (rows 1, 3, ...)
    data = bytearray(entry.read_bytes())
    data[offset] ^= 0xFF
    entry.write_bytes(bytes(data))
    multi = two_ranks(["-m", "evalsuite"], cifar + ["--no-cache-features", "--cache-pixels"], tmp_path / "two", env)
    assert "damaged (found by this or another rank); decoding again" in multi.stderr, multi.stderr[-3000:]
    assert_same_files(tmp_path / "one", tmp_path / "two")
