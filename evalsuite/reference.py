"""Reference numbers (the EVA-CLIP papers) in the project's tidy format, and their conversion from the transcribed
``paper_numbers.yaml``.

One row per (model, report, task or suite, metric): value in percent, the tolerance a check allows (percentage
points), the protocol the number assumes (transform mode; video frame rule) and the citation. Several reports exist
for one model and they disagree (different evaluation runs): a check always names one report.
"""

from __future__ import annotations

import csv
import io
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
    citation: str

    @property
    def is_suite(self) -> bool:
        return self.task.startswith("suite:")


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
    return "shortest"  # EVA's eval transform, used by CLIP_benchmark runs (the EVA-CLIP draft, README tables)


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
                            rows.append(ReferenceRow(card, report, TASK_NAMES.get(dataset, dataset), metric,
                                                     float(value), TASK_TOLERANCE_PP, report_transform(report, section),
                                                     "vissl" if video else "", citation))
                elif section == "imagenet1k" and isinstance(block, (int, float)):  # a report's single IN-1K figure
                    rows.append(ReferenceRow(card, report, "imagenet1k", "acc1", float(block), TASK_TOLERANCE_PP,
                                             report_transform(report, ""), "", citation))
                elif section in SUITE_KEYS or section == "imagenet_variants_table6a":
                    value = block.get("avg6_top1", block.get("value")) if isinstance(block, dict) else block
                    if not isinstance(value, (int, float)):
                        continue  # e.g. "NOT REPORTED in this source"
                    suite = SUITE_KEYS.get(section, "imagenet_variants")
                    rows.append(ReferenceRow(card, report, f"suite:{suite}", "mean_primary", float(value),
                                             SUITE_TOLERANCE_PP,
                                             report_transform(report, "retrieval" if suite == "eva_retrieval" else ""),
                                             "vissl" if suite == "eva_video" else "", citation))
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


def load_reference(source: str | Path | None = None) -> list[ReferenceRow]:
    path = Path(source) if source else reference_path()
    if not path.is_file():
        raise UserInputError(f"reference file {path} not found")
    with path.open(newline="", encoding="utf-8") as f:
        try:
            return [ReferenceRow(**{**r, "value": float(r["value"]), "tolerance_pp": float(r["tolerance_pp"])})
                    for r in csv.DictReader(f)]
        except (TypeError, ValueError, KeyError) as exc:
            raise UserInputError(f"{path}: not a reference table ({exc}); columns:"
                                 f" {', '.join(f.name for f in fields(ReferenceRow))}") from None


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
