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
import io
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .errors import UserInputError
from .resources import PACKAGE_DIR

REFERENCE_FILE = "eva_clip_papers.csv"
# paper_numbers.yaml model labels -> evalsuite model cards
MODEL_CARDS = {
    "EVA01-CLIP-g/14": "EVA01-CLIP-g-14", "EVA01-CLIP-g/14+": "EVA01-CLIP-g-14-plus",
    "EVA02-CLIP-B/16": "EVA02-CLIP-B-16", "EVA02-CLIP-L/14": "EVA02-CLIP-L-14",
    "EVA02-CLIP-L/14+ (336px)": "EVA02-CLIP-L-14-336", "EVA02-CLIP-E/14": "EVA02-CLIP-E-14",
    "EVA02-CLIP-E/14+": "EVA02-CLIP-E-14-plus", "EVA-CLIP-8B": "EVA-CLIP-8B", "EVA-CLIP-8B-448": "EVA-CLIP-8B-448",
    "EVA-CLIP-18B": "EVA-CLIP-18B",
}
# CLIP_benchmark dataset keys (the YAML's) -> evalsuite task names, where they differ
TASK_NAMES = {"imagenet-a": "imagenet_a", "imagenet-r": "imagenet_r", "cars": "stanford_cars",
              "flowers": "flowers102", "pets": "oxford_pets"}
SUITE_KEYS = {"image_classification_avg27_top1": "eva_cls27", "video_avg4": "eva_video",
              "retrieval_MR": "eva_retrieval", "imagenet_variants_avg6_top1": "imagenet_variants"}
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

# Retrieval numbers made with EVA's eval transform (shortest side + centre crop), which evalsuite's retrieval tasks
# never run: they always squash (Task.fixed_resize), the protocol the 18B paper prescribes for retrieval (its §7:
# "In the case of zero-shot retrieval tasks, we specifically choose the transformation that involves direct
# resizing").
_CROP_RETRIEVAL = {
    # CLIP_benchmark hands every task, retrieval included, the model's one eval transform, and EVA's is Resize(short
    # side) + CenterCrop (baaivision/EVA EVA-01/clip/eva_clip.py, EVA-CLIP/rei/eva_clip/transform.py
    # image_transform(is_train=False)). Consistent with it: the same EVA01-CLIP-g/14 scores 68.5 COCO T2I R@5 there
    # and 69.1 squashed in the 18B paper's Table 3, the gap Table 14(c) measures between the two transforms.
    "evaclip_paper_draft_2303.15389": "retrieval made by CLIP_benchmark with EVA's eval transform (shortest side +"
                                      " centre crop; baaivision/EVA EVA-CLIP/rei/eva_clip/transform.py); evalsuite's"
                                      " retrieval always squashes (EVA-CLIP-18B paper, section 7)",
    "eva01_clip_benchmark_md": "retrieval made by CLIP_benchmark with EVA's eval transform (shortest side + centre"
                               " crop; baaivision/EVA EVA-01/clip/eva_clip.py); evalsuite's retrieval always squashes"
                               " (EVA-CLIP-18B paper, section 7)",
    "table14_resize_shortest_center_crop": "EVA-CLIP-18B paper Table 14(c) '*': retrieval with shortest side + centre"
                                           " crop, an ablation; evalsuite's retrieval always squashes (the paper's"
                                           " section 7 protocol, its table14_direct_resize_squash report)",
}


def not_reproducible(report: str, section: str) -> str:
    """Why evalsuite cannot reproduce a report's numbers of ``section``, or ''."""
    return _CROP_RETRIEVAL.get(report, "") if section == "retrieval" else ""


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


def convert_paper_numbers(data: dict) -> list[ReferenceRow]:
    """Every numeric value of paper_numbers.yaml that maps onto a task or suite. Derived numbers the papers did
    not print (``derived_*``) and free-text notes are left out."""
    rows: list[ReferenceRow] = []
    for label, model in data["models"].items():
        card = MODEL_CARDS[label]
        for report, content in (model.get("reports") or {}).items():
            citation = str(content.get("source", ""))
            for section, block in content.items():
                if section in ("image_classification", "video_classification_1_middle_frame", "retrieval"):
                    video = section.startswith("video")
                    for dataset, metrics in block.items():
                        for metric, value in metrics.items():
                            if isinstance(value, bool) or not isinstance(value, (int, float)):
                                continue  # a transcriber's remark, not a number
                            rows.append(_row(card, report, TASK_NAMES.get(dataset, dataset), metric, value,
                                             TASK_TOLERANCE_PP, section, video, citation))
                elif section == "imagenet1k" and isinstance(block, (int, float)):  # a report's single IN-1K figure
                    rows.append(_row(card, report, "imagenet1k", "acc1", block, TASK_TOLERANCE_PP, "", False,
                                     citation))
                elif section in SUITE_KEYS or section == "imagenet_variants_table6a":
                    value = block.get("avg6_top1", block.get("value")) if isinstance(block, dict) else block
                    if not isinstance(value, (int, float)):
                        continue  # e.g. "NOT REPORTED in this source"
                    suite = SUITE_KEYS.get(section, "imagenet_variants")
                    rows.append(_row(card, report, f"suite:{suite}", "mean_primary", value, SUITE_TOLERANCE_PP,
                                     "retrieval" if suite == "eva_retrieval" else "", suite == "eva_video", citation))
    return rows


def rows_to_csv(rows: list[ReferenceRow]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, [f.name for f in fields(ReferenceRow)], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**asdict(row), "value": repr(row.value), "tolerance_pp": repr(row.tolerance_pp)})
    return buf.getvalue()


def reference_path() -> Path:
    """The checked-in reference table: results/reference/ in a checkout, or the wheel's packaged copy."""
    for candidate in (PACKAGE_DIR.parent / "results" / "reference" / REFERENCE_FILE,
                      PACKAGE_DIR / "_data" / "results" / "reference" / REFERENCE_FILE):
        if candidate.is_file():
            return candidate
    raise UserInputError(f"reference table {REFERENCE_FILE} not found (results/reference/ in the checkout)")


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
    path = Path(source) if source else reference_path()
    if not path.is_file():
        raise UserInputError(f"reference file {path} not found")
    columns = [f.name for f in fields(ReferenceRow)]
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise UserInputError(f"{path}: not a reference table: missing columns {', '.join(missing)} (columns:"
                                 f" {', '.join(columns)}; see evalsuite/reference.py)")
        rows = []
        for line, raw in enumerate(reader, start=2):
            if None in raw or any(raw[c] is None for c in columns):
                raise UserInputError(f"{path}:{line}: wrong number of fields")
            try:
                rows.append(_parse_reference_row({c: raw[c] for c in columns}))
            except ValueError as exc:
                raise UserInputError(f"{path}:{line}: {exc}") from None
    return rows


def select_report(rows: list[ReferenceRow], report: str) -> list[ReferenceRow]:
    chosen = [r for r in rows if r.report == report]
    if not chosen:
        known = sorted({r.report for r in rows})
        raise UserInputError(f"--reference {report!r}: no such report; known: {', '.join(known)}")
    return chosen


def main(argv: list[str] | None = None) -> None:
    """python -m evalsuite.reference PAPER_NUMBERS_YAML OUT_CSV: regenerate the reference table."""
    import sys

    import yaml

    source, out = (argv if argv is not None else sys.argv[1:])
    rows = convert_paper_numbers(yaml.safe_load(Path(source).read_text(encoding="utf-8")))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(rows_to_csv(rows), encoding="utf-8")
    print(f"{len(rows)} reference rows -> {out}")


if __name__ == "__main__":
    main()
