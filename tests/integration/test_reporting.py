"""Reporting from task CSVs alone: reference table conversion, aggregate, check (pass / breach / partial /
protocol mismatch / nothing comparable), export, plots, and per-sample predictions with bootstrap intervals."""

import csv
from pathlib import Path

import pytest

from evalsuite.catalog import Catalog
from evalsuite.cli import main
from evalsuite.reference import convert_paper_numbers, load_reference, reference_path, rows_to_csv, select_report
from evalsuite.results import TASK_COLUMNS, count_status, format_protocol, write_task_csv
from helpers import REPO, shared

CATALOG = Catalog.load()
REPORT = "evaclip18b_paper_2402.04252v1"


def write_synthetic_run(folder: Path, model: str, report: str = REPORT, nudge: dict | None = None,
                        partial: set = frozenset(), transform: str | None = None, counts: dict | None = None,
                        protocol: dict | None = None) -> Path:
    """Task CSVs holding the reference's own values for ``model`` (as fractions), under the reference's protocol
    (retrieval squashed, as a run always does), every column as a run writes it. ``counts`` {task: num_samples}
    gives a task another sample count than its YAML's; ``protocol`` {task: {key: value or None}} changes (None:
    drops) keys of a task's protocol cell."""
    refs = [r for r in select_report(load_reference(), report) if r.model == model and not r.is_suite]
    by_task: dict[str, dict[str, float]] = {}
    protocols: dict[str, dict] = {}
    for r in refs:
        by_task.setdefault(r.task, {})[r.metric] = r.value / 100
        retrieval = CATALOG.tasks[r.task].type == "zeroshot_retrieval"
        protocols[r.task] = {"transform": "squash" if retrieval else transform or r.transform,
                             "decoder": r.decoder, "precision": r.precision,
                             **({"frame_rule": r.frame_rule} if r.frame_rule else {})}
    folder.mkdir(parents=True, exist_ok=True)
    for task, metrics in by_task.items():
        spec = CATALOG.tasks[task]
        if spec.primary_metric == "mean_recall":
            metrics["mean_recall"] = sum(metrics.values()) / len(metrics)
        for name, delta in (nudge or {}).get(task, {}).items():
            metrics[name] += delta / 100
        cell = {k: v for k, v in (protocols[task] | (protocol or {}).get(task, {})).items() if v is not None}
        expected, expected_texts = spec.expected_num_samples, spec.expected_num_texts
        num_samples = (counts or {}).get(task, expected)
        num_texts = expected_texts if spec.type == "zeroshot_retrieval" else None
        rows = [{c: "" for c in TASK_COLUMNS} | {
            "model": model, "model_fingerprint": "f" * 16, "adapter": "eva_native", "weights": "file:x", "task": task,
            "task_version": spec.version, "task_fingerprint": "t" * 16, "transform": cell.get("transform", "squash"),
            "protocol": format_protocol(cell), "metric": m, "value": v, "is_primary": m == spec.primary_metric,
            "num_samples": num_samples, "num_texts": num_texts, "num_failed": 0,
            "expected_num_samples": expected, "expected_num_texts": expected_texts,
            "count_status": count_status(num_samples, expected, task in partial, num_texts, expected_texts),
            "partial": task in partial, "seconds": 1.0, "images_per_second": 1.0} for m, v in metrics.items()]
        write_task_csv(folder / f"{task}.csv", rows)
    return folder


def check(folder, *extra) -> int:
    return main(["check", str(folder), "--reference", REPORT, *extra])


def test_check_passes_on_the_papers_own_values(tmp_path, capsys):
    run = write_synthetic_run(tmp_path / "EVA-CLIP-18B", "EVA-CLIP-18B")
    assert check(run) == 0
    out = capsys.readouterr().out
    assert "BREACH" not in out and "REFUSED" not in out
    assert "suite:eva_cls27" in out and "suite:eva_retrieval" in out and "suite:eva_video" in out
    compared = [line for line in out.splitlines() if line.startswith("ok")]
    assert len(compared) == 27 + 4 + 12 + 4  # every task value and the four suite averages


def test_check_names_a_value_beyond_tolerance(tmp_path, capsys):
    run = write_synthetic_run(tmp_path / "m", "EVA-CLIP-18B", nudge={"dtd": {"acc1": 0.6}})
    assert check(run) == 4
    breaches = [line for line in capsys.readouterr().out.splitlines() if line.startswith("BREACH")]
    assert len(breaches) == 1 and "dtd acc1" in breaches[0]
    assert check(run, "--tolerance", "1.0") == 0


def test_check_refuses_partial_results(tmp_path, capsys):
    run = write_synthetic_run(tmp_path / "m", "EVA-CLIP-18B", partial={"cifar10"})
    assert check(run) == 2
    out = capsys.readouterr().out
    assert "REFUSED EVA-CLIP-18B cifar10 acc1" in out and "partial" in out


def test_check_refuses_another_protocol(tmp_path, capsys):
    run = write_synthetic_run(tmp_path / "m", "EVA-CLIP-18B", transform="shortest")
    assert check(run) == 2
    assert "rerun with --transform best-of-both" in capsys.readouterr().out


def test_check_with_nothing_comparable(tmp_path, capsys):
    run = write_synthetic_run(tmp_path / "m", "EVA-CLIP-18B")
    assert check(run, "--as-model", "EVA02-CLIP-B-16") == 2  # not in the 18B paper
    assert "nothing comparable" in capsys.readouterr().out


def test_check_require_all_fails_on_a_missing_result(tmp_path, capsys):
    """By default check counts the reference values a run lacks; with --require-all a task that failed (no CSV)
    fails the check, each named with the suites it leaves without a mean."""
    run = write_synthetic_run(tmp_path / "m", "EVA-CLIP-18B")
    (run / "dtd.csv").unlink()
    assert check(run) == 0
    assert "2 reference values without a result" in capsys.readouterr().out
    assert check(run, "--require-all") == 2
    captured = capsys.readouterr()
    missing = [line for line in captured.out.splitlines() if line.startswith("MISSING")]
    assert missing[0] == f"MISSING EVA-CLIP-18B dtd acc1: no result in {run}"
    assert any("suite:eva_cls27 mean_primary (no result for dtd)" in line for line in missing)
    assert "reference value(s) without a result" in captured.err and "--require-all" in captured.err
    assert check(write_synthetic_run(tmp_path / "full", "EVA-CLIP-18B"), "--require-all") == 0
    nudged = write_synthetic_run(tmp_path / "worse", "EVA-CLIP-18B", nudge={"mnist": {"acc1": -2}})
    (nudged / "dtd.csv").unlink()
    assert check(nudged, "--require-all") == 4  # a breach still wins
    capsys.readouterr()


def test_aggregate_rebuilds_tables_and_prints_deltas(tmp_path, capsys):
    run = write_synthetic_run(tmp_path / "runs" / "EVA-CLIP-18B", "EVA-CLIP-18B", nudge={"imagenet1k": {"acc1": -1}})
    assert main(["aggregate", str(tmp_path / "runs"), "--reference", REPORT]) == 0
    out = capsys.readouterr().out
    header, _, row = out.splitlines()[:3]
    assert header.split(" | ")[1:4] == ["imagenet1k", "imagenetv2", "imagenet_a"] and "avg27" in header
    assert "82.8 (83.8, -1.0)" in row
    assert header.rstrip(" |").endswith("MR")
    suites = {r["suite"]: float(r["value"]) for r in csv.DictReader((run / "suites.csv").open())}
    assert suites["eva_retrieval"] == pytest.approx(0.878, abs=0.0005)
    assert main(["aggregate", str(run), "--format", "csv", "--out", str(tmp_path / "t.csv")]) == 0
    assert (tmp_path / "t.csv").read_text().startswith("model,imagenet1k,")


def test_export_leaderboard_27avg_is_the_mean_of_27_columns(tmp_path):
    a = write_synthetic_run(tmp_path / "a" / "EVA-CLIP-18B", "EVA-CLIP-18B")
    b = write_synthetic_run(tmp_path / "b" / "EVA-CLIP-8B", "EVA-CLIP-8B", nudge={"mnist": {"acc1": -3}})
    out = tmp_path / "lb.csv"
    assert main(["export", "--runs", str(a.parent), str(b.parent), "--out", str(out), "--plot",
                 str(tmp_path / "scaling.png")]) == 0
    rows = list(csv.DictReader(out.open()))
    header = list(rows[0])
    assert header[:7] == ["model", "run", "params_millions", "eva_cls27", "imagenet_variants", "eva_video",
                          "eva_retrieval"]
    assert header[7:34] == CATALOG.suite_members("eva_cls27")
    for row in rows:
        mean27 = sum(float(row[t]) for t in CATALOG.suite_members("eva_cls27")) / 27
        assert float(row["eva_cls27"]) == pytest.approx(mean27, abs=0.01)
    assert (tmp_path / "lb_long.csv").is_file() and (tmp_path / "scaling.png").stat().st_size > 1000


def test_aggregate_plot(tmp_path):
    run = write_synthetic_run(tmp_path / "EVA-CLIP-18B", "EVA-CLIP-18B")
    assert main(["aggregate", str(run), "--reference", REPORT, "--plot", str(tmp_path / "bars.png")]) == 0
    assert (tmp_path / "bars.png").stat().st_size > 1000


def test_reference_table_matches_paper_numbers_yaml():
    import yaml

    source = shared("..") / "reference" / "paper_numbers.yaml"
    if not source.is_file():
        pytest.skip("paper_numbers.yaml not available")
    data = yaml.safe_load(source.read_text())
    rows = convert_paper_numbers(data)
    assert rows_to_csv(rows) == reference_path().read_text(), "regenerate: python -m evalsuite.reference ..."
    # spot checks straight from the YAML
    r18 = data["models"]["EVA-CLIP-18B"]["reports"][REPORT]
    ours = {(r.task, r.metric): r for r in rows if r.model == "EVA-CLIP-18B" and r.report == REPORT}
    assert ours[("imagenet1k", "acc1")].value == r18["image_classification"]["imagenet1k"]["acc1"]
    assert ours[("stanford_cars", "acc1")].value == r18["image_classification"]["cars"]["acc1"]
    assert ours[("suite:eva_retrieval", "mean_primary")].value == r18["retrieval_MR"]
    assert ours[("imagenet1k", "acc1")].transform == "best-of-both"
    assert ours[("mscoco", "image_retrieval_recall@5")].transform == "squash"
    assert ours[("kinetics400", "mean_acc1_acc5")].frame_rule == "vissl"
    numeric = sum(1 for m in data["models"].values() for rep in (m.get("reports") or {}).values()
                  for sec in ("image_classification", "video_classification_1_middle_frame", "retrieval")
                  for metrics in rep.get(sec, {}).values() for v in metrics.values()
                  if isinstance(v, (int, float)) and not isinstance(v, bool))
    single_in1k = sum(1 for m in data["models"].values() for rep in (m.get("reports") or {}).values()
                      if isinstance(rep.get("imagenet1k"), (int, float)))
    assert sum(1 for r in rows if not r.is_suite) == numeric + single_in1k
    from evalsuite.models.card import all_cards

    assert {r.model for r in rows} <= set(all_cards())
    assert {r.task for r in rows if not r.is_suite} <= set(CATALOG.tasks)


def test_predictions_recompute_metrics_and_bootstrap_interval(tiny_model_dir, cifar_like_root, tmp_path):
    from evalsuite.bootstrap import read_classification_predictions
    from evalsuite.metrics import classification_metrics

    out = tmp_path / "out"
    assert main(["run", "--model", f"local-dir:{tiny_model_dir}", "--tasks", "cifar10", "--data-root",
                 str(cifar_like_root), "--output-dir", str(out), "--workers", "0", "--bootstrap", "200"]) == 3
    # exit 3: 40 stand-in images of CIFAR-10's 10,000 (count_status=fewer flags the run; its results are written)
    model_dir = next(out.iterdir())
    rows = {r["metric"]: r for r in csv.DictReader((model_dir / "cifar10.csv").open())}
    topk, targets = read_classification_predictions(model_dir / "cifar10.predictions.csv")
    again = classification_metrics(topk, targets, 10, ["acc1", "acc5", "mean_per_class_recall"])
    for metric, value in again.items():
        assert float(rows[metric]["value"]) == pytest.approx(value, abs=1e-12)
    low, high = float(rows["acc1"]["ci_low"]), float(rows["acc1"]["ci_high"])
    assert low <= float(rows["acc1"]["value"]) <= high and high - low > 0
    assert rows["acc5"]["ci_low"] == ""  # intervals for the primary metric only


def test_reference_csv_lives_in_results_reference():
    assert reference_path() == REPO / "results" / "reference" / "eva_clip_papers.csv"


def test_ci_template_runs_run_check_and_uploads():
    import yaml

    workflow = yaml.safe_load((REPO / "docs" / "ci" / "eva-clip-regression.yml").read_text())
    steps = workflow["jobs"]["evaluate"]["steps"]
    script = "\n".join(str(s.get("run", "")) for s in steps)
    assert "evalsuite run --model" in script and "--tasks all" in script and "evalsuite check" in script
    assert any(s.get("uses", "").startswith("actions/upload-artifact") for s in steps)
    assert "self-hosted" in workflow["jobs"]["evaluate"]["runs-on"]


HEADER = ("model,report,task,metric,value,tolerance_pp,transform,frame_rule,decoder,precision,not_reproducible,"
          "citation\n")


@pytest.mark.parametrize("body, message", [
    (b"EVA-CLIP-18B,mine,suite:eva_clss27,mean_primary,80,0.3,best-of-both,,pil,amp_fp16,,x\n",
     "names suite 'eva_clss27', which no suite file defines"),
    (b"EVA-CLIP-18B,mine,dtd,acc1,72.1,0.5,best-of-both,,pil,amp_fp16,,caf\xe9\n", "cannot be read as a reference"),
    (b"EVA-CLIP-18B,mine,dtd,acc1,72.1,0.5,best-of-both,,pil,amp_fp16,,x\n"
     b"EVA-CLIP-18B,mine,dtd,acc1,50.0,0.5,best-of-both,,pil,amp_fp16,,x\n", ":3: EVA-CLIP-18B mine dtd acc1 is also"),
])
def test_a_bad_reference_table_is_one_line_naming_it(tmp_path, capsys, body, message):
    run = write_synthetic_run(tmp_path / "EVA-CLIP-18B", "EVA-CLIP-18B")
    table = tmp_path / "ref.csv"
    table.write_bytes(HEADER.encode() + body)
    for argv in (["check", str(run)], ["aggregate", str(run)]):
        assert main([*argv, "--reference", "mine", "--reference-file", str(table)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_check_does_not_advise_a_transform_the_task_type_ignores(tmp_path, capsys):
    """Retrieval always squashes: 'rerun with --transform shortest' could never be followed."""
    run = write_synthetic_run(tmp_path / "EVA-CLIP-18B", "EVA-CLIP-18B")
    rows = {r["metric"]: float(r["value"]) for r in csv.DictReader((run / "flickr30k.csv").open())}
    table = tmp_path / "ref.csv"
    table.write_text(HEADER + f"EVA-CLIP-18B,mine,flickr30k,image_retrieval_recall@1,"
                              f"{100 * rows['image_retrieval_recall@1']:g},0.5,shortest,,pil,amp_fp16,,x\n")
    assert main(["check", str(run), "--reference", "mine", "--reference-file", str(table)]) == 2
    out = capsys.readouterr().out
    assert "always resizes by squash" in out and "--transform shortest" not in out
