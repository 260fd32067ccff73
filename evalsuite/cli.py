"""Command line. Maps EvalsuiteError to exit codes (2 bad input, 3 tasks failed, 4 regression); imports torch
only for commands that run a model, so ``--help``, ``ls`` and ``validate`` start fast."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import traceback
from pathlib import Path
from typing import Optional

from . import __version__
from .errors import EvalsuiteError, UserInputError

log = logging.getLogger("evalsuite")


def default_data_root() -> Path:
    return Path(os.environ.get("EVALSUITE_DATA_ROOT", Path.home() / ".cache" / "evalsuite" / "data"))


def _int_in(minimum: int, maximum: int):
    """An argparse type: a whole number in [minimum, maximum]; the message gives the allowed range."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number from {minimum} to {maximum}, got {text!r}"
                                             ) from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"expected a whole number from {minimum} to {maximum}, got {value}")
        return value

    return parse


# upper bounds far above any real use, so a typo fails at once instead of in an allocation or a loop
_batch_size, _workers, _limit, _bootstrap = _int_in(1, 65_536), _int_in(0, 256), _int_in(1, 2**31), _int_in(0, 100_000)


PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def _plot_path(text: str) -> Path:
    """A --plot file: matplotlib writes by the suffix, so the suffix must be one it writes."""
    path = Path(text)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise argparse.ArgumentTypeError(f"{text!r}: a plot file ends in {', '.join(PLOT_SUFFIXES)}")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file name ending in .png")
    return path


def _refuse_writing_into_runs(runs, outputs: dict[str, Optional[Path]]) -> None:
    """An output inside a results folder the command reads could replace a task CSV (the result is lost, no
    history/ copy) or be read back as one of the run's files: refused before anything is written."""
    for flag, path in outputs.items():
        if path is None:
            continue
        target = Path(path).resolve()
        for run in runs:
            folder = run.folder.resolve()
            if target == folder or folder in target.parents:
                raise UserInputError(f"{flag} {path} is inside {run.folder}, a results folder this"
                                     " command reads: a file there could replace or pass for one of the run's"
                                     " files; write it elsewhere (e.g. beside the model folders)")


def _tolerance(text: str) -> float:
    """check --tolerance: finite percentage points >= 0 (inf would let any regression pass)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected percentage points, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected finite percentage points >= 0, got {text!r}")
    return value


EXPORT_OUT = {"csv": Path("results/leaderboard.csv"), "json": Path("results/leaderboard.json"),
              "model-index": Path("results/model-index.yaml")}  # export --format -> default --out


def _task_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows real defaults; not for switches (True/False), unset options (None) or help that states its own."""

    def _get_help_string(self, action):
        if action.default in (None, True, False, []) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


EXAMPLES = {
    "ls": "evalsuite ls tasks --tag eva_cls27",
    "prepare": "evalsuite prepare cifar10,dtd --data-root /data/eval",
    "aggregate": "evalsuite aggregate results/EVA-CLIP-8B --reference evaclip18b_paper_2402.04252v1",
    "check": "evalsuite check results/EVA02-CLIP-B-16 --reference evaclip18b_paper_2402.04252v1",
    "export": "evalsuite export --runs results --out results/leaderboard.csv",
    "report": "evalsuite report results --out site/",
    "compare": "evalsuite compare results/base/demo-clip results/new/demo-clip --fail-if-worse 0.5",
    "validate": "evalsuite validate --tasks eva_cls27",
    "run": "evalsuite run --model EVA02-CLIP-B-16 --tasks eva_cls27 --data-root /data",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evalsuite",
        description="Zero-shot evaluation of CLIP models on the EVA-CLIP protocol.",
        epilog="Exit codes: 0 ok, 1 internal error, 2 bad input, 3 some tasks failed, 4 regression breach.",
    )
    parser.add_argument("--version", action="version", version=f"evalsuite {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run", help="evaluate one or more models on tasks, suites or tags",
        epilog="example: evalsuite run --model EVA02-CLIP-B-16 --tasks eva_cls27 --data-root /data  |  replay a run:"
               " evalsuite run --config results/EVA02-CLIP-B-16/run.json  |  CLIP_benchmark spelling: --model"
               " ViT-B-32 --pretrained laion2b_s34b_b79k --batch_size 64 --dataset_root /data")
    run.add_argument("--config", type=Path,
                     help="a YAML/JSON file of run options under the flags' names (batch_size: 64, tasks: [cifar10],"
                          " ...), or a results run.json to replay that run; flags given here override it")
    run.add_argument("--model", action="append", default=None,
                     help="card name (evalsuite ls models), card .yaml path, open_clip:ARCH/TAG, open_clip:ARCH"
                          " with --weights FILE, local-dir:FOLDER, hf:REPO, or a checkpoint PATH with --arch;"
                          " repeat it (or use --models-file) to evaluate several models in turn")
    run.add_argument("--models-file", type=Path, help="a text file of --model values, one per line (# comments)")
    run.add_argument("--weights", dest="weights",
                     help="local weights file (overrides the card's sources; see also EVALSUITE_WEIGHTS_DIR)")
    run.add_argument("--pretrained",
                     help="CLIP_benchmark's spelling: with --model ARCH an open_clip pretrained tag"
                          " (= --model open_clip:ARCH/TAG), or a weights file (= --weights)")
    run.add_argument("--arch", help="for --model PATH.pt: a card name or an upstream EVA-CLIP config .json")
    run.add_argument("--trust-remote-code", action="store_true",
                     help="let an hf: model run Python code from a folder or repo that no model card pins (its"
                          " configuration_*.py / modeling_*.py); only for code you have read. Without it, remote"
                          " code runs only from a card's repo at the card's pinned commit")
    run.add_argument("--tasks", type=_task_list,
                     help="comma-separated task names, suites, tag:TAG, globs (imagenet*) or all")
    run.add_argument("--data-root", "--dataset_root", type=Path, default=None,
                     help="folder holding the datasets (default $EVALSUITE_DATA_ROOT or ~/.cache/evalsuite/data)")
    run.add_argument("--output-dir", type=Path, default=Path("results"),
                     help="results go to OUTPUT_DIR/<model>/ (default results)")
    run.add_argument("--batch-size", "--batch_size", type=_batch_size, default=256,
                     help="images per batch (1-65536, default 256)")
    run.add_argument("--workers", "--num_workers", type=_workers, default=None,
                     help="DataLoader workers, at most 8 by default: CPU count - 1 on a GPU host; every core on a"
                          " CPU device, where they decode only between forward passes")
    run.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    run.add_argument("--nproc-per-node", type=_int_in(1, 1024), default=1,
                     help="data-parallel ranks on this machine (torchrun's launcher, run so that the exit code"
                          " stays the documented one; default 1)")
    run.add_argument("--precision", choices=("fp32", "amp_fp16", "amp_bf16", "fp16", "bf16"), default=None,
                     help="amp_fp16/amp_bf16: fp32 weights under autocast (CLIP_benchmark's --amp; the EVA cards'"
                          " default on CUDA); fp16/bf16: weights cast (half the memory); fp32. Default: the card's"
                          " mode on CUDA, fp32 on a CPU. Recorded in the protocol column")
    run.add_argument("--transform", choices=("shortest", "squash", "best-of-both"), default=None,
                     help="image resize: the card's (default; shortest side + centre crop for EVA), squash, or"
                          " best-of-both (each classification task with both, the better kept and recorded)")
    run.add_argument("--limit", type=_limit, default=None,
                     help="evaluate a fixed seeded sample of N images per task; results are marked partial")
    run.add_argument("--include-path", type=Path, action="append", default=[],
                     help="extra folder with tasks/, prompts/ and/or cards/ (repeatable)")
    run.add_argument("--no-cache-features", dest="cache_features", action="store_false",
                     help="do not read or write the image-feature cache ($EVALSUITE_CACHE_DIR/features)")
    run.add_argument("--cache-pixels", action="store_true",
                     help="store each task's preprocessed uint8 images once ($EVALSUITE_CACHE_DIR/pixels, memory-"
                          "mapped; ImageNet at 224 is 7.5 GB) so the next model with the same size and resize"
                          " decodes no image")
    run.add_argument("--decoder", choices=("pil", "tensor", "cuda"), default="pil",
                     help="image decoding: pil (default: open_clip's transform exactly, what CLIP_benchmark and the"
                          " papers ran), tensor (torchvision JPEG decode + uint8 antialiased resize: within 2/255 of"
                          " pil, 2.2x less CPU per image; moves a few predictions) or cuda (JPEGs decoded on the GPU"
                          " by nvJPEG; not yet measured against pil). The decoder is recorded in `protocol`")
    run.add_argument("--verify-data", action="store_true",
                     help="identify each data file by a sha256 of its contents (reads all data) instead of its size"
                          " and modification time; results and caches made so are kept apart from the default's")
    run.add_argument("--bootstrap", type=_bootstrap, default=1000,
                     help="bootstrap resamples (seeded) for each primary metric's 95%% interval; 0 turns it off")
    run.add_argument("--no-resume", dest="resume", action="store_false",
                     help="re-evaluate tasks that already have a result with the same fingerprints")
    run.add_argument("--fail-fast", action="store_true", help="stop at the first failing task")
    run.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="progress bars (default: when stderr is a terminal)")
    run.add_argument("--no-progress", dest="progress", action="store_false")

    ls = sub.add_parser("ls", help="list tasks, suites or models")
    ls.add_argument("what", choices=("tasks", "suites", "models"))
    ls.add_argument("--tag", help="with tasks: only tasks carrying this tag")
    ls.add_argument("--include-path", type=Path, action="append", default=[])

    prep = sub.add_parser("prepare",
                          help="download/convert datasets where possible, else say exactly how; verify counts")
    prep.add_argument("tasks", type=_task_list, help="task names, suites, tag:TAG, globs or all (comma-separated)")
    prep.add_argument("--data-root", type=Path, default=None,
                      help="where datasets live (default $EVALSUITE_DATA_ROOT or ~/.cache/evalsuite/data)")
    prep.add_argument("--include-path", type=Path, action="append", default=[])
    prep.add_argument("--dry-run", action="store_true",
                      help="print the plan (per task: the source holding the data, else the download or the manual"
                           " steps) and stop; nothing is fetched or created")

    agg = sub.add_parser("aggregate", help="rebuild summary/suite tables from task CSVs; print the paper-style table")
    agg.add_argument("run_dir", type=Path, help="results/<model>/ or a folder of such folders")
    agg.add_argument("--format", choices=("md", "csv"), default="md")
    agg.add_argument("--reference", help="a report id of the reference table (evalsuite check lists them)")
    agg.add_argument("--reference-file", type=Path,
                     help="another reference table CSV (default: every table in results/reference/)")
    agg.add_argument("--out", type=Path, help="also write the table to this file")
    agg.add_argument("--plot", type=_plot_path,
                     help="PNG: with --reference, each run minus the reference per task (pp) with the tolerance band"
                          " and bootstrap intervals; without, the runs side by side")
    agg.add_argument("--include-path", type=Path, action="append", default=[])

    chk = sub.add_parser("check", help="compare a run with reference numbers: exit 4 on any value beyond tolerance,"
                                       " else 2 when results are refused (partial, other sample count, other"
                                       " protocol) or nothing is comparable, else 0")
    chk.add_argument("run_dir", type=Path)
    chk.add_argument("--reference", required=True, help="report id, e.g. evaclip18b_paper_2402.04252v1")
    chk.add_argument("--reference-file", type=Path)
    chk.add_argument("--tolerance", type=_tolerance, help="percentage points for every value (default: per row)")
    chk.add_argument("--allow-count-mismatch", action="store_true",
                     help="compare results whose sample count differs from the protocol's (count_status fewer or"
                          " more) instead of refusing them; the report names each one")
    chk.add_argument("--require-all", action="store_true",
                     help="exit 2 when a reference value (one evalsuite can reproduce) has no result in the run: a"
                          " task that failed or was left out fails the check instead of going unchecked (default:"
                          " check what the run holds and count the rest)")
    chk.add_argument("--as-model", help="compare under this model card name (default: the run's model)")
    chk.add_argument("--include-path", type=Path, action="append", default=[])

    exp = sub.add_parser("export", help="leaderboard CSV across runs (and a long-format twin)")
    exp.add_argument("--runs", type=Path, nargs="+", required=True)
    exp.add_argument("--format", choices=tuple(EXPORT_OUT), default="csv",
                     help="csv: display leaderboard + _long.csv twin (default); json: one object per model with"
                          " every task and suite value, protocol and counts; model-index: Hugging Face model card"
                          " metadata (YAML)")
    exp.add_argument("--out", type=Path, default=None,
                     help="output file (default by format: " + ", ".join(map(str, EXPORT_OUT.values())) + ")")
    exp.add_argument("--plot", type=_plot_path,
                     help="PNG of the 27-dataset average against parameter count beside the papers' points (a run"
                          " lacking some of the 27 is drawn as the mean of those it has, labelled partial: N of 27)")
    exp.add_argument("--include-path", type=Path, action="append", default=[])

    rep = sub.add_parser("report", help="static HTML report: sortable leaderboard, a page per model with plots and"
                                        " per-task details (no server, no network)",
                         epilog="example: evalsuite report results/EVA-CLIP-8B results/EVA-CLIP-18B --out site/"
                                " --reference evaclip18b_paper_2402.04252v1")
    rep.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                     help="results/<model>/ or a folder of such folders (several allowed)")
    rep.add_argument("--out", type=Path, default=Path("site"),
                     help="folder for index.html, the model pages and their PNGs (default: site)")
    rep.add_argument("--reference", help="a report id: colour cells by their delta to it and plot the deltas")
    rep.add_argument("--reference-file", type=Path,
                     help="another reference table CSV (default: every table in results/reference/)")
    rep.add_argument("--include-path", type=Path, action="append", default=[])

    cmp = sub.add_parser("compare", help="paired bootstrap comparison of two runs on the same samples: per task and"
                                         " suite B - A with interval and p-value; exit 4 with --fail-if-worse",
                         epilog="example: evalsuite compare results/base/demo-clip results/new/demo-clip"
                                " --fail-if-worse 0.5")
    cmp.add_argument("run_a", type=Path, metavar="RUN_A", help="results/<model>/ of the baseline")
    cmp.add_argument("run_b", type=Path, metavar="RUN_B", help="results/<model>/ of the candidate")
    cmp.add_argument("--tasks", type=_task_list, default=None,
                     help="comma-separated task names (default: every task both runs hold)")
    cmp.add_argument("--iterations", type=_int_in(1, 1_000_000), default=10_000,
                     help="bootstrap resamples (1-1000000, default 10000)")
    cmp.add_argument("--seed", type=_int_in(0, 2**62), default=0, help="bootstrap seed (default 0)")
    cmp.add_argument("--fail-if-worse", type=_tolerance, metavar="PP",
                     help="exit 4 when B is below A by more than PP percentage points with the 95%% interval"
                          " entirely below 0, on any task or suite, or when B lacks a task A has (a task that"
                          " failed is no pass; --tasks gates on a subset) (default: never)")
    cmp.add_argument("--out", type=Path, help="also write the comparison as CSV (fractions, full precision)")
    cmp.add_argument("--include-path", type=Path, action="append", default=[])

    val = sub.add_parser("validate", help="check task YAMLs, prompts and suites without loading a model")
    val.add_argument("--tasks", type=_task_list, default=None, help="selectors as for run (default: every task)")
    val.add_argument("--include-path", type=Path, action="append", default=[])
    for name, command in sub.choices.items():  # defaults shown in every --help, and one example
        command.formatter_class = DefaultsFormatter
        command.allow_abbrev = False  # --batch would silently mean --batch-size; a --config must know what was typed
        command.epilog = command.epilog or f"example: {EXAMPLES[name]}"
    return parser


def is_reporting_process() -> bool:
    """Rank 0 under torchrun, or a plain process: the one that prints tables and errors."""
    return os.environ.get("RANK", "0") == "0"


# exit codes from mild to severe: one command over several models exits with the most severe of them
SEVERITY = {0: 0, 3: 1, 4: 2, 2: 3, 1: 4}


def cmd_run(args) -> int:
    from .distributed import init_from_env
    from .run_options import run_configs

    if args.nproc_per_node > 1 and "RANK" not in os.environ:
        from .launch import launch

        return launch(args.nproc_per_node, args.argv)
    args.device = init_from_env(args.device)  # under torchrun: join the group, one device per rank
    configs = run_configs(args, build_parser(), default_data_root())
    codes, tables = [], []
    for config in configs:
        code, table = _run_one(config, several=len(configs) > 1, invocation=shlex.join(["evalsuite", *args.argv]))
        codes.append(code)
        tables.append((config.model, table))
    if len(configs) > 1 and is_reporting_process():
        for model, table in tables:
            print(f"\n== {model}\n{table}" if table else f"\n== {model}: no results")
    return max(codes, key=SEVERITY.__getitem__)


def _run_one(config, several: bool, invocation: str) -> tuple[int, str]:
    """One model's run: (exit code, its table). With several models an error ends that model, not the command."""
    from .runner import Runner

    runner = None
    try:
        runner = Runner(config, invocation=invocation)
        report = runner.run()
    except EvalsuiteError as exc:
        if runner is not None and is_reporting_process() and not several:
            _print_table(runner)
        if not several:
            raise
        if is_reporting_process():
            print(f"evalsuite: error: {config.model}: {exc}", file=sys.stderr)
        return exc.exit_code, _table_of(runner)
    if is_reporting_process() and not several:
        print(report.table)
        print(f"\nresults: {report.model_dir}")
    return 0, report.table


def _print_table(runner) -> None:
    """After a partly failed run, still show what was written."""
    table = _table_of(runner)
    if table:
        print(table)


def _table_of(runner) -> str:
    from .results import format_table

    summary_path = runner.model_dir / "summary.csv" if runner is not None else None
    if summary_path is None or not summary_path.is_file():
        return ""
    import csv

    with summary_path.open() as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["value"], r["partial"] = float(r["value"]), r["partial"] == "true"
    return format_table(rows, [])


def cmd_ls(args) -> int:
    if args.what == "models":
        from .models.card import all_cards

        cards = all_cards(args.include_path)
        print(f"{'model':<26} {'adapter':<10} {'params':>9}  source")
        for name, card in cards.items():
            params = f"{card.params_millions:,.0f}M" if card.params_millions else "?"
            source = ", ".join(f"{w.kind}:{w.ref}" for w in card.weights) or "-"
            print(f"{name:<26} {card.adapter:<10} {params:>9}  {source}")
        from .models.loading import ADAPTERS  # names only: a plugin's module is not imported to list it

        adapters = [n + (f" (plugin {ADAPTERS.plugin_origin(n)})" if ADAPTERS.plugin_origin(n) else "")
                    for n in ADAPTERS.names()]
        print(f"\nadapters (a card's adapter:): {', '.join(adapters)}")
        return 0
    from .catalog import Catalog

    catalog = Catalog.load(args.include_path)
    if args.what == "tasks":
        print(f"{'task':<22} {'type':<15} {'classes':>7} {'samples':>8}  tags")
        specs = catalog.select([f"tag:{args.tag}"]) if args.tag else list(catalog.tasks.values())
        for spec in specs:
            name = spec.name
            print(f"{name:<22} {spec.type:<15} {spec.num_classes or '-':>7} {spec.expected_num_samples or '?':>8}"
                  f"  {' '.join(spec.tags)}")
    else:
        for name, suite in catalog.suites.items():
            members = catalog.suite_members(name)
            print(f"{name:<22} {len(members):>3} tasks  {suite.description}")
    return 0


def cmd_validate(args) -> int:
    from .catalog import Catalog
    from .tasks import build_task

    catalog = Catalog.load(args.include_path)
    specs = catalog.select(args.tasks) if args.tasks else list(catalog.tasks.values())
    for spec in specs:
        build_task(spec, args.include_path)
    for name in catalog.suites:
        catalog.suite_members(name)
    print(f"ok: {len(specs)} task(s) and {len(catalog.suites)} suite(s) are valid")
    return 0


def cmd_prepare(args) -> int:
    from .catalog import Catalog
    from .prepare import run_prepare

    specs = Catalog.load(args.include_path).select(args.tasks)
    return run_prepare(specs, args.data_root or default_data_root(), args.include_path, dry_run=args.dry_run)


def _references(args, catalog):
    """The rows of ``--reference``, or None; a row naming a suite no suite file defines is an error here, not a
    KeyError in the middle of a comparison."""
    from .reference import load_reference, select_report
    from .registry import did_you_mean

    if not args.reference:
        return None
    rows = select_report(load_reference(args.reference_file), args.reference)
    for row in rows:
        if row.is_suite and row.task[6:] not in catalog.suites:
            where = args.reference_file or "results/reference/"
            raise UserInputError(f"{where}: report {row.report!r} row {row.model} {row.task} names suite"
                                 f" {row.task[6:]!r}, which no suite file defines."
                                 f"{did_you_mean(row.task[6:], sorted(catalog.suites))}")
    return rows


def cmd_aggregate(args) -> int:
    from .catalog import Catalog
    from .report import load_runs, paper_table, rebuild_tables
    from .results import OutputWriteError

    catalog = Catalog.load(args.include_path)
    runs = load_runs(args.run_dir, set(catalog.tasks))
    _refuse_writing_into_runs(runs, {"--out": args.out, "--plot": args.plot})
    for run in runs:
        try:
            rebuild_tables(run, catalog)
        except OutputWriteError as exc:  # read-only results (a shared archive): the table is still wanted
            log.warning("%s; summary.csv and suites.csv not rebuilt there, the table below is", exc)
    refs = _references(args, catalog)
    text = paper_table(runs, catalog, refs, args.format)
    print(text, end="")
    if args.out:
        from .results import atomic_write_text

        atomic_write_text(args.out, text)
    if args.plot:
        from .plots import plot_runs, plot_vs_reference

        if refs is None:
            plot_runs(runs, catalog, args.plot)
        else:
            plot_vs_reference(runs, refs, catalog, args.plot)
    return 0


def cmd_check(args) -> int:
    from .catalog import Catalog
    from .errors import RegressionError
    from .report import check_run, load_runs

    catalog = Catalog.load(args.include_path)
    refs = _references(args, catalog)
    runs = load_runs(args.run_dir, set(catalog.tasks))
    reports = []
    for run in runs:
        reports.append(check_run(run, refs, catalog, args.tolerance, args.as_model, args.allow_count_mismatch,
                                 args.require_all))
        print("\n".join(reports[-1].lines))
    refused = sum(r.refused for r in reports)
    also = f"; {refused} result(s) also refused (lines marked REFUSED)" if refused else ""
    if any(r.exit_code == 4 for r in reports):  # a breach wins over refusals: CI must see the regression
        raise RegressionError(f"values beyond tolerance (lines marked BREACH above){also}")
    if any(r.exit_code == 2 for r in reports):
        missing = sum(len(r.missing) for r in reports) if args.require_all else 0
        raise UserInputError("nothing comparable, or results refused (lines marked REFUSED above)" if not missing
                             else f"{missing} reference value(s) without a result (lines marked MISSING above:"
                                  f" run those tasks, or drop --require-all){also}")
    return 0


def cmd_export(args) -> int:
    from .catalog import Catalog
    from .models.card import all_cards
    from .report import leaderboard, load_runs
    from .results import atomic_write_text

    catalog = Catalog.load(args.include_path)
    runs = [run for folder in args.runs for run in load_runs(folder, set(catalog.tasks))]
    params = {name: card.params_millions for name, card in all_cards(args.include_path).items()
              if card.params_millions}
    args.out = args.out or EXPORT_OUT[args.format]
    _refuse_writing_into_runs(runs, {"--out": args.out, "--plot": args.plot})
    if args.format == "csv":
        display, long_format = leaderboard(runs, catalog, params)
        atomic_write_text(args.out, display)
        long_path = args.out.with_name(args.out.stem + "_long.csv")
        atomic_write_text(long_path, long_format)
        print(f"{len(runs)} run(s) -> {args.out} (display) and {long_path} (long)")
    else:
        from .exports import json_text, model_index_text

        text = json_text(runs, catalog, params) if args.format == "json" else model_index_text(runs, catalog)
        atomic_write_text(args.out, text)
        print(f"{len(runs)} run(s) -> {args.out} ({args.format})")
    if args.plot:
        from .plots import plot_scaling

        plot_scaling(runs, catalog, params, args.plot)
    return 0


def cmd_report(args) -> int:
    from .catalog import Catalog
    from .models.card import all_cards
    from .reference import load_reference
    from .report import load_runs
    from .report_html import build_site

    catalog = Catalog.load(args.include_path)
    runs = [run for folder in args.run_dirs for run in load_runs(folder, set(catalog.tasks))]
    _refuse_writing_into_runs(runs, {"--out": args.out})
    params = {name: card.params_millions for name, card in all_cards(args.include_path).items()
              if card.params_millions}
    site = build_site(runs, catalog, args.out, _references(args, catalog), params,
                      load_reference(args.reference_file))
    print(f"{len(runs)} run(s) -> {site.index} ({len(site.pages)} model page(s), {len(site.images)} plot(s))")
    return 0


def cmd_compare(args) -> int:
    from .bootstrap import BootstrapConfig
    from .catalog import Catalog
    from .compare import compare_runs, comparison_csv, format_table, regression_message
    from .errors import RegressionError
    from .report import load_runs

    catalog = Catalog.load(args.include_path)
    runs = []
    for side, folder in (("A", args.run_a), ("B", args.run_b)):
        found = load_runs(folder, set(catalog.tasks))
        if len(found) != 1:
            raise UserInputError(f"compare: RUN_{side} {folder} holds {len(found)} model folders"
                                 f" ({', '.join(r.folder.name for r in found)}); give one results/<model>/ folder")
        runs += found
    _refuse_writing_into_runs(runs, {"--out": args.out})
    suites = {s: catalog.suite_members(s) for s in catalog.suites if s != "all"}
    member_metrics = {s: spec.member_metrics for s, spec in catalog.suites.items() if spec.member_metrics}
    comparison = compare_runs(runs[0], runs[1], suites, BootstrapConfig(args.iterations, args.seed), args.tasks,
                              member_metrics)
    print(format_table(comparison, args.fail_if_worse), end="")
    if args.out:
        from .results import atomic_write_text

        atomic_write_text(args.out, comparison_csv(comparison, args.fail_if_worse))
    if args.fail_if_worse is not None and (comparison.worse(args.fail_if_worse) or comparison.only_a):
        raise RegressionError(regression_message(comparison, args.fail_if_worse))
    return 0


def _setup_logging(verbose: bool) -> None:
    """evalsuite's own lines at INFO; other libraries (open_clip logs every load step at INFO) at WARNING."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(name)s: %(levelname)s: %(message)s")
    ours = logging.getLogger("evalsuite")
    for old in list(ours.handlers):  # main() may run more than once in a process (tests, notebooks)
        ours.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s evalsuite: %(message)s", "%H:%M:%S"))
    ours.addHandler(handler)
    ours.setLevel(logging.DEBUG if verbose else logging.INFO)
    ours.propagate = False


COMMANDS = {"run": cmd_run, "ls": cmd_ls, "validate": cmd_validate, "prepare": cmd_prepare,
            "aggregate": cmd_aggregate, "check": cmd_check, "export": cmd_export, "compare": cmd_compare,
            "report": cmd_report}


def _leave_process_group() -> None:
    """Under torchrun, wait for every rank before exiting: a rank that finishes first would otherwise make the
    launcher stop rank 0 (the writer) in the middle of its writes."""
    if "torch.distributed" not in sys.modules:  # the light commands never import torch
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # --nproc-per-node hands the same command to its workers
    _setup_logging(args.verbose)
    try:
        code = COMMANDS[args.command](args)
        _leave_process_group()
        return code
    except EvalsuiteError as exc:
        _leave_process_group()
        if is_reporting_process():  # every rank exits with the code; one says why
            print(f"evalsuite: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("evalsuite: interrupted; finished tasks are saved", file=sys.stderr)
        return 130
    except OSError as exc:  # the environment, not a bug: a full disk, a read-only folder, a missing path
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"evalsuite: error: {where}{exc.strerror or exc} (files written before this are kept)", file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001 - an internal error: show the traceback, exit 1
        traceback.print_exc()
        print("evalsuite: internal error (a bug: please report it with the traceback above)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
