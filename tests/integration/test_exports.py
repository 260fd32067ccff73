"""`evalsuite export --format csv|json|model-index`: each export parsed back (csv / json.loads / yaml.safe_load)
gives the task CSVs' values, counts, protocol and intervals; partial and count-mismatched results are marked in
every one."""

import csv
import json
from pathlib import Path

import pytest
import yaml
from test_reporting import CATALOG, write_synthetic_run

from evalsuite.cli import main
from evalsuite.exports import metric_type
from evalsuite.results import TASK_COLUMNS, parse_protocol, read_task_csv, write_task_csv

MODEL = "EVA-CLIP-18B"
INTERVAL = {"imagenet1k": (0.83, 0.845)}  # a primary metric's interval written into the synthetic run


@pytest.fixture
def eva_run(tmp_path) -> Path:
    """The 18B paper's numbers as a run, ImageNet on 1,000 images (fewer), CIFAR-10 a --limit run, ImageNet with a
    bootstrap interval."""
    run = write_synthetic_run(tmp_path / "runs" / MODEL, MODEL, counts={"imagenet1k": 1000}, partial={"cifar10"})
    rows = read_task_csv(run / "imagenet1k.csv")
    for row in rows:
        if row["is_primary"]:
            row["ci_low"], row["ci_high"] = INTERVAL["imagenet1k"]
    write_task_csv(run / "imagenet1k.csv", rows)
    return run


def _task_rows(run: Path) -> dict[str, list[dict]]:
    return {p.stem: read_task_csv(p) for p in run.glob("*.csv") if ".predictions" not in p.name
            and p.stem not in ("summary", "suites")}


def _primary(rows: list[dict]) -> dict:
    return next(r for r in rows if r["is_primary"])


def test_display_leaderboard_keeps_counts_partial_and_intervals(eva_run, tmp_path):
    out = tmp_path / "lb.csv"
    assert main(["export", "--runs", str(eva_run.parent), "--out", str(out)]) == 0
    (row,) = csv.DictReader(out.open())
    assert row["partial"] == "true"
    assert row["imagenet1k num_samples"] == "1000" and row["imagenet1k count_status"] == "fewer"
    assert row["cifar10 count_status"] == "limit" and row["dtd count_status"] == "ok"
    assert row["imagenet1k ci_low"] == "83.00" and row["imagenet1k ci_high"] == "84.50"
    assert row["dtd ci_low"] == "" and row["dtd num_samples"] == str(CATALOG.tasks["dtd"].expected_num_samples)
    assert row["eva_cls27 count_status"] == "fewer:imagenet1k" and row["eva_video count_status"] == "ok"
    assert row["flags"].split() == ["imagenet1k:fewer(1000/50000)", "cifar10:limit(10000/10000)"]
    long_rows = {r["column"]: r for r in csv.DictReader((tmp_path / "lb_long.csv").open())}
    assert float(long_rows["imagenet1k"]["ci_low"]) == 0.83 and long_rows["dtd"]["ci_high"] == ""
    # a run without every task of a suite leaves the suite's cells empty
    write_synthetic_run(tmp_path / "other" / "EVA-CLIP-8B", "EVA-CLIP-8B")
    (tmp_path / "other" / "EVA-CLIP-8B" / "mnist.csv").unlink()
    assert main(["export", "--runs", str(eva_run.parent), str(tmp_path / "other"), "--out", str(out)]) == 0
    rows = {r["model"]: r for r in csv.DictReader(out.open())}
    assert rows["EVA-CLIP-8B"]["eva_cls27"] == "" and rows["EVA-CLIP-8B"]["eva_cls27 count_status"] == ""
    assert rows["EVA-CLIP-8B"]["partial"] == "false" and rows["EVA-CLIP-8B"]["mnist num_samples"] == ""


def test_json_export_parses_back_to_the_csv_values(eva_run, tmp_path):
    out = tmp_path / "results.json"
    assert main(["export", "--runs", str(eva_run.parent), "--format", "json", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["format"] == "evalsuite-results" and data["format_version"] == 1
    (model,) = data["models"]
    assert model["model"] == MODEL and model["run"] == str(eva_run) and model["params_millions"] > 10_000
    tasks = _task_rows(eva_run)
    assert set(model["tasks"]) == set(tasks)
    for task, rows in tasks.items():
        exported, primary = model["tasks"][task], _primary(rows)
        assert exported["metrics"] == {r["metric"]: r["value"] for r in rows}  # fractions, exactly
        assert exported["primary_metric"] == primary["metric"] and exported["value"] == primary["value"]
        assert exported["protocol"] == parse_protocol(primary["protocol"])
        assert exported["protocol_text"] == primary["protocol"]
        for key in ("count_status", "num_samples", "num_texts", "expected_num_samples", "expected_num_texts",
                    "num_failed", "task_fingerprint", "model_fingerprint"):
            assert exported[key] == primary[key], (task, key)
    assert model["tasks"]["imagenet1k"]["intervals"] == {"acc1": {"low": 0.83, "high": 0.845, "level": 0.95,
                                                                  "method": "percentile bootstrap"}}
    assert model["tasks"]["dtd"]["intervals"] == {}
    assert model["tasks"]["imagenet1k"]["flag"] == "imagenet1k:fewer(1000/50000)"
    assert model["tasks"]["cifar10"]["partial"] is True and model["tasks"]["cifar10"]["count_status"] == "limit"
    assert model["tasks"]["dtd"]["flag"] is None and model["tasks"]["dtd"]["partial"] is False
    assert model["tasks"]["mscoco"]["num_texts"] == 25010
    # suites: every suite the run holds whole, as the long leaderboard CSV (full precision) has them
    assert main(["export", "--runs", str(eva_run.parent), "--out", str(tmp_path / "lb.csv")]) == 0
    long_rows = {r["column"]: r for r in csv.DictReader((tmp_path / "lb_long.csv").open())}
    for suite in ("eva_cls27", "imagenet_variants", "eva_video", "eva_retrieval"):
        exported = model["suites"][suite]
        assert exported["value"] == float(long_rows[f"suite:{suite}"]["value"])
        assert exported["members"] == CATALOG.suite_members(suite)
        assert exported["count_status"] == long_rows[f"suite:{suite}"]["count_status"]
    assert model["suites"]["eva_cls27"]["partial"] is True and model["suites"]["eva_video"]["partial"] is False
    assert model["suites"]["eva_cls27"]["flags"] == ["imagenet1k:fewer(1000/50000)", "cifar10:limit(10000/10000)"]
    assert set(model["flags"]) == {"imagenet1k:fewer(1000/50000)", "cifar10:limit(10000/10000)"}


def test_model_index_export_parses_back_to_the_csv_values(eva_run, tmp_path):
    out = tmp_path / "model-index.yaml"
    assert main(["export", "--runs", str(eva_run.parent), "--format", "model-index", "--out", str(out)]) == 0
    card = yaml.safe_load(out.read_text())
    (entry,) = card["model-index"]
    assert entry["name"] == MODEL
    tasks = _task_rows(eva_run)
    by_task = {r["dataset"]["args"]["evalsuite_task"]: r for r in entry["results"] if "evalsuite_task"
               in r["dataset"]["args"]}
    assert set(by_task) == set(tasks)
    assert main(["export", "--runs", str(eva_run.parent), "--out", str(tmp_path / "lb.csv")]) == 0
    (display,) = csv.DictReader((tmp_path / "lb.csv").open())
    for task, rows in tasks.items():
        result, primary = by_task[task], _primary(rows)
        metrics = result["metrics"]
        assert metrics[0]["type"] == metric_type(primary["metric"])  # the primary metric first
        assert metrics[0]["value"] == float(display[task])  # the display leaderboard's number
        for m, r in zip(metrics, [primary] + [r for r in rows if not r["is_primary"]]):
            assert m["type"] == metric_type(r["metric"]) and m["value"] == pytest.approx(100 * r["value"], abs=0.005)
            assert m["verified"] is False and isinstance(m["name"], str)
        expected_type = {"classification": "zero-shot-image-classification", "video_middle_frame":
                         "video-classification", "zeroshot_retrieval": "zero-shot-image-retrieval"}
        assert result["task"]["type"] == expected_type[CATALOG.tasks[task].type]
        assert result["dataset"]["args"]["num_samples"] == primary["num_samples"]
        assert result["dataset"]["args"]["protocol"] == primary["protocol"]
    # the task's first hub copy in source order
    assert by_task["mscoco"]["dataset"]["type"] == "clip-benchmark/wds_mscoco_captions"
    assert by_task["stanford_cars"]["dataset"]["type"] == "clip-benchmark/wds_cars"
    assert by_task["dtd"]["dataset"]["type"] == "clip-benchmark/wds_vtab-dtd"
    assert by_task["mscoco"]["metrics"][0]["type"] == "mean_recall"
    assert by_task["imagenet1k"]["metrics"][0]["type"] == "accuracy"
    # the marks: a card never shows a subset as the full set
    assert "[1000 samples, the protocol's set has 50000: count fewer]" in by_task["imagenet1k"]["dataset"]["name"]
    assert by_task["imagenet1k"]["dataset"]["args"]["count_status"] == "fewer"
    assert "[partial: 10000 of 10000 samples, --limit]" in by_task["cifar10"]["dataset"]["name"]
    assert by_task["cifar10"]["dataset"]["args"]["count_status"] == "limit"
    assert "[" not in by_task["dtd"]["dataset"]["name"]
    suites = {r["dataset"]["args"]["evalsuite_suite"]: r for r in entry["results"]
              if "evalsuite_suite" in r["dataset"]["args"]}
    assert set(suites) == {"eva_cls27", "imagenet_variants", "eva_video", "eva_retrieval"}
    assert suites["eva_cls27"]["metrics"][0]["value"] == float(display["eva_cls27"])
    assert suites["eva_cls27"]["task"]["type"] == "zero-shot-image-classification"
    assert "members not on the protocol's full sample sets" in suites["eva_cls27"]["dataset"]["name"]
    assert "members not" not in suites["eva_video"]["dataset"]["name"]


def test_model_index_is_read_by_huggingface_hub(eva_run, tmp_path):
    repocard_data = pytest.importorskip("huggingface_hub.repocard_data")
    out = tmp_path / "model-index.yaml"
    assert main(["export", "--runs", str(eva_run), "--format", "model-index", "--out", str(out)]) == 0
    name, results = repocard_data.model_index_to_eval_results(yaml.safe_load(out.read_text())["model-index"])
    assert name == MODEL
    top1 = next(r for r in results if r.dataset_type == "clip-benchmark/wds_imagenet1k" and r.metric_type == "accuracy")
    assert top1.metric_value == pytest.approx(83.8) and top1.task_type == "zero-shot-image-classification"
    assert len({r.dataset_type for r in results}) == len(_task_rows(eva_run)) + 4


def test_exports_of_user_defined_tasks_and_default_paths(tmp_path, monkeypatch, capsys):
    run = tmp_path / "runs" / "mine"
    run.mkdir(parents=True)
    write_task_csv(run / "toy.csv", [{c: "" for c in TASK_COLUMNS} | {
        "model": "mine", "model_fingerprint": "f" * 16, "adapter": "open_clip", "weights": "file:x", "task": "toy",
        "task_version": 1, "task_fingerprint": "t" * 16, "transform": "shortest",
        "protocol": "decoder=pil;precision=fp32;transform=shortest", "metric": "acc1", "value": 0.74,
        "is_primary": True, "num_samples": 50, "num_failed": 0, "count_status": "unchecked", "partial": False,
        "seconds": 1.0, "images_per_second": 1.0}])
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--runs", str(run), "--format", "json"]) == 0
    data = json.loads((tmp_path / "results" / "leaderboard.json").read_text())
    assert data["models"][0]["tasks"]["toy"]["value"] == 0.74 and data["models"][0]["suites"] == {}
    assert data["models"][0]["tasks"]["toy"]["count_status"] == "unchecked"
    assert main(["export", "--runs", str(run), "--format", "model-index"]) == 0
    text = (tmp_path / "results" / "model-index.yaml").read_text()
    assert text.startswith("# Hugging Face model card metadata")
    (result,) = yaml.safe_load(text)["model-index"][0]["results"]
    assert result["dataset"] == {"name": "toy", "type": "toy", "args": {
        "evalsuite_task": "toy", "num_samples": 50, "expected_num_samples": None, "count_status": "unchecked",
        "protocol": "decoder=pil;precision=fp32;transform=shortest"}}
    assert result["task"]["type"] == "zero-shot-image-classification" and result["metrics"][0]["value"] == 74.0
    assert main(["export", "--runs", str(run)]) == 0  # csv stays the default
    assert (tmp_path / "results" / "leaderboard.csv").is_file()
    assert (tmp_path / "results" / "leaderboard_long.csv").is_file()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["export", "--runs", str(run), "--format", "xml"])


def test_an_export_written_into_the_results_folder_leaves_it_readable(eva_run, tmp_path, monkeypatch, capsys, caplog):
    """`export --out results/leaderboard.csv` (the default path) puts CSVs beside the model folders; the next export,
    aggregate, check or report over that folder must still find the runs, not take the folder for a model's."""
    results = eva_run.parent
    for fmt in ("csv", "json"):
        assert main(["export", "--runs", str(results), "--format", fmt, "--out", str(results / f"lb.{fmt}")]) == 0
    assert main(["export", "--runs", str(results), "--out", str(results / "leaderboard.csv")]) == 0
    assert main(["export", "--runs", str(results), "--out", str(tmp_path / "again.csv")]) == 0
    (row,) = csv.DictReader((tmp_path / "again.csv").open())
    assert row["model"] == MODEL and row["run"] == str(eva_run)
    caplog.clear()
    assert main(["aggregate", str(results)]) == 0
    assert "ignored" not in caplog.text  # an export's own files are no stray task results
    assert main(["report", str(results), "--out", str(tmp_path / "site")]) == 0
    capsys.readouterr()


def test_the_leaderboard_says_how_each_number_was_made(tmp_path):
    """Two precisions of one model are two leaderboard rows; the export must tell them apart by more than a path."""
    fp32 = write_synthetic_run(tmp_path / "fp32" / MODEL, MODEL)
    bf16 = write_synthetic_run(tmp_path / "bf16" / MODEL, MODEL,
                               protocol={t: {"precision": "bf16"} for t in CATALOG.tasks})
    for path in bf16.glob("*.csv"):
        rows = read_task_csv(path)
        write_task_csv(path, [r | {"model_fingerprint": "b" * 16} for r in rows])
    out = tmp_path / "lb.csv"
    assert main(["export", "--runs", str(fp32.parent), str(bf16.parent), "--out", str(out)]) == 0
    rows = {r["run"]: r for r in csv.DictReader(out.open())}
    assert rows[str(fp32)]["precision"] == "amp_fp16" and rows[str(bf16)]["precision"] == "bf16"
    assert rows[str(fp32)]["model_fingerprint"] == "f" * 16 and rows[str(bf16)]["model_fingerprint"] == "b" * 16
    assert rows[str(fp32)]["decoder"] == "pil"
    long_rows = [r for r in csv.DictReader((tmp_path / "lb_long.csv").open()) if r["column"] == "dtd"]
    assert {parse_protocol(r["protocol"])["precision"] for r in long_rows} == {"amp_fp16", "bf16"}
    assert {r["model_fingerprint"] for r in long_rows} == {"f" * 16, "b" * 16}
    suite = next(r for r in csv.DictReader((tmp_path / "lb_long.csv").open())
                 if r["column"] == "suite:eva_cls27" and r["run"] == str(bf16))
    assert suite["model_fingerprint"] == "b" * 16 and "precision=bf16" in suite["protocol"]


@pytest.mark.parametrize("command", ["export", "aggregate", "report", "compare"])
def test_an_output_inside_a_results_folder_it_reads_is_refused(eva_run, tmp_path, capsys, command):
    """`export --out RUN/dtd.csv` replaced the task CSV by the leaderboard: the result was lost, no history/ copy."""
    target = eva_run / "dtd.csv"
    before = target.read_text()
    argv = {"export": ["export", "--runs", str(eva_run.parent), "--out", str(target)],
            "aggregate": ["aggregate", str(eva_run), "--out", str(target)],
            "report": ["report", str(eva_run), "--out", str(eva_run / "site")],
            "compare": ["compare", str(eva_run), str(eva_run), "--out", str(target)]}[command]
    assert main(argv) == 2
    assert "a results folder this command reads" in capsys.readouterr().err
    assert target.read_text() == before and not (eva_run / "site").exists()


@pytest.mark.parametrize("name", ["table.txt", "plots"])
def test_a_plot_path_matplotlib_cannot_write_is_a_flag_error(eva_run, tmp_path, capsys, name):
    (tmp_path / "plots").mkdir()
    with pytest.raises(SystemExit) as exit_:
        main(["export", "--runs", str(eva_run.parent), "--out", str(tmp_path / "lb.csv"), "--plot",
              str(tmp_path / name)])
    assert exit_.value.code == 2 and "--plot" in capsys.readouterr().err
    assert not (tmp_path / "lb.csv").exists() and not (tmp_path / "plots.png").exists()


def test_results_nested_in_a_model_folder_are_named_not_passed_over(eva_run, capsys):
    """run --output-dir results/<model> writes results/<model>/<model>/; aggregate on results/ read only the outer
    results and said nothing of the inner ones."""
    import shutil

    inner = eva_run / "EVA-CLIP-8B"
    inner.mkdir()
    shutil.copy(eva_run / "dtd.csv", inner / "dtd.csv")
    assert main(["aggregate", str(eva_run.parent)]) == 0
    err = capsys.readouterr().err
    assert f"{inner}" in err and "are not read" in err
