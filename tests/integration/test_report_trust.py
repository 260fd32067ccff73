"""Reports never show or pass a number as the paper's when it is not (issue 14, report side): sample counts that
differ from the protocol's are marked and refused, results of another protocol are refused with the fix, result
files are validated when read back, only the files a run wrote are read, and check's exit code lets CI gate."""

import csv

import pytest
from test_reporting import CATALOG, REPORT, check, write_synthetic_run

from evalsuite.cli import main
from evalsuite.reference import load_reference, reference_path
from evalsuite.results import TASK_COLUMNS

MODEL = "EVA-CLIP-18B"
DRAFT = "evaclip_paper_draft_2303.15389"


def lines(out: str, prefix: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(prefix)]


# ---------------------------------------------------------------------------------------------------------------
# defect 2: sample counts


def test_aggregate_marks_counts_that_differ_and_partial_results(tmp_path, capsys):
    run = write_synthetic_run(tmp_path / MODEL, MODEL, counts={"imagenet1k": 1000}, partial={"cifar10"})
    assert main(["aggregate", str(run)]) == 0
    out = capsys.readouterr().out
    header, _, row = out.splitlines()[:3]
    cells = dict(zip(header.strip("| ").split(" | "), row.strip("| ").split(" | ")))
    assert cells["imagenet1k"] == "83.8†" and cells["cifar10"].endswith("‡") and cells["imagenetv2"] == "77.9"
    assert cells["avg27"].endswith("†‡")  # a suite whose members are marked is marked
    assert any(line.startswith("†") and "imagenet1k" in line and "1000 of 50000" in line for line in out.splitlines())
    assert any(line.startswith("‡") and "cifar10" in line and "partial" in line for line in out.splitlines())
    summary = {r["task"]: r for r in csv.DictReader((run / "summary.csv").open())}
    assert summary["imagenet1k"]["count_status"] == "fewer" and summary["imagenet1k"]["expected_num_samples"] == "50000"
    assert summary["cifar10"]["count_status"] == "limit" and summary["dtd"]["count_status"] == "ok"
    suites = {r["suite"]: r for r in csv.DictReader((run / "suites.csv").open())}
    assert suites["eva_cls27"]["count_status"] == "fewer:imagenet1k" and suites["eva_video"]["count_status"] == "ok"
    table = tmp_path / "t.csv"
    assert main(["aggregate", str(run), "--format", "csv", "--out", str(table)]) == 0
    (csv_row,) = csv.DictReader(table.open())
    assert csv_row["flags"].split() == ["imagenet1k:fewer(1000/50000)", "cifar10:limit(10000/10000)"]
    assert float(csv_row["imagenet1k"]) == pytest.approx(83.8)
    assert main(["aggregate", str(run), "--reference", REPORT, "--plot", str(tmp_path / "bars.png")]) == 0
    out = capsys.readouterr().out
    assert "83.8† (83.8, not compared)" in out and (tmp_path / "bars.png").stat().st_size > 1000  # check refuses it
    assert any(line.startswith(f"not compared: {MODEL} imagenet1k: count fewer") for line in out.splitlines())


def test_aggregate_shows_no_delta_where_check_refuses(tmp_path, capsys):
    """A delta printed beside the paper's number reads as a reproduction; for another protocol it is not one."""
    run = write_synthetic_run(tmp_path / MODEL, MODEL, transform="shortest")  # the paper: best-of-both
    assert main(["aggregate", str(run), "--reference", REPORT]) == 0
    out = capsys.readouterr().out
    header, _, row = out.splitlines()[:3]
    cells = dict(zip(header.strip("| ").split(" | "), row.strip("| ").split(" | ")))
    assert cells["dtd"] == "72.1 (72.1, not compared)" and cells["avg27"].endswith(", not compared)")
    retrieval = [h for h in cells if "R@" in h]  # squashed as the paper's retrieval: compared
    assert retrieval and all(cells[h].endswith(", +0.0)") for h in retrieval)
    assert any(line.startswith(f"not compared: {MODEL} dtd: transform shortest") for line in out.splitlines())
    table = tmp_path / "t.csv"
    assert main(["aggregate", str(run), "--reference", REPORT, "--format", "csv", "--out", str(table)]) == 0
    (csv_row,) = csv.DictReader(table.open())
    assert csv_row["dtd delta"] == "" and csv_row["dtd ref"] == "72.1" and csv_row[f"{retrieval[0]} delta"] == "+0.00"
    assert "dtd: transform shortest" in csv_row["not_compared"] and "avg27: 27 of 27" in csv_row["not_compared"]
    assert check(run) == 2  # the same cells check refuses


def test_export_marks_counts_that_differ(tmp_path):
    write_synthetic_run(tmp_path / "runs" / MODEL, MODEL, counts={"mnist": 50, "dtd": 2000})
    out = tmp_path / "lb.csv"
    assert main(["export", "--runs", str(tmp_path / "runs"), "--out", str(out)]) == 0
    (row,) = csv.DictReader(out.open())
    assert row["flags"].split() == ["mnist:fewer(50/10000)", "dtd:more(2000/1880)"]
    long_rows = {r["column"]: r for r in csv.DictReader((tmp_path / "lb_long.csv").open())}
    assert long_rows["mnist"]["count_status"] == "fewer" and long_rows["mnist"]["num_samples"] == "50"
    assert long_rows["mnist"]["expected_num_samples"] == "10000" and long_rows["cifar10"]["count_status"] == "ok"
    assert long_rows["suite:eva_cls27"]["count_status"] == "fewer:mnist more:dtd"


def test_check_refuses_counts_that_differ_unless_allowed(tmp_path, capsys):
    run = write_synthetic_run(tmp_path / MODEL, MODEL, counts={"imagenet1k": 1000})
    assert check(run) == 2
    out = capsys.readouterr().out
    refused = lines(out, "REFUSED")
    (task_line,) = [line for line in refused if f"{MODEL} imagenet1k acc1" in line]
    assert "count fewer" in task_line and "1000 of 50000" in task_line and "--allow-count-mismatch" in task_line
    # every suite holding imagenet1k is refused too; the other suites are compared
    assert {line.split()[2] for line in refused} == {"imagenet1k", "suite:eva_cls27", "suite:imagenet_variants"}
    assert any("suite:eva_video" in line for line in lines(out, "ok"))

    assert check(run, "--allow-count-mismatch") == 0
    out = capsys.readouterr().out
    assert not lines(out, "REFUSED")
    allowed = [line for line in out.splitlines() if "--allow-count-mismatch" in line and "counts differ" in line]
    assert len(allowed) == 3 and all("imagenet1k fewer (1000 of 50000" in line for line in allowed)
    assert "3 compared despite sample counts that differ" in out


def test_check_refuses_more_samples_than_the_protocol(tmp_path, capsys):
    run = write_synthetic_run(tmp_path / MODEL, MODEL, counts={"mscoco": 5001})
    assert check(run) == 2
    refused = lines(capsys.readouterr().out, "REFUSED")
    assert refused and all("mscoco" in line for line in refused)
    assert any("count more: 5001 of 5000" in line for line in refused)


# ---------------------------------------------------------------------------------------------------------------
# defect 5: protocol


def test_reference_rows_say_what_protocol_they_assume():
    rows = load_reference(reference_path())  # the papers' table (open_clip's measurements are fp32)
    assert {(r.decoder, r.precision) for r in rows} == {("pil", "amp_fp16")}


@pytest.mark.parametrize("change, reason", [
    ({"decoder": "tensor"}, "decoder tensor, the reference assumes pil (rerun with --decoder pil)"),
    ({"precision": "fp32"}, "precision fp32, the reference assumes amp_fp16 (run on CUDA, "
                             "where the EVA cards default to amp_fp16,"
                             " or pass --precision amp_fp16)"),
    ({"precision": "fp16"}, "precision fp16, the reference assumes amp_fp16"),
    ({"prompts": "include-path"}, "prompts from an --include-path file"),
    ({"decoder": None}, "unknown protocol (no decoder"),
    ({"precision": None}, "unknown protocol (no precision"),
])
def test_check_refuses_another_decoder_precision_or_prompts(tmp_path, capsys, change, reason):
    run = write_synthetic_run(tmp_path / MODEL, MODEL, protocol={"dtd": change})
    assert check(run) == 2
    refused = lines(capsys.readouterr().out, "REFUSED")
    assert {line.split()[2] for line in refused} == {"dtd", "suite:eva_cls27"}
    assert all(reason in line for line in refused)


def test_check_refuses_another_frame_rule(tmp_path, capsys):
    run = write_synthetic_run(tmp_path / MODEL, MODEL, protocol={"ucf101": {"frame_rule": "decoded_count"}})
    assert check(run) == 2
    (line,) = [x for x in lines(capsys.readouterr().out, "REFUSED") if x.split()[2] == "ucf101"]
    assert "frame rule decoded_count, the reference assumes vissl" in line


# ---------------------------------------------------------------------------------------------------------------
# defect 6: values validated when read back


def _tamper(path, how: str) -> tuple[str, str]:
    """Damage a task CSV; returns what the error must name (line, column)."""
    text = path.read_text()
    rows = list(csv.DictReader(text.splitlines()))
    if how == "above_one":
        rows[0]["value"] = "1.5"
    elif how == "nan":
        rows[0]["value"] = "nan"
    elif how == "missing_column":
        for r in rows:
            del r["num_samples"]
    if how == "truncated":
        kept = text.splitlines()
        path.write_text("\n".join(kept[:-1] + [kept[-1][: len(kept[-1]) // 2]]))  # the last row cut in half
        return f":{len(kept)}", "fields"
    columns = [c for c in TASK_COLUMNS if c in rows[0]]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return {"missing_column": ("", "num_samples")}.get(how, (":2", "'value'"))


@pytest.mark.parametrize("command", ["aggregate", "check", "export"])
@pytest.mark.parametrize("how", ["above_one", "nan", "missing_column", "truncated"])
def test_tampered_results_are_refused_naming_file_line_and_column(tmp_path, capsys, command, how):
    run = write_synthetic_run(tmp_path / "runs" / MODEL, MODEL)
    where, column = _tamper(run / "dtd.csv", how)
    argv = {"aggregate": ["aggregate", str(run)], "check": ["check", str(run), "--reference", REPORT],
            "export": ["export", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "lb.csv")]}[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{run / 'dtd.csv'}{where}" in err and column in err
    assert not (tmp_path / "lb.csv").exists()


# ---------------------------------------------------------------------------------------------------------------
# defect 7


def test_a_breach_gives_4_even_when_other_rows_are_refused(tmp_path, capsys):
    run = write_synthetic_run(tmp_path / MODEL, MODEL, nudge={"dtd": {"acc1": -5}}, partial={"cifar10"})
    assert check(run) == 4
    out = capsys.readouterr().out
    assert lines(out, "BREACH") and lines(out, "REFUSED")


def test_a_breach_in_one_run_wins_over_refusals_in_another(tmp_path, capsys):
    write_synthetic_run(tmp_path / "runs" / "a", MODEL, nudge={"dtd": {"acc1": -5}})
    write_synthetic_run(tmp_path / "runs" / "b", MODEL, partial={"cifar10"})
    assert check(tmp_path / "runs") == 4


def test_no_reference_row_assumes_a_retrieval_transform_evalsuite_cannot_run():
    retrieval = [r for r in load_reference(reference_path())
                 if r.task == "suite:eva_retrieval" or (not r.is_suite and CATALOG.tasks[r.task].type
                                                        == "zeroshot_retrieval")]
    assert retrieval
    for r in retrieval:
        assert r.transform == "squash" or r.not_reproducible, r
    crop = {r.report for r in retrieval if r.not_reproducible}
    assert crop == {DRAFT, "eva01_clip_benchmark_md", "table14_resize_shortest_center_crop"}
    assert all("shortest side + centre crop" in r.not_reproducible for r in retrieval if r.not_reproducible)


def test_check_skips_retrieval_rows_made_with_a_crop_instead_of_refusing_them(tmp_path, capsys):
    model = "EVA02-CLIP-B-16"
    run = write_synthetic_run(tmp_path / model, model, report=DRAFT, transform="shortest")
    assert main(["check", str(run), "--reference", DRAFT]) == 0
    out = capsys.readouterr().out
    assert not lines(out, "REFUSED") and not lines(out, "BREACH")
    skipped = lines(out, "SKIPPED")
    assert len(skipped) == 12 and all("not reproducible" in line and "squashes" in line for line in skipped)
    assert "12 not reproducible (skipped)" in out


def test_stray_csv_and_history_are_not_read(tmp_path, capsys):
    run = write_synthetic_run(tmp_path / MODEL, MODEL)
    wrong = write_synthetic_run(tmp_path / "wrong", MODEL, nudge={"cifar10": {"acc1": -50}})
    (run / "cifar10_old.csv").write_bytes((wrong / "cifar10.csv").read_bytes())
    (run / "history").mkdir()
    (run / "history" / "cifar10.csv").write_bytes((wrong / "cifar10.csv").read_bytes())
    (run / "history" / "dtd.csv").write_text("")  # damaged, but never read
    assert check(run) == 0
    captured = capsys.readouterr()
    assert "cifar10_old.csv" in captured.err and "ignored 1 CSV" in captured.err
    assert main(["aggregate", str(run)]) == 0
    summary = {r["task"]: float(r["value"]) for r in csv.DictReader((run / "summary.csv").open())}
    assert summary["cifar10"] == pytest.approx(0.994) and "cifar10_old" not in summary
    assert main(["export", "--runs", str(run), "--out", str(tmp_path / "lb.csv")]) == 0
    (row,) = csv.DictReader((tmp_path / "lb.csv").open())
    assert row["cifar10"] == "99.40"


def test_a_file_named_for_one_task_holding_another_is_ignored(tmp_path, capsys):
    run = write_synthetic_run(tmp_path / MODEL, MODEL)
    (run / "notes.csv").write_text("a,b\n1,2\n")  # not a task CSV at all
    (run / "imagenet1k.csv").write_bytes((run / "dtd.csv").read_bytes())  # dtd's rows under imagenet1k's name
    assert check(run) == 0  # imagenet1k has no result now: neither it nor its suites are compared
    captured = capsys.readouterr()
    assert "imagenet1k.csv (holds task dtd)" in captured.err and "notes.csv" in captured.err
    assert not [line for line in captured.out.splitlines() if " imagenet1k " in line]


@pytest.mark.parametrize("damage", ["empty", "header_only", "no_primary"])
@pytest.mark.parametrize("command", ["aggregate", "check", "export"])
def test_damaged_task_csv_is_refused(tmp_path, capsys, damage, command):
    run = write_synthetic_run(tmp_path / "runs" / MODEL, MODEL)
    path = run / "cifar10.csv"
    text = path.read_text()
    if damage == "empty":
        path.write_text("")
    elif damage == "header_only":
        path.write_text(text.splitlines()[0] + "\n")
    else:
        path.write_text(text.replace(",true,", ",false,"))
    argv = {"aggregate": ["aggregate", str(run)], "check": ["check", str(run), "--reference", REPORT],
            "export": ["export", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "lb.csv")]}[command]
    assert main(argv) == 2
    assert str(path) in capsys.readouterr().err


@pytest.mark.parametrize("tolerance", ["inf", "nan", "-1", "-inf", "lots"])
def test_tolerance_must_be_finite_and_not_negative(tmp_path, capsys, tolerance):
    run = write_synthetic_run(tmp_path / MODEL, MODEL, nudge={"imagenet_r": {"acc1": -88}})
    with pytest.raises(SystemExit) as exc:
        check(run, "--tolerance", tolerance)
    assert exc.value.code == 2
    assert "--tolerance" in capsys.readouterr().err
    assert check(run, "--tolerance", "0.5") == 4  # the 88-point regression is caught


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_imagenet_sample_is_refused_by_check_naming_the_counts(tiny_model_dir, tmp_path, capsys):
    from helpers import shared

    out = tmp_path / "results"
    main(["run", "--model", f"local-dir:{tiny_model_dir}", "--tasks", "imagenet1k", "--data-root",
          str(shared("imagenet-sample")), "--output-dir", str(out), "--workers", "0", "--bootstrap", "0"])
    capsys.readouterr()
    assert main(["check", str(out), "--reference", REPORT, "--as-model", MODEL]) == 2
    (line,) = [x for x in lines(capsys.readouterr().out, "REFUSED") if x.split()[2] == "imagenet1k"]
    assert "count fewer: 1000 of 50000 expected samples" in line
    assert "precision fp32" in line and "decoder" not in line  # a CPU run's protocol; pil is the default decoder
    assert main(["aggregate", str(out)]) == 0
    assert "† local-dir" in capsys.readouterr().out


@pytest.mark.parametrize("edit, message", [
    ({"num_samples": 300}, "column 'count_status' is 'ok', but its counts"),
    ({"num_samples": 0}, "column 'num_samples' is 0"),
    ({"ci_low": 0.9, "ci_high": 0.8}, "ci_low 0.9 is above ci_high 0.8"),
])
def test_a_hand_edited_count_or_interval_stops_every_report(tmp_path, capsys, edit, message):
    """A task CSV whose num_samples was cut to 300 of 1880 but kept count_status ok passed check with no mark."""
    run = write_synthetic_run(tmp_path / MODEL, MODEL)
    path = run / "dtd.csv"
    rows = list(csv.DictReader(path.open()))
    for row in rows:
        row.update({k: str(v) for k, v in edit.items()})
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for argv in (["check", str(run), "--reference", REPORT], ["aggregate", str(run)],
                 ["export", "--runs", str(run), "--out", str(tmp_path / "lb.csv")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"{path}:2" in err and message in err


def test_check_refuses_a_result_made_under_other_expected_counts(tmp_path, capsys):
    run = write_synthetic_run(tmp_path / MODEL, MODEL, counts={"dtd": 1000})
    path = run / "dtd.csv"
    text = path.read_text().replace(",1000,,0,1880,,fewer,", ",1000,,0,1000,,ok,")  # expected count edited to fit
    assert text != path.read_text()
    path.write_text(text)
    assert check(run) == 2
    out = capsys.readouterr().out
    assert "REFUSED EVA-CLIP-18B dtd acc1: dtd: the result expects 1000 samples" in out and "its task file 1880" in out


def test_aggregate_of_read_only_results_still_prints_the_table(tmp_path, monkeypatch, capsys):
    """A shared, read-only results archive: aggregate stopped at 'summary.csv: cannot write' (check, export and
    report worked)."""
    import evalsuite.results as results

    run = write_synthetic_run(tmp_path / MODEL, MODEL)
    real = results.atomic_write_bytes

    def read_only(path, data):
        if run in path.parents:
            raise PermissionError(13, "Permission denied")
        return real(path, data)

    monkeypatch.setattr(results, "atomic_write_bytes", read_only)
    assert main(["aggregate", str(run), "--out", str(tmp_path / "table.md")]) == 0
    assert "summary.csv and suites.csv not rebuilt there" in capsys.readouterr().err
    assert "| EVA-CLIP-18B |" in (tmp_path / "table.md").read_text() and not (run / "summary.csv").exists()
