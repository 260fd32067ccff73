"""Reference numbers (the EVA-CLIP papers) in the project's tidy format, and their conversion from the transcribed
``paper_numbers.yaml``.

The reference CSV (``results/reference/eva_clip_papers.csv``; ``--reference-file`` takes another in this format)
has one row per (model, report, task or suite, metric) and these columns, in this order:

- ``model``: the evalsuite model card; ``report``: one evaluation run of one source (``check --reference`` names it);
- ``task``: a task name, or ``suite:<name>`` for an average; ``metric``: the task's metric, ``mean_primary`` for
  suites; ``value``: percent; ``tolerance_pp``: what ``check`` allows, in percentage points;
- the protocol the number assumes, which ``check`` requires of a result (the result's ``protocol`` cell):
  ``transform`` (shortest | squash | best-of-both), ``frame_rule`` (video rows: vissl; empty otherwise),
  ``decoder`` (pil | tensor | cuda; empty: not compared) and ``precision`` (fp32 | amp_fp16 | amp_bf16 | fp16 |
  bf16; empty: not compared);
- ``not_reproducible``: empty, or why evalsuite cannot run this number's protocol (``check`` then skips the row
  and says why instead of refusing results with advice that cannot be followed);
- ``citation``: the source.

Several reports exist for one model and they disagree (different evaluation runs): a check always names one report.
"""

from __future__ import annotations

import csv
import functools
import io
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional

from .errors import UserInputError
from .resources import PACKAGE_DIR
from .yamlio import load_yaml

REFERENCE_FILE = "eva_clip_papers.csv"  # the papers' table; every *.csv beside it is a reference table too
LAYOUT_FILE = "layout.yaml"  # report layout and the sources' name maps (no suite, task or card name in Python)
TASK_TOLERANCE_PP, SUITE_TOLERANCE_PP = 0.5, 0.3


@dataclass(frozen=True)
class ReferenceRow:
    model: str  # evalsuite model card name
    report: str  # report id from paper_numbers.yaml (one evaluation run of one source)
    task: str  # task name, or suite:<name> for an average
    metric: str  # task metric, or mean_primary for suites
    value: float  # percent
    tolerance_pp: float
    transform: str  # protocol: shortest | squash | best-of-both
    frame_rule: str  # protocol for video rows (vissl), empty otherwise
    decoder: str  # protocol: the pixel decoder (pil for the papers); empty: not compared
    precision: str  # protocol: fp32 | amp_fp16 | amp_bf16 | fp16 | bf16; empty: not compared
    not_reproducible: str  # empty, or why evalsuite cannot run the protocol this number was made under
    citation: str

    @property
    def is_suite(self) -> bool:
        return self.task.startswith("suite:")


# What every paper report assumes besides its transform. Pixels: open_clip's PIL transform is what CLIP_benchmark ran
# (the EVA READMEs: "We use CLIP-Benchmark to evaluate"), so the exact PIL decoder. Precision: CLIP_benchmark's
# --amp (its default) and the EVA READMEs' examples (torch.cuda.amp.autocast) keep fp32 weights under fp16 autocast;
# no EVA source states another evaluation precision (../shared/PROTOCOL.md, "Precision").
PAPER_DECODER, PAPER_PRECISION = "pil", "amp_fp16"

def not_reproducible(report: str, section: str) -> str:
    """Why evalsuite cannot reproduce a report's numbers of ``section``, or '' (layout.yaml
    ``paper_numbers.retrieval_not_reproducible``: retrieval made with EVA's centre-crop transform)."""
    reasons = load_layout()["paper_numbers"]["retrieval_not_reproducible"]
    return reasons.get(report, "") if section == "retrieval" else ""


def report_transform(report: str, section: str) -> str:
    """The image transform a report's numbers were made with."""
    if section == "retrieval" and report.startswith("evaclip18b"):
        return "squash"  # the 18B paper's headline retrieval numbers use direct resize (its Table 14)
    if report == "table14_direct_resize_squash":
        return "squash"
    if report == "table14_resize_shortest_center_crop":
        return "shortest"
    if report.startswith("evaclip18b_paper"):
        return "best-of-both"  # its tables keep the per-dataset max of the two transforms (Table 14)
    # EVA's eval transform, which CLIP_benchmark ran for every task (the EVA-CLIP draft, README tables); its
    # retrieval rows are marked not_reproducible (_CROP_RETRIEVAL)
    return "shortest"


def _row(card: str, report: str, task: str, metric: str, value: float, tolerance: float, section: str,
         video: bool, citation: str) -> ReferenceRow:
    return ReferenceRow(card, report, task, metric, float(value), tolerance, report_transform(report, section),
                        "vissl" if video else "", PAPER_DECODER, PAPER_PRECISION, not_reproducible(report, section),
                        citation)


def convert_paper_numbers(data: dict, layout: Optional[dict] = None) -> list[ReferenceRow]:
    """Every numeric value of paper_numbers.yaml that maps onto a task or suite. Derived numbers the papers did
    not print (``derived_*``) and free-text notes are left out."""
    names = (layout or load_layout())["paper_numbers"]
    cards, task_names, suite_keys = names["model_cards"], names["task_names"], names["suite_keys"]
    rows: list[ReferenceRow] = []
    for label, model in data["models"].items():
        card = cards[label]
        for report, content in (model.get("reports") or {}).items():
            citation = str(content.get("source", ""))
            for section, block in content.items():
                if section in ("image_classification", "video_classification_1_middle_frame", "retrieval"):
                    video = section.startswith("video")
                    for dataset, metrics in block.items():
                        for metric, value in metrics.items():
                            if isinstance(value, bool) or not isinstance(value, (int, float)):
                                continue  # a transcriber's remark, not a number
                            rows.append(_row(card, report, task_names.get(dataset, dataset), metric, value,
                                             TASK_TOLERANCE_PP, section, video, citation))
                elif section in names["single_figures"] and isinstance(block, (int, float)):  # e.g. one IN-1K
                    task, metric = names["single_figures"][section]
                    rows.append(_row(card, report, task, metric, block, TASK_TOLERANCE_PP, "", False, citation))
                elif section in suite_keys:
                    value = block.get("avg6_top1", block.get("value")) if isinstance(block, dict) else block
                    if not isinstance(value, (int, float)):
                        continue  # e.g. "NOT REPORTED in this source"
                    suite = suite_keys[section]
                    rows.append(_row(card, report, f"suite:{suite}", "mean_primary", value, SUITE_TOLERANCE_PP,
                                     "retrieval" if suite == names["retrieval_suite"] else "",
                                     suite == names["video_suite"], citation))
    return rows


# open_clip's own measurements follow DataComp's evaluate.py: fp32 (amp=False), the model's open_clip eval
# transform, open_clip's PIL pipeline
OPENCLIP_DECODER, OPENCLIP_PRECISION = "pil", "fp32"


def convert_openclip_numbers(data: dict, layout: Optional[dict] = None,
                             transforms: Optional[dict[str, str]] = None) -> list[ReferenceRow]:
    """Every value of openclip_measured_numbers.yaml that maps onto a task (layout.yaml ``openclip``), in percent.
    ``transforms``: card -> its resize mode (default: the model cards' ``preprocess.resize_mode``, which is what
    open_clip's preprocess for the model does). A column the layout neither maps nor leaves out is an error, so a
    new column cannot be dropped silently."""
    names = (layout or load_layout())["openclip"]
    if transforms is None:
        from .models.card import all_cards

        transforms = {n: c.preprocess.resize_mode for n, c in all_cards().items()}
    report, skip = names["report"], set(names["left_out"]) | set(names["not_values"])
    citation = f"{data['_meta']['source']}; DataComp protocol (mlfoundations/datacomp evaluate.py, tasklist.yml)," \
               " CLIP_benchmark wds copies"
    rows: list[ReferenceRow] = []
    for label, model in data["models"].items():
        card = names["model_cards"][label]
        columns = [(k, v, names["datasets"]) for k, v in model.items() if k != "retrieval"]
        columns += [(k, v, names["retrieval"]) for k, v in (model.get("retrieval") or {}).items()]
        for column, value, mapping in columns:
            if column in skip:
                continue
            if column not in mapping:
                raise ValueError(f"open_clip column {column!r} ({label}) is neither mapped nor left out in"
                                 f" {LAYOUT_FILE}")
            task, metric = mapping[column]
            retrieval = mapping is names["retrieval"]
            rows.append(ReferenceRow(card, report, task, metric, round(100 * float(value), 6), TASK_TOLERANCE_PP,
                                     transforms[card], "", OPENCLIP_DECODER, OPENCLIP_PRECISION,
                                     names["retrieval_not_reproducible"] if retrieval else "", citation))
    return rows


def rows_to_csv(rows: list[ReferenceRow]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, [f.name for f in fields(ReferenceRow)], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**asdict(row), "value": repr(row.value), "tolerance_pp": repr(row.tolerance_pp)})
    return buf.getvalue()


def reference_dir() -> Path:
    """results/reference/ in a checkout, or the wheel's packaged copy."""
    for candidate in (PACKAGE_DIR.parent / "results" / "reference", PACKAGE_DIR / "_data" / "results" / "reference"):
        if (candidate / REFERENCE_FILE).is_file():
            return candidate
    raise UserInputError(f"reference table {REFERENCE_FILE} not found (results/reference/ in the checkout)")


def reference_path() -> Path:
    """The papers' reference table."""
    return reference_dir() / REFERENCE_FILE


def reference_paths() -> list[Path]:
    """Every checked-in reference table (one family of reports each: the papers', open_clip's measurements)."""
    return sorted(reference_dir().glob("*.csv"))


@functools.lru_cache(maxsize=1)
def load_layout() -> dict:
    """results/reference/layout.yaml: the report layout and the sources' name maps (shared: do not modify)."""
    return load_yaml(reference_dir() / LAYOUT_FILE)


TRANSFORMS = ("shortest", "squash", "best-of-both")
DECODERS = ("pil", "tensor", "cuda")
PRECISIONS = ("fp32", "amp_fp16", "amp_bf16", "fp16", "bf16")


def _parse_reference_row(raw: dict) -> ReferenceRow:
    row = {**raw, "value": float(raw["value"]), "tolerance_pp": float(raw["tolerance_pp"])}
    if not (math.isfinite(row["value"]) and math.isfinite(row["tolerance_pp"]) and row["tolerance_pp"] >= 0):
        raise ValueError(f"value {raw['value']!r} / tolerance_pp {raw['tolerance_pp']!r} must be finite, the"
                         " tolerance >= 0")
    for column, allowed, empty_ok in (("transform", TRANSFORMS, False), ("decoder", DECODERS, True),
                                      ("precision", PRECISIONS, True)):
        if not (row[column] in allowed or (empty_ok and row[column] == "")):
            raise ValueError(f"column {column!r}: {row[column]!r} is not one of {', '.join(allowed)}")
    return ReferenceRow(**row)


def load_reference(source: str | Path | None = None) -> list[ReferenceRow]:
    """``source``'s rows, or by default every checked-in table's (a report id may occur in one file only)."""
    if not source:
        rows, seen = [], {}
        for path in reference_paths():
            table = _load_table(path)
            for report in {r.report for r in table}:
                if report in seen:
                    raise UserInputError(f"{path}: report {report!r} is also in {seen[report]}")
                seen[report] = path
            rows += table
        return rows
    return _load_table(Path(source))


def _load_table(path: Path) -> list[ReferenceRow]:
    if not path.is_file():
        raise UserInputError(f"reference file {path} not found")
    columns = [f.name for f in fields(ReferenceRow)]
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header, raws = reader.fieldnames or [], list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserInputError(f"{path}: cannot be read as a reference table ({type(exc).__name__}: {exc})") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise UserInputError(f"{path}: not a reference table: missing columns {', '.join(missing)} (columns:"
                             f" {', '.join(columns)}; see evalsuite/reference.py)")
    rows, first_line = [], {}
    for line, raw in enumerate(raws, start=2):
        if None in raw or any(raw[c] is None for c in columns):
            raise UserInputError(f"{path}:{line}: wrong number of fields")
        try:
            row = _parse_reference_row({c: raw[c] for c in columns})
        except ValueError as exc:
            raise UserInputError(f"{path}:{line}: {exc}") from None
        key = (row.model, row.report, row.task, row.metric)
        if key in first_line:  # two numbers for one cell: check would pass one and breach the other
            raise UserInputError(f"{path}:{line}: {' '.join(key)} is also on line {first_line[key]}; keep one")
        first_line[key] = line
        rows.append(row)
    return rows


def select_report(rows: list[ReferenceRow], report: str) -> list[ReferenceRow]:
    chosen = [r for r in rows if r.report == report]
    if not chosen:
        known = sorted({r.report for r in rows})
        raise UserInputError(f"--reference {report!r}: no such report; known: {', '.join(known)}")
    return chosen


def main(argv: list[str] | None = None) -> None:
    """python -m evalsuite.reference [--openclip] SOURCE_YAML OUT_CSV: regenerate a reference table, the papers'
    from paper_numbers.yaml, or with --openclip open_clip's from openclip_measured_numbers.yaml."""
    import sys

    import yaml

    args = list(argv if argv is not None else sys.argv[1:])
    convert = convert_openclip_numbers if "--openclip" in args else convert_paper_numbers
    source, out = [a for a in args if a != "--openclip"]
    rows = convert(yaml.safe_load(Path(source).read_text(encoding="utf-8")))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(rows_to_csv(rows), encoding="utf-8")
    print(f"{len(rows)} reference rows -> {out}")


if __name__ == "__main__":
    main()
