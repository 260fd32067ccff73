"""Bad inputs and hostile environments end in one clear line and a documented exit code (2 bad input, 3 flagged),
never a traceback, within seconds (issue 16, sections 1 and 2: output folders, YAML, numbers, decoders, patterns,
exit codes under the launcher). Weights files, caches, remote code and paths have their own test files."""

import errno
import io
import os
import subprocess
import sys
import time

import pytest
from PIL import Image

from evalsuite.cli import main
from helpers import write_class_folders, write_include_task

FRUIT = ["apple", "banana", "cherry", "grape"]


@pytest.fixture
def fruit(tmp_path):
    """A user-defined 4-class task with 2 generated images per class: (include path, data root)."""
    inc = tmp_path / "inc"
    write_include_task(inc, "fruit", FRUIT)
    write_include_task(inc, "fruit2", FRUIT)
    write_class_folders(tmp_path / "data" / "fruit", FRUIT, per_class=2)
    write_class_folders(tmp_path / "data" / "fruit2", FRUIT, per_class=2, seed=1)
    return inc, tmp_path / "data"


def run_cli(capsys, *argv) -> tuple[int, str, float]:
    start = time.perf_counter()
    code = main([*map(str, argv)])
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    return code, err, seconds


def run_fruit(capsys, tiny_model_dir, fruit, *extra, tasks="fruit"):
    inc, data = fruit
    return run_cli(capsys, "run", "--model", f"local-dir:{tiny_model_dir}", "--tasks", tasks, "--include-path", inc,
                   "--data-root", data, "--workers", "0", "--bootstrap", "0", *extra)


# --------------------------------------------------------------------------------------------------------------
# output folders


@pytest.mark.parametrize("where", ["a file", "/proc", "/sys"])
def test_unwritable_output_dir_is_refused_before_the_model_loads(where, tiny_model_dir, fruit, tmp_path, capsys):
    if where == "a file":
        out = tmp_path / "results.txt"
        out.write_text("not a folder")
    else:
        out = __import__("pathlib").Path(where) / "evalsuite-results"
    code, err, seconds = run_fruit(capsys, tiny_model_dir, fruit, "--output-dir", out)
    assert code == 2 and "cannot write" in err and "loading model" not in err, err
    assert seconds < 5


def test_full_disk_in_the_middle_keeps_the_finished_tasks(tiny_model_dir, fruit, tmp_path, capsys, monkeypatch):
    import evalsuite.results as results

    real = results.atomic_write_bytes

    def full_disk(path, data):
        if path.name.startswith("fruit2"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(results, "atomic_write_bytes", full_disk)
    out = tmp_path / "out"
    code, err, _ = run_fruit(capsys, tiny_model_dir, fruit, "--output-dir", out, tasks="fruit,fruit2")
    assert code == 2 and "No space left on device" in err and "fruit2" in err
    (folder,) = out.iterdir()
    assert results.read_task_csv(folder / "fruit.csv")  # the finished task's CSV is whole and valid
    assert not list(folder.glob("fruit2*"))


def test_export_and_aggregate_into_unwritable_places(tiny_model_dir, fruit, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_fruit(capsys, tiny_model_dir, fruit, "--output-dir", out)[0] == 0
    code, err, _ = run_cli(capsys, "export", "--runs", out, "--out", "/sys/evalsuite/leaderboard.csv",
                           "--include-path", fruit[0])
    assert code == 2 and "/sys/evalsuite" in err
    code, err, _ = run_cli(capsys, "aggregate", out, "--out", "/proc/evalsuite.md", "--include-path", fruit[0])
    assert code == 2 and "/proc/evalsuite.md" in err


# --------------------------------------------------------------------------------------------------------------
# task YAML


BILLION_LAUGHS = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))


@pytest.mark.parametrize("name,content,expected", [
    ("non-utf8", b"name: caf\xe9\n", "not UTF-8"),
    ("list-key", b"? [a, b]\n: 1\nname: x\n", "a key must be a plain name"),
    ("deep", b"name: x\nnotes: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested deeper than"),
    ("alias-bomb", ("l0: &l0 [lol]\n" + BILLION_LAUGHS).encode(), "aliases"),
])
def test_hostile_task_yaml(name, content, expected, tmp_path, capsys):
    inc = tmp_path / "inc"
    (inc / "tasks").mkdir(parents=True)
    (inc / "tasks" / "bad.yaml").write_bytes(content)
    code, err, seconds = run_cli(capsys, "validate", "--include-path", inc)
    assert code == 2 and expected in err and "bad.yaml" in err, err
    assert seconds < 1.5


# --------------------------------------------------------------------------------------------------------------
# numbers on the command line


@pytest.mark.parametrize("flag,value", [("--batch-size", str(10**30)), ("--batch-size", "0"), ("--workers", "-1"),
                                        ("--workers", "100000"), ("--bootstrap", str(10**12)), ("--limit", "0")])
def test_out_of_range_numbers_name_the_allowed_range(flag, value, capsys):
    with pytest.raises(SystemExit) as stop:  # argparse's own exit path: code 2 and a usage line
        main(["run", "--model", "demo-clip", "--tasks", "demo", flag, value])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "expected a whole number from" in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------------------------
# decoders and label patterns


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small valid JPEG whose frame header claims another size (what a decompression bomb looks like)."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize("decoder", ["pil", "tensor"])
def test_decompression_bomb_is_a_counted_failure_for_every_decoder(decoder, tiny_model_dir, fruit, tmp_path, capsys):
    bomb = fruit[1] / "fruit" / "apple" / "bomb.jpg"
    bomb.write_bytes(jpeg_claiming(30000, 30000))
    out = tmp_path / "out"
    code, err, seconds = run_fruit(capsys, tiny_model_dir, fruit, "--output-dir", out, "--decoder", decoder)
    assert code == 3 and "bomb.jpg" in err and "DecompressionBomb" in err, err
    assert seconds < 10


def test_catastrophic_label_pattern_is_stopped_and_named(tmp_path, capsys):
    inc = tmp_path / "inc"
    write_include_task(inc, "flat", FRUIT)
    yaml = inc / "tasks" / "flat.yaml"
    yaml.write_text(yaml.read_text().replace("{kind: image_folder, args: {}}",
                                             "{kind: image_folder, args: {layout: flat, "
                                             "label_pattern: '^((a|aa)+)$'}}"))
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / ("a" * 60 + "!.png"))
    code, err, seconds = run_cli(capsys, "run", "--model", "demo-clip", "--tasks", "flat", "--include-path", inc,
                                 "--data-root", tmp_path, "--output-dir", tmp_path / "out")
    assert code == 2 and "label_pattern" in err and "took over" in err, err
    assert seconds < 5


# --------------------------------------------------------------------------------------------------------------
# exit codes through the launcher


@pytest.mark.slow
def test_launcher_passes_the_documented_exit_code(tiny_model_dir, fruit, tmp_path):
    inc, data = fruit
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "evalsuite", "run", "--model", f"local-dir:{tiny_model_dir}",
                           "--tasks", "fruit,cifar10", "--include-path", str(inc), "--data-root", str(data),
                           "--workers", "0", "--nproc-per-node", "2", "--output-dir", str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]  # cifar10's data is missing: bad input, not 1
    assert "Traceback" not in proc.stderr and "ChildFailedError" not in proc.stderr
    assert proc.stderr.count("evalsuite: error:") == 1  # rank 0 alone reports
    assert proc.stdout.count("task ") == 1  # one table


def test_an_unusable_cache_dir_for_the_demo_clips_is_named(tmp_path, monkeypatch, capsys):
    """The demo clips are generated into the cache: an unusable EVALSUITE_CACHE_DIR said only 'Not a directory'."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("EVALSUITE_CACHE_DIR", str(blocker))
    assert main(["run", "--model", "demo-clip", "--tasks", "demo_clips", "--output-dir", str(tmp_path / "out"),
                 "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "EVALSUITE_CACHE_DIR" in err and str(blocker) in err and "Traceback" not in err
