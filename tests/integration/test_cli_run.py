"""The CLI end to end on generated images with a tiny random-init open_clip model."""

import csv
import json

from evalsuite.cli import main
from evalsuite.results import TASK_COLUMNS
from helpers import CIFAR10_CLASSES, FEWER_THAN_EXPECTED, write_class_folders, write_include_task


def run(*argv) -> int:
    return main(["run", *map(str, argv), "--workers", "0"])


def rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_run_writes_tidy_results_and_resumes(tiny_model_dir, cifar_like_root, tmp_path, caplog):
    out = tmp_path / "results"
    args = ["--model", f"local-dir:{tiny_model_dir}", "--tasks", "cifar10", "--data-root", cifar_like_root,
            "--output-dir", out]
    assert run(*args) == FEWER_THAN_EXPECTED
    model_dir = next(out.iterdir())
    task_rows = rows(model_dir / "cifar10.csv")
    assert list(task_rows[0]) == list(TASK_COLUMNS)
    assert [r["metric"] for r in task_rows] == ["acc1", "acc5", "mean_per_class_recall"]
    assert {r["num_samples"] for r in task_rows} == {"40"} and {r["num_failed"] for r in task_rows} == {"0"}
    assert {r["partial"] for r in task_rows} == {"false"}
    assert all(0.0 <= float(r["value"]) <= 1.0 for r in task_rows)
    summary = rows(model_dir / "summary.csv")
    assert summary[0]["task"] == "cifar10" and summary[0]["primary_metric"] == "acc1"
    manifest = json.loads((model_dir / "run.json").read_text())
    assert manifest["tasks"]["cifar10"]["prompt_digest"] and manifest["precision"] == "fp32"
    assert manifest["preprocess"]["resize_mode"] == "shortest"

    # same command again: skipped, file untouched
    before = (model_dir / "cifar10.csv").read_text()
    caplog.clear()
    assert run(*args) == FEWER_THAN_EXPECTED
    assert (model_dir / "cifar10.csv").read_text() == before
    # --no-resume re-evaluates: identical metrics (deterministic), new timestamp allowed
    assert run(*args, "--no-resume") == FEWER_THAN_EXPECTED
    again = rows(model_dir / "cifar10.csv")
    assert [r["value"] for r in again] == [r["value"] for r in task_rows]


def test_limit_marks_partial_and_uses_its_own_fingerprint(tiny_model_dir, cifar_like_root, tmp_path):
    out = tmp_path / "results"
    base = ["--model", f"local-dir:{tiny_model_dir}", "--tasks", "cifar10", "--data-root", cifar_like_root,
            "--output-dir", out]
    assert run(*base, "--limit", "15") == 0
    model_dir = next(out.iterdir())
    limited = rows(model_dir / "cifar10.csv")
    assert {r["partial"] for r in limited} == {"true"} and {r["num_samples"] for r in limited} == {"15"}
    # the full run is not satisfied by the partial result
    assert run(*base) == FEWER_THAN_EXPECTED
    full = rows(model_dir / "cifar10.csv")
    assert {r["partial"] for r in full} == {"false"} and {r["num_samples"] for r in full} == {"40"}
    assert full[0]["task_fingerprint"] != limited[0]["task_fingerprint"]


def test_a_limit_run_does_not_displace_a_full_result(tiny_model_dir, cifar_like_root, tmp_path, capsys):
    """A quick --limit check in the folder of a finished run keeps the full result on show (and in the suites);
    --no-resume still evaluates the subset, the full result going to history/."""
    out = tmp_path / "results"
    base = ["--model", f"local-dir:{tiny_model_dir}", "--tasks", "cifar10", "--data-root", cifar_like_root,
            "--output-dir", out]
    assert run(*base) == FEWER_THAN_EXPECTED
    model_dir = next(out.iterdir())
    before = (model_dir / "cifar10.csv").read_text()
    capsys.readouterr()
    assert run(*base, "--limit", "15") == FEWER_THAN_EXPECTED  # the full result's count is still flagged
    assert (model_dir / "cifar10.csv").read_text() == before and not (model_dir / "history").exists()
    assert "a full result of this model and task is already here" in capsys.readouterr().err
    assert run(*base, "--limit", "15", "--no-resume") == 0
    assert {r["num_samples"] for r in rows(model_dir / "cifar10.csv")} == {"15"}
    (moved,) = [p for p in (model_dir / "history").glob("cifar10.*.csv") if ".predictions" not in p.name]
    assert moved.read_text() == before


def test_unreadable_image_is_counted_listed_and_exits_3(tiny_model_dir, cifar_like_root, tmp_path, capsys):
    bad = cifar_like_root / "cifar10" / "cat" / "9999.png"
    bad.write_bytes(b"not an image at all")
    (cifar_like_root / "cifar10" / "dog" / "0000.png").write_bytes(
        (cifar_like_root / "cifar10" / "dog" / "0001.png").read_bytes()[:60])  # truncated PNG
    out = tmp_path / "results"
    code = run("--model", f"local-dir:{tiny_model_dir}", "--tasks", "cifar10", "--data-root", cifar_like_root,
               "--output-dir", out)
    err = capsys.readouterr().err
    assert code == 3
    assert err.strip().splitlines()[-1].startswith("evalsuite: error: flagged: cifar10")
    model_dir = next(out.iterdir())
    task_rows = rows(model_dir / "cifar10.csv")  # the results are still written
    assert {r["num_failed"] for r in task_rows} == {"2"} and {r["num_samples"] for r in task_rows} == {"39"}
    errors = (model_dir / "cifar10.errors.txt").read_text()
    assert "9999.png" in errors and "0000.png" in errors
    assert "unreadable sample" in err


def test_missing_data_fails_before_loading_the_model(tmp_path, capsys):
    code = run("--model", "demo-clip", "--tasks", "cifar10", "--data-root", tmp_path / "nowhere",
               "--output-dir", tmp_path / "out")
    err = capsys.readouterr().err
    assert code == 2  # missing data is bad input (README), not a task that failed while running
    assert "data not found" in err and "loading model" not in err


def test_class_index_follows_classnames_file_not_folder_order(tmp_path):
    """Folders named in a different alphabetical order must still map to the classnames file's indices."""
    from evalsuite.catalog import Catalog
    from evalsuite.tasks import build_task

    write_class_folders(tmp_path / "cifar10", CIFAR10_CLASSES, per_class=1)
    task = build_task(Catalog.load().tasks["cifar10"])
    samples = task.find_samples(task.source_context(tmp_path))
    by_folder = {p.split("/")[-2]: label for p, label in zip(samples.items, samples.labels)}
    assert by_folder == {name: i for i, name in enumerate(CIFAR10_CLASSES)}


def test_file_list_source(tmp_path, tiny_model_dir):

    write_class_folders(tmp_path / "imgs", ["cat", "dog"], per_class=2)
    (tmp_path / "tasks").mkdir()
    (tmp_path / "list.csv").write_text("path,label\nimgs/cat/0000.png,cat\nimgs/cat/0001.png,3\n"
                                       "imgs/dog/0000.png,dog\n")
    (tmp_path / "tasks" / "listed.yaml").write_text(
        "name: listed\ntype: classification\nversion: 1\nsource: {kind: file_list, args: {file: list.csv}}\n"
        "classnames: cifar10\ntemplates: cifar10\nnum_classes: 10\nmetrics: [acc1, acc5]\nprimary_metric: acc1\n")
    out = tmp_path / "out"
    assert run("--model", f"local-dir:{tiny_model_dir}", "--tasks", "listed", "--data-root", tmp_path,
               "--include-path", tmp_path, "--output-dir", out) == 0
    assert {r["num_samples"] for r in rows(next(out.iterdir()) / "listed.csv")} == {"3"}


def test_native_checkpoint_with_arch_config_end_to_end(tmp_path, cifar_like_root):
    """--model PATH.pt --arch CONFIG.json: adapter and weights source land in the CSV rows and run.json."""
    import torch
    from test_eva_native import random_native_state_dict, save_config, tiny_config

    cfg = tiny_config(image_size=28)
    ckpt = tmp_path / "my_eva.pt"
    torch.save({"state_dict": random_native_state_dict(cfg)}, ckpt)
    out = tmp_path / "out"
    assert run("--model", ckpt, "--arch", save_config(tmp_path, cfg), "--tasks", "cifar10",
               "--data-root", cifar_like_root, "--output-dir", out) == FEWER_THAN_EXPECTED
    (model_dir,) = out.iterdir()
    assert model_dir.name.startswith("my_eva-")  # a local checkpoint: its weights digest in the folder name
    task_rows = rows(model_dir / "cifar10.csv")
    assert {r["adapter"] for r in task_rows} == {"eva_native"}
    assert {r["weights"] for r in task_rows} == {f"file:{ckpt}"}
    manifest = json.loads((model_dir / "run.json").read_text())
    assert manifest["adapter"] == "eva_native" and manifest["weights"] == f"file:{ckpt}"


def test_other_data_is_never_taken_as_done(tiny_model_dir, cifar_like_root, tmp_path):
    """Same model and task, another data folder: evaluated again, not skipped."""
    other = tmp_path / "other"
    write_class_folders(other / "cifar10", CIFAR10_CLASSES, per_class=2, seed=9)
    out = tmp_path / "results"
    base = ["--model", f"local-dir:{tiny_model_dir}", "--tasks", "cifar10", "--output-dir", out]
    assert run(*base, "--data-root", cifar_like_root) == FEWER_THAN_EXPECTED
    model_dir = next(out.iterdir())
    assert {r["num_samples"] for r in rows(model_dir / "cifar10.csv")} == {"40"}
    assert run(*base, "--data-root", other) == FEWER_THAN_EXPECTED
    assert {r["num_samples"] for r in rows(model_dir / "cifar10.csv")} == {"20"}


def test_new_dataset_from_include_path_without_python(tmp_path, tiny_model_dir):
    """A dataset evalsuite has never seen: one task YAML, its two prompt files, a local folder of images."""
    write_class_folders(tmp_path / "data" / "fruit", ["apple", "pear", "plum"], per_class=3)
    inc = tmp_path / "inc"
    write_include_task(inc, "fruit", ["apple", "pear", "plum"], metrics=("acc1", "mean_per_class_recall"),
                       extra="expected_num_samples: 9\n")
    out = tmp_path / "out"
    assert main(["validate", "--tasks", "fruit", "--include-path", str(inc)]) == 0
    assert run("--model", f"local-dir:{tiny_model_dir}", "--tasks", "fruit", "--data-root", tmp_path / "data",
               "--include-path", inc, "--output-dir", out) == 0
    assert {r["num_samples"] for r in rows(next(out.iterdir()) / "fruit.csv")} == {"9"}


def test_an_output_dir_that_is_a_model_folder_is_warned_about(tmp_path, capsys):
    """--output-dir results/<model> put the run in results/<model>/<model>/, where reports on results/ never look."""
    out = tmp_path / "results"
    assert run("--model", "demo-clip", "--tasks", "demo_retrieval", "--output-dir", out) == 0
    capsys.readouterr()
    assert run("--model", "demo-clip", "--tasks", "demo_retrieval", "--output-dir", out / "demo-clip") == 0
    err = capsys.readouterr().err
    assert f"--output-dir {out / 'demo-clip'} holds task results itself (demo_retrieval.csv)" in err
