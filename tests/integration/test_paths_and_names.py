"""Paths and names (issue 16, sections 4 and 5): a task YAML reads only prompt files from the prompts folders and
never echoes another file's contents; results folders and task files are plain names inside --output-dir; task
names that would overwrite a run's other files are reserved; every write stays inside the output or cache dir.

Before the fix a ``file_list`` pointing at /etc/shadow put its first row into the error and run.json,
``classnames: ../../..`` read a YAML outside prompts/ and echoed its first key, and tasks named ``summary``,
``suites`` or ``<task>.predictions`` overwrote those files.
"""

import json
import os
import re
from pathlib import Path

import pytest

from evalsuite.cli import main
from evalsuite.models.card import ModelCard
from evalsuite.models.loading import results_dirname
from evalsuite.models.tiny import write_tiny_clip

SHAPES = json.dumps({"kind": "synthetic_shapes", "args": {"per_class": 2}})
SECRET = "root:$6$SECRETHASHxyz$abc:19000:0:99999:7:::"


def task_yaml(inc: Path, name: str, source: str, classnames: str = "leak", templates: str = "leak",
              file_name: str | None = None, num_classes: int = 2) -> Path:
    (inc / "tasks").mkdir(parents=True, exist_ok=True)
    path = inc / "tasks" / f"{file_name or name}.yaml"
    path.write_text(f"name: {json.dumps(name)}\ntype: classification\nversion: 1\nsource: {source}\n"
                    f"classnames: {json.dumps(classnames)}\ntemplates: {json.dumps(templates)}\n"
                    f"num_classes: {num_classes}\nmetrics: [acc1]\nprimary_metric: acc1\n")
    return path


def prompts(inc: Path, name: str = "leak", classnames=("cat", "dog"), keys=None) -> None:
    for sub in ("classnames", "templates"):
        (inc / "prompts" / sub).mkdir(parents=True, exist_ok=True)
    keys_line = f"keys: {json.dumps(list(keys))}\n" if keys else ""
    (inc / "prompts/classnames" / f"{name}.yaml").write_text(
        f"source: test\nclassnames: {json.dumps(list(classnames))}\n{keys_line}")
    (inc / "prompts/templates" / f"{name}.yaml").write_text("source: test\ntemplates: ['a photo of a {c}.']\n")


def run(capsys, tmp_path, inc, *extra, task="leak", model="demo-clip"):
    code = main(["run", "--model", model, "--tasks", task, "--include-path", str(inc), "--output-dir",
                 str(tmp_path / "out"), "--data-root", str(tmp_path / "data"), "--workers", "0", "--device", "cpu",
                 "--bootstrap", "0", *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def written_texts(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file()) if folder.exists() else ""


# --- a task YAML cannot read another file and echo it -------------------------------------------------------------

def secret_files(tmp_path: Path) -> list[Path]:
    one_column = tmp_path / "shadow"
    one_column.write_text(f"{SECRET}\nbin:*:19000:0:99999:7:::\n")
    two_columns = tmp_path / "secrets.csv"
    two_columns.write_text("path,label\nTOPSECRETVALUE,NOTALABEL\n")
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xffSECRETBYTES\xfe\n")
    files = [one_column, two_columns, binary]
    if Path("/etc/shadow").is_file():
        files.append(Path("/etc/shadow"))
    return files


@pytest.mark.parametrize("which", range(4))
def test_file_list_errors_quote_the_line_never_its_content(tmp_path, capsys, which):
    files = secret_files(tmp_path)
    if which >= len(files):
        pytest.skip("no /etc/shadow here")
    secret = files[which]
    inc = tmp_path / "inc"
    prompts(inc)
    task_yaml(inc, "leak", json.dumps({"kind": "file_list", "args": {"file": str(secret)}}))
    code, output = run(capsys, tmp_path, inc)
    assert code == 2, output
    assert "Traceback" not in output and "internal error" not in output, output
    assert str(secret.resolve()) in output and re.search(rf"{re.escape(str(secret.resolve()))}(:\d+)?: ", output)
    recorded = written_texts(tmp_path / "out")
    try:
        first_row = secret.read_text(errors="replace").splitlines()[0].strip()
    except PermissionError:
        first_row = None
    for text in (output, recorded):
        for needle in ("SECRETHASH", "TOPSECRETVALUE", "NOTALABEL", "SECRETBYTES", first_row):
            if needle:
                assert needle not in text


@pytest.mark.parametrize("name", ["../../..", "../outside", "/etc/passwd", "a/b", ".hidden", "..", "x\\y"])
def test_prompt_names_are_plain_names(tmp_path, capsys, name):
    inc = tmp_path / "inc"
    prompts(inc)
    (tmp_path / "outside.yaml").write_text("SECRETKEY: 1\n")  # reachable as ../outside from prompts/classnames
    (inc / "outside.yaml").write_text("SECRETKEY: 1\n")
    task_yaml(inc, "leak", SHAPES, classnames=name)
    code = main(["validate", "--tasks", "leak", "--include-path", str(inc)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert "must be a plain file name" in err and "SECRETKEY" not in err, err


def test_a_prompt_file_linking_out_of_the_prompts_folder_is_refused(tmp_path, capsys):
    inc = tmp_path / "inc"
    prompts(inc)
    outside = tmp_path / "elsewhere.yaml"
    outside.write_text("SECRETKEY: 1\n")
    (inc / "prompts/classnames/linked.yaml").symlink_to(outside)
    task_yaml(inc, "leak", SHAPES, classnames="linked")
    code = main(["validate", "--tasks", "leak", "--include-path", str(inc)])
    err = capsys.readouterr().err
    assert code == 2 and "leads outside" in err and "SECRETKEY" not in err, err


# --- results folders are plain names inside --output-dir ---------------------------------------------------------

NAMES = ["..", ".", "", "...", "../..", "../../etc", "/etc", "/", "a/../../b", "\x00", "..\x00..", ".hidden",
         "~", "~/x", "C:\\Windows", "x" * 300, "." * 300, "é" * 200, "hf:BAAI/EVA-CLIP-8B", "local-dir:.."]


@pytest.mark.parametrize("name", NAMES, ids=[repr(n)[:20] for n in NAMES])
@pytest.mark.parametrize("identity", [None, {"file_sha256": "abc"}])
def test_results_dirname_is_one_plain_name(tmp_path, name, identity):
    card = ModelCard(name=name, adapter="open_clip", architecture="x")
    folder = results_dirname(card, identity)
    assert folder and "/" not in folder and "\\" not in folder and "\x00" not in folder
    assert not folder.startswith(".") and folder not in (".", "..")
    assert len(folder.encode()) <= 255
    out = tmp_path / "out"
    assert (out / folder).resolve().parent == out.resolve()
    (out / folder).mkdir(parents=True)  # a name the file system takes


def test_names_that_sanitise_alike_stay_apart_when_long():
    a = results_dirname(ModelCard(name="x" * 300 + "a", adapter="open_clip", architecture="x"))
    b = results_dirname(ModelCard(name="x" * 300 + "b", adapter="open_clip", architecture="x"))
    assert a != b


def new_files(root: Path, before: set[Path]) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p not in before)


@pytest.fixture
def demo_inc(tmp_path) -> Path:
    inc = tmp_path / "inc"
    prompts(inc, "leak", classnames=["red circle", "blue square"])
    task_yaml(inc, "leak", json.dumps({"kind": "synthetic_shapes", "args": {"per_class": 2}}))
    return inc


def test_a_card_named_dot_dot_writes_inside_the_output_dir(tmp_path, capsys, demo_inc):
    tiny = write_tiny_clip(tmp_path / "tiny")
    card = tmp_path / "dots.yaml"
    card.write_text(f"name: '..'\nadapter: open_clip\narchitecture: tiny\nweights:\n- kind: local_dir\n"
                    f"  ref: {tiny}\nprecision: fp32\n")
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    code, output = run(capsys, tmp_path, demo_inc, model=str(card))
    assert code in (0, 3), output
    written = new_files(tmp_path, before)
    assert written and all(p.is_relative_to(tmp_path / "out") for p in written), written
    folders = {p.relative_to(tmp_path / "out").parts[0] for p in written}
    assert len(folders) == 1 and folders.pop().startswith("model-")  # ".." sanitises to "model" (+ weights digest)


def test_a_checkpoint_named_dot_dot_pt_writes_inside_the_output_dir(tmp_path, capsys, demo_inc):
    import torch
    from safetensors.torch import load_file

    tiny = write_tiny_clip(tmp_path / "tiny")
    (tmp_path / "x").mkdir()
    torch.save(load_file(str(tiny / "open_clip_model.safetensors")), tmp_path / "x" / "..pt")
    arch = tmp_path / "tiny-card.yaml"  # the tiny architecture as a card with a local_dir source (--arch CARD)
    arch.write_text(f"name: tiny-card\nadapter: open_clip\narchitecture: 'local-dir:{tiny}'\nweights:\n"
                    f"- kind: local_dir\n  ref: {tiny}\nprecision: fp32\n")
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    code, output = run(capsys, tmp_path, demo_inc, "--arch", str(arch), model=str(tmp_path / "x" / "..pt"))
    written = new_files(tmp_path, before)
    assert all(p.is_relative_to(tmp_path / "out") for p in written), (written, output)


# --- task names that would overwrite a run's other files are reserved ---------------------------------------------

@pytest.mark.parametrize("name, file_name, message", [
    ("summary", None, "would overwrite the run's summary.csv"),
    ("suites", None, "would overwrite the run's suites.csv"),
    ("cifar10.predictions", None, "is the name of task 'cifar10''s predictions file"),
    ("demo.errors", None, "kept for the runs' error lists"),
    ("..", "..", "not a plain file name"),
    (".hidden", None, "not a plain file name"),
])
def test_reserved_task_names(tmp_path, capsys, name, file_name, message):
    inc = tmp_path / "inc"
    prompts(inc)
    path = task_yaml(inc, name, SHAPES, file_name=file_name)
    code = main(["validate", "--include-path", str(inc)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert f"{path}:1: task name {name!r}" in err and message in err, err


@pytest.mark.parametrize("name", ["../escape", "/abs/escape", "sub/escape"])
def test_task_names_with_paths_are_refused(tmp_path, capsys, name):
    inc = tmp_path / "inc"
    prompts(inc)
    task_yaml(inc, name, SHAPES, file_name="escape")
    code = main(["validate", "--include-path", str(inc)])
    err = capsys.readouterr().err
    assert code == 2 and "must equal the file name stem" in err, err


# --- `..` and absolute paths in class keys and file lists are read, never written to ------------------------------

def test_dot_dot_and_absolute_keys_and_items_only_ever_write_inside_out_and_cache(tmp_path, capsys,
                                                                                  isolated_cache_dir):
    from PIL import Image

    inc = tmp_path / "inc"
    keys = ["../../escape", str(tmp_path / "abs-key")]
    prompts(inc, "leak", classnames=["red circle", "blue square"], keys=keys)
    data = tmp_path / "data" / "lists"
    data.mkdir(parents=True)
    Image.new("RGB", (48, 48), "red").save(tmp_path / "up.png")
    Image.new("RGB", (48, 48), "blue").save(tmp_path / "abs.png")
    (data / "list.csv").write_text(f"path,label\n../../up.png,../../escape\n{tmp_path / 'abs.png'},{keys[1]}\n")
    task_yaml(inc, "leak", json.dumps({"kind": "file_list", "args": {"file": "lists/list.csv"}}))
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    code, output = run(capsys, tmp_path, inc)
    assert code in (0, 3), output
    written = new_files(tmp_path, before)
    assert written and all(p.is_relative_to(tmp_path / "out") for p in written), written
    assert not (tmp_path.parent / "escape").exists() and not (tmp_path / "abs-key").exists()
    for p in isolated_cache_dir.rglob("*"):  # caches are keyed by digests: no key or item name becomes a path
        assert "escape" not in p.name and "abs-key" not in p.name
    assert os.path.isdir(tmp_path / "out")
