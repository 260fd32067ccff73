"""No path to a silently wrong, stale or non-comparable number (issue 14, run side): data identity from the files,
count status, history of replaced results, weights in folder names, template filling, NaN features, symlinks,
file modes, exit codes. Every test goes through the CLI on generated files."""

import csv
import json
import os
import random
import stat

import pytest
from PIL import Image

from evalsuite.cli import main
from helpers import write_class_folders, write_include_task

FRUIT = ["apple", "banana", "cherry", "grape"]


def run(*argv) -> int:
    return main(["run", *map(str, argv), "--workers", "0", "--bootstrap", "0"])


def rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def primary(path) -> dict:
    return next(r for r in rows(path) if r["is_primary"] == "true")


def only_dir(out):
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    return folder


def noise_png(path, seed, size=(24, 20)):
    rng = random.Random(seed)
    Image.frombytes("RGB", size, bytes(rng.randrange(256) for _ in range(size[0] * size[1] * 3))).save(path)


def fruit_task(tmp_path, name="fruit", templates=("a photo of a {c}.",), expected=None):
    inc = tmp_path / f"inc-{name}"
    extra = f"expected_num_samples: {expected}\n" if expected else ""
    write_include_task(inc, name, FRUIT, templates, metrics=("acc1", "acc5"), extra=extra)
    return inc


def truth(tiny_model_dir, tmp_path, *argv) -> str:
    """Predictions of a run that can use no cache and no earlier result."""
    out = tmp_path / f"truth-{random.random()}"
    run("--model", f"local-dir:{tiny_model_dir}", *argv, "--output-dir", out, "--no-cache-features")
    folder = only_dir(out)
    (task,) = [p for p in folder.glob("*.predictions.csv")]
    return task.read_text()


# ------------------------------------------------------------------------------------------------------------
# 1. stale caches


def write_caption_folder(root, seed):
    """A COCO-format caption task: the same file names and captions in every copy, different images."""
    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    for i in range(6):
        noise_png(root / "images" / f"{i:03d}.png", seed * 100 + i)
        images.append({"id": i, "file_name": f"{i:03d}.png"})
        annotations += [{"id": 10 * i + k, "image_id": i, "caption": f"picture {i} caption {k}"} for k in range(2)]
    (root / "captions_val.json").write_text(json.dumps({"images": images, "annotations": annotations}))


def caption_task(tmp_path):
    inc = tmp_path / "inc-caps"
    (inc / "tasks").mkdir(parents=True)
    (inc / "tasks" / "caps.yaml").write_text(
        "name: caps\ntype: zeroshot_retrieval\nversion: 1\nsource: {kind: coco_captions, args: {}}\n"
        "metrics: [image_retrieval_recall@1, text_retrieval_recall@1, mean_recall]\nprimary_metric: mean_recall\n")
    return inc


def test_same_file_names_in_another_folder_are_not_served_from_the_cache(tiny_model_dir, tmp_path):
    inc = caption_task(tmp_path)
    write_caption_folder(tmp_path / "a" / "caps", seed=1)
    write_caption_folder(tmp_path / "b" / "caps", seed=2)
    base = ["--model", f"local-dir:{tiny_model_dir}", "--tasks", "caps", "--include-path", inc]
    assert run(*base, "--data-root", tmp_path / "a", "--output-dir", tmp_path / "out-a") == 0
    assert run(*base, "--data-root", tmp_path / "b", "--output-dir", tmp_path / "out-b") == 0
    served = (only_dir(tmp_path / "out-b") / "caps.predictions.csv").read_text()
    assert served == truth(tiny_model_dir, tmp_path, "--tasks", "caps", "--include-path", inc,
                           "--data-root", tmp_path / "b")
    assert served != (only_dir(tmp_path / "out-a") / "caps.predictions.csv").read_text()
    manifest = json.loads((only_dir(tmp_path / "out-b") / "run.json").read_text())
    assert manifest["tasks"]["caps"]["data_root"] == str((tmp_path / "b" / "caps").resolve())


def test_relative_data_root_from_another_directory(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """A file list with relative paths, read through a relative --data-root from two working directories."""
    inc = tmp_path / "inc"
    write_include_task(inc, "listed", FRUIT, metrics=("acc1", "acc5"))
    yaml = inc / "tasks" / "listed.yaml"
    yaml.write_text(yaml.read_text().replace("{kind: image_folder, args: {}}",
                                             "{kind: file_list, args: {file: list.csv}}"))
    for where, seed in (("one", 1), ("two", 2)):
        data = tmp_path / where / "data"
        write_class_folders(data / "imgs", FRUIT, per_class=3, seed=seed)
        (data / "list.csv").write_text("path,label\n" + "".join(f"imgs/{c}/{i:04d}.png,{c}\n" for c in FRUIT
                                                                 for i in range(3)))
    out = tmp_path / "out"
    base = ["--model", f"local-dir:{tiny_model_dir}", "--tasks", "listed", "--include-path", inc, "--data-root", "data"]
    monkeypatch.chdir(tmp_path / "one")
    assert run(*base, "--output-dir", out) == 0
    monkeypatch.chdir(tmp_path / "two")
    capsys.readouterr()
    assert run(*base, "--output-dir", out) == 0  # not "already done": other files behind the same names
    err = capsys.readouterr().err
    assert "already done" not in err and "from the cache" not in err
    served = (only_dir(out) / "listed.predictions.csv").read_text()
    assert served == truth(tiny_model_dir, tmp_path, *base[2:])


def test_an_image_replaced_in_place_is_seen_without_any_flag(tiny_model_dir, tmp_path, capsys):
    inc = fruit_task(tmp_path)
    write_class_folders(tmp_path / "fruit", FRUIT, per_class=3, seed=3)
    base = ["--model", f"local-dir:{tiny_model_dir}", "--tasks", "fruit", "--include-path", inc,
            "--data-root", tmp_path, "--output-dir", tmp_path / "out"]
    assert run(*base) == 0
    capsys.readouterr()
    for i in range(3):  # same names: only the content (and so size and modification time) changes
        Image.new("RGB", (40, 30), (255, 40 * i, 0)).save(tmp_path / "fruit" / "apple" / f"{i:04d}.png")
    assert run(*base) == 0
    err = capsys.readouterr().err
    assert "already done" not in err and "from the cache" not in err  # neither the result nor the features
    served = (only_dir(tmp_path / "out") / "fruit.predictions.csv").read_text()
    assert served == truth(tiny_model_dir, tmp_path, *base[2:-2])


def test_verify_data_identifies_files_by_content(tiny_model_dir, tmp_path):
    inc = fruit_task(tmp_path)
    write_class_folders(tmp_path / "fruit", FRUIT, per_class=2, seed=4)
    target = tmp_path / "fruit" / "apple" / "0000.png"
    out = tmp_path / "out"
    base = ["--model", f"local-dir:{tiny_model_dir}", "--tasks", "fruit", "--include-path", inc,
            "--data-root", tmp_path, "--output-dir", out, "--verify-data"]
    assert run(*base) == 0
    first = primary(only_dir(out) / "fruit.csv")["task_fingerprint"]
    stamp = target.stat()
    other = tmp_path / "fruit" / "banana" / "0000.png"
    target.write_bytes(other.read_bytes())  # same size (same generator), other content, old mtime restored
    os.utime(target, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert run(*base) == 0
    assert primary(only_dir(out) / "fruit.csv")["task_fingerprint"] != first


# ------------------------------------------------------------------------------------------------------------
# 2 and 10. counts, empty classes, symlinks


def test_count_status_and_empty_class_warning(tiny_model_dir, tmp_path, capsys):
    inc = fruit_task(tmp_path, expected=12)
    write_class_folders(tmp_path / "fruit", FRUIT[:3], per_class=3, seed=5)
    (tmp_path / "fruit" / "grape").mkdir()  # an empty class folder
    out = tmp_path / "out"
    base = ["--model", f"local-dir:{tiny_model_dir}", "--tasks", "fruit", "--include-path", inc,
            "--data-root", tmp_path, "--output-dir", out]
    assert run(*base) == 3
    err = capsys.readouterr().err
    assert "1 of 4 classes have no sample: 3 'grape'" in err
    assert "count_status=fewer" in err
    row = primary(only_dir(out) / "fruit.csv")
    assert (row["count_status"], row["expected_num_samples"], row["num_samples"]) == ("fewer", "12", "9")
    summary = rows(only_dir(out) / "summary.csv")[0]
    assert summary["count_status"] == "fewer" and summary["expected_num_samples"] == "12"
    assert run(*base) == 3  # the flag stands on a re-run that skips the task
    assert "count_status=fewer" in capsys.readouterr().err
    assert run(*base, "--limit", "4", "--no-resume") == 0  # a subset displaces the full result only so
    assert primary(only_dir(out) / "fruit.csv")["count_status"] == "limit"
    write_class_folders(tmp_path / "fruit", ["grape"], per_class=3, seed=6)
    assert run(*base) == 0
    assert primary(only_dir(out) / "fruit.csv")["count_status"] == "ok"


def test_dangling_symlinks_and_loops_are_counted_as_failures(tiny_model_dir, tmp_path):
    inc = fruit_task(tmp_path)
    write_class_folders(tmp_path / "fruit", FRUIT, per_class=2, seed=7)
    os.symlink(tmp_path / "nowhere.png", tmp_path / "fruit" / "apple" / "dangling.png")
    os.symlink(tmp_path / "fruit" / "banana" / "loop.png", tmp_path / "fruit" / "banana" / "loop.png")
    out = tmp_path / "out"
    assert run("--model", f"local-dir:{tiny_model_dir}", "--tasks", "fruit", "--include-path", inc,
               "--data-root", tmp_path, "--output-dir", out) == 3
    row = primary(only_dir(out) / "fruit.csv")
    assert (row["num_samples"], row["num_failed"]) == ("8", "2")
    errors = (only_dir(out) / "fruit.errors.txt").read_text()
    assert "dangling.png" in errors and "loop.png" in errors


# ------------------------------------------------------------------------------------------------------------
# 4. results never overwrite each other


def test_two_checkpoints_of_one_name_get_two_folders(tmp_path):
    from evalsuite.models.tiny import write_tiny_clip

    inc = fruit_task(tmp_path)
    write_class_folders(tmp_path / "fruit", FRUIT, per_class=2, seed=8)
    a, b = write_tiny_clip(tmp_path / "a" / "clip", seed=1), write_tiny_clip(tmp_path / "b" / "clip", seed=2)
    out = tmp_path / "out"
    for folder in (a, b):
        assert run("--model", f"local-dir:{folder}", "--tasks", "fruit", "--include-path", inc,
                   "--data-root", tmp_path, "--output-dir", out) == 0
    folders = sorted(p.name for p in out.iterdir())
    assert len(folders) == 2 and all(name.startswith("local-dir_clip-") for name in folders)


def test_a_prompt_change_keeps_the_earlier_result_in_history(tiny_model_dir, tmp_path):
    inc = fruit_task(tmp_path)
    write_class_folders(tmp_path / "fruit", FRUIT, per_class=2, seed=9)
    write_class_folders(tmp_path / "fruit2", FRUIT, per_class=2, seed=9)
    write_include_task(inc, "fruit2", FRUIT, metrics=("acc1", "acc5"))
    out = tmp_path / "out"
    base = ["--model", f"local-dir:{tiny_model_dir}", "--include-path", inc, "--data-root", tmp_path,
            "--output-dir", out]
    assert run(*base, "--tasks", "fruit,fruit2") == 0
    folder = only_dir(out)
    earlier = (folder / "fruit.csv").read_text()
    templates = inc / "prompts" / "templates" / "fruit.yaml"
    templates.write_text(templates.read_text().replace("a photo of a {c}.", "a blurry photo of a {c}."))
    assert run(*base, "--tasks", "fruit") == 0
    moved = list((folder / "history").glob("fruit.*.csv"))
    assert [p.read_text() for p in moved if not p.name.endswith(".predictions.csv")] == [earlier]
    assert any(p.name.endswith(".predictions.csv") for p in moved)
    manifest = json.loads((folder / "run.json").read_text())
    assert manifest["history"]["fruit"].startswith(str(folder / "history" / "fruit."))
    # summary.csv of the second run still lists fruit2, made by the first run with the same model
    assert [r["task"] for r in rows(folder / "summary.csv")] == ["fruit", "fruit2"]


# ------------------------------------------------------------------------------------------------------------
# 5 and 8. protocol and prompts


@pytest.mark.parametrize("template", ["a photo of a {c!r}.", "a photo of a {c:s}."])
def test_templates_with_conversions_are_filled(template):
    from evalsuite.catalog import Catalog
    from evalsuite.prompts import load_prompt_bank

    spec = Catalog.load().tasks["cifar10"]
    bank = load_prompt_bank(spec)
    filled = type(bank)(bank.classnames, [template], bank.keys).prompts()
    assert filled[0] == [template.format(c="airplane")] and "{" not in filled[0][0]


def test_protocol_records_decoder_precision_and_shadowed_prompts(tiny_model_dir, tmp_path, cifar_like_root):
    inc = tmp_path / "inc"
    (inc / "prompts" / "templates").mkdir(parents=True)
    (inc / "prompts" / "templates" / "cifar10.yaml").write_text("source: test\ntemplates: ['a {c}.']\n")
    out = tmp_path / "out"
    run("--model", f"local-dir:{tiny_model_dir}", "--tasks", "cifar10", "--data-root", cifar_like_root,
        "--include-path", inc, "--output-dir", out, "--decoder", "pil")
    protocol = primary(only_dir(out) / "cifar10.csv")["protocol"]
    assert protocol == "decoder=pil;precision=fp32;prompts=include-path;transform=shortest"


# ------------------------------------------------------------------------------------------------------------
# 9. non-finite features


def test_nan_weights_fail_with_the_tower_and_precision_named(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from evalsuite.models.tiny import write_tiny_clip

    folder = write_tiny_clip(tmp_path / "nan-clip")
    weights = load_file(folder / "open_clip_model.safetensors")
    weights = {k: v.clone().fill_(float("nan")) if v.is_floating_point() else v for k, v in weights.items()}
    save_file(weights, folder / "open_clip_model.safetensors")
    inc = fruit_task(tmp_path)
    write_class_folders(tmp_path / "fruit", FRUIT, per_class=2, seed=10)
    code = run("--model", f"local-dir:{folder}", "--tasks", "fruit", "--include-path", inc,
               "--data-root", tmp_path, "--output-dir", tmp_path / "out")
    err = capsys.readouterr().err
    assert code == 3
    assert "NaN/inf features" in err and "precision fp32" in err and "tower" in err
    assert "Traceback" not in err
    assert not list((tmp_path / "out").rglob("fruit.csv"))


# ------------------------------------------------------------------------------------------------------------
# 11 and 12. file modes, exit codes


def test_result_files_follow_the_umask(tiny_model_dir, tmp_path):
    inc = fruit_task(tmp_path)
    write_class_folders(tmp_path / "fruit", FRUIT, per_class=2, seed=11)
    old = os.umask(0o022)
    try:
        import importlib

        import evalsuite.atomic

        importlib.reload(evalsuite.atomic)  # reads the umask at import
        assert run("--model", f"local-dir:{tiny_model_dir}", "--tasks", "fruit", "--include-path", inc,
                   "--data-root", tmp_path, "--output-dir", tmp_path / "out") == 0
    finally:
        os.umask(old)
        importlib.reload(evalsuite.atomic)
    for path in only_dir(tmp_path / "out").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_missing_data_exits_2_and_other_tasks_still_run(tiny_model_dir, tmp_path, capsys):
    inc = fruit_task(tmp_path)
    write_class_folders(tmp_path / "fruit", FRUIT, per_class=2, seed=12)
    code = run("--model", f"local-dir:{tiny_model_dir}", "--tasks", "fruit,cifar10", "--include-path", inc,
               "--data-root", tmp_path, "--output-dir", tmp_path / "out")
    assert code == 2
    assert (only_dir(tmp_path / "out") / "fruit.csv").is_file()
    assert "data not found" in capsys.readouterr().err
