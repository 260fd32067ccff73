"""Exports other tools read, from the task CSVs alone (``evalsuite export --format json|model-index``).

- ``json``: one object per model run with every task (all metrics as fractions at full precision, the primary
  metric's bootstrap interval, the protocol each number was made under, sample and caption counts,
  ``count_status``, ``partial``, a ``flag`` when the count is not the protocol's) and every suite whose members
  the run holds (unweighted mean of the primary metrics, its members, ``count_status``, ``partial``).
- ``model-index``: the Hugging Face model card metadata (``model-index`` -> results -> task, dataset, metrics;
  spec: huggingface/hub-docs modelcard.md) with values in percent (2 decimals, the display leaderboard's numbers).
  A result whose sample count is not the protocol's, or a ``--limit`` subset, says so in its dataset name and in
  ``dataset.args`` (num_samples, expected_num_samples, count_status): a card never shows it as the full set.

The task types map to Hugging Face task ids (no dataset name appears here: a task's dataset ``type`` is the
Hugging Face repo of one of its sources when it has one, else the task's name).
"""

from __future__ import annotations

import json
from typing import Optional

from . import __version__
from .catalog import Catalog
from .report import ModelRun, count_flag, is_partial, suite_rows, suite_value
from .results import parse_protocol, suite_count_status

FORMAT_VERSION = 1
HF_SOURCE_KINDS = ("webdataset", "webdataset_captions", "hf_webdataset", "hf_captions")  # ``repo`` = a hub dataset id
# evalsuite task type -> Hugging Face task id and name
HF_TASKS = {
    "classification": ("zero-shot-image-classification", "Zero-Shot Image Classification"),
    "video_middle_frame": ("video-classification", "Zero-Shot Video Classification (one frame per clip)"),
    "zeroshot_retrieval": ("zero-shot-image-retrieval", "Zero-Shot Image-Text Retrieval"),
}
# evalsuite metric -> model-index metric type and name (recall@k ones are built in metric_type / metric_name)
METRICS = {
    "acc1": ("accuracy", "Top-1 accuracy"),
    "acc5": ("top_5_accuracy", "Top-5 accuracy"),
    "mean_per_class_recall": ("mean_per_class_recall", "Mean per-class recall"),
    "mean_acc1_acc5": ("mean_acc1_acc5", "Mean of top-1 and top-5 accuracy"),
    "mean_recall": ("mean_recall", "Mean recall (recall@k both ways, averaged)"),
    "mean_primary": ("mean_primary", "Mean over the members (each its primary metric unless the suite names another)"),
}


def metric_type(metric: str) -> str:
    return METRICS.get(metric, (metric, metric))[0]


def metric_name(metric: str) -> str:
    if metric in METRICS:
        return METRICS[metric][1]
    if metric.startswith("image_retrieval_recall@"):
        return f"Text-to-image recall@{metric.rsplit('@', 1)[1]}"
    if metric.startswith("text_retrieval_recall@"):
        return f"Image-to-text recall@{metric.rsplit('@', 1)[1]}"
    return metric


def run_suites(run: ModelRun, catalog: Catalog) -> list[str]:
    """The catalogue's suites whose members ``run`` all holds (``all`` only when it holds every task)."""
    return [s for s in sorted(catalog.suites) if suite_value(run, catalog, s) is not None]


# ---------------------------------------------------------------------------------------------------------------
# json


def _task_object(rows: list[dict]) -> dict:
    primary = next(r for r in rows if r["is_primary"])
    intervals = {r["metric"]: {"low": r["ci_low"], "high": r["ci_high"], "level": 0.95,
                               "method": "percentile bootstrap"}
                 for r in rows if r["ci_low"] is not None and r["ci_high"] is not None}
    return {
        "primary_metric": primary["metric"], "value": primary["value"],
        "metrics": {r["metric"]: r["value"] for r in rows},
        "intervals": intervals,
        "protocol": parse_protocol(primary["protocol"]), "protocol_text": primary["protocol"],
        "transform": primary["transform"],
        "num_samples": primary["num_samples"], "num_texts": primary["num_texts"],
        "num_failed": primary["num_failed"], "expected_num_samples": primary["expected_num_samples"],
        "expected_num_texts": primary["expected_num_texts"], "count_status": primary["count_status"],
        "partial": is_partial(primary), "flag": count_flag(primary) or None,
        "task_version": primary["task_version"], "task_fingerprint": primary["task_fingerprint"],
        "model_fingerprint": primary["model_fingerprint"], "evalsuite_version": primary["evalsuite_version"],
        "git_sha": primary["git_sha"], "finished_utc": primary["finished_utc"],
        "seconds": _number(primary["seconds"]), "images_per_second": _number(primary["images_per_second"]),
    }


def _number(text) -> Optional[float]:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if value == value and abs(value) != float("inf") else None  # JSON has no NaN


def results_json(runs: list[ModelRun], catalog: Catalog, params: dict[str, float]) -> dict:
    """The JSON export as a dict (``json.dumps`` it): ``models`` holds one object per run."""
    models = []
    for run in runs:
        first = next(iter(run.tasks.values()))[0]
        suites = {}
        for s in run_suites(run, catalog):
            members = catalog.suite_members(s)
            by_task = dict(zip(members, suite_rows(run, catalog, s)))
            suites[s] = {"metric": "mean_primary", "value": sum(r["value"] for r in by_task.values()) / len(members),
                         "members": members, "count_status": suite_count_status(members, by_task),
                         "partial": any(is_partial(r) for r in by_task.values()),
                         "flags": run.flags(members)}
        models.append({
            "model": run.model, "run": str(run.folder), "params_millions": params.get(run.model),
            "model_fingerprint": first["model_fingerprint"], "adapter": first["adapter"],
            "weights": first["weights"],
            "tasks": {t: _task_object(run.tasks[t]) for t in sorted(run.tasks)},
            "suites": suites,
            "flags": run.flags(sorted(run.tasks)),
        })
    return {"format": "evalsuite-results", "format_version": FORMAT_VERSION, "evalsuite_version": __version__,
            "values": "fractions in [0, 1]", "models": models}


def json_text(runs: list[ModelRun], catalog: Catalog, params: dict[str, float]) -> str:
    return json.dumps(results_json(runs, catalog, params), indent=2, allow_nan=False) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face model-index


def dataset_type(task: str, catalog: Catalog) -> str:
    spec = catalog.tasks.get(task)
    for source in (spec.sources if spec else []):
        if source.kind in HF_SOURCE_KINDS and source.args.get("repo"):
            return str(source.args["repo"])
    return task


def _task_type(task: str, rows: list[dict], catalog: Catalog) -> tuple[str, str]:
    spec = catalog.tasks.get(task)
    if spec is not None and spec.type in HF_TASKS:
        return HF_TASKS[spec.type]
    retrieval = any("retrieval" in r["metric"] for r in rows)  # a task of an include path not given
    return HF_TASKS["zeroshot_retrieval" if retrieval else "classification"]


def _count_note(row: dict) -> str:
    if is_partial(row):
        return f" [partial: {row['num_samples']} of {row['expected_num_samples'] or '?'} samples, --limit]"
    if row["count_status"] in ("fewer", "more"):
        return (f" [{row['num_samples']} samples, the protocol's set has {row['expected_num_samples']}:"
                f" count {row['count_status']}]")
    return ""


def _percent(value: float) -> float:
    return round(100 * value, 2)


def model_index(runs: list[ModelRun], catalog: Catalog) -> dict:
    """``{"model-index": [...]}``: one entry per run, a result per task (primary metric first) and per suite the
    run holds whose members share one task type."""
    entries = []
    for run in runs:
        results = []
        for task in sorted(run.tasks):
            rows = run.tasks[task]
            primary = next(r for r in rows if r["is_primary"])
            hf_type, hf_name = _task_type(task, rows, catalog)
            spec = catalog.tasks.get(task)
            dataset = {"name": ((spec.description if spec and spec.description else task) + _count_note(primary)),
                       "type": dataset_type(task, catalog)}
            args = {"evalsuite_task": task, "num_samples": primary["num_samples"],
                    "expected_num_samples": primary["expected_num_samples"],
                    "count_status": "limit" if is_partial(primary) else primary["count_status"],
                    "protocol": primary["protocol"]}
            if primary["num_texts"] is not None:
                args.update(num_texts=primary["num_texts"], expected_num_texts=primary["expected_num_texts"])
            dataset["args"] = args
            ordered = [primary] + [r for r in rows if not r["is_primary"]]
            results.append({"task": {"type": hf_type, "name": hf_name}, "dataset": dataset,
                            "metrics": [{"type": metric_type(r["metric"]), "value": _percent(r["value"]),
                                         "name": metric_name(r["metric"]), "verified": False} for r in ordered]})
        for suite in run_suites(run, catalog):
            members = catalog.suite_members(suite)
            types = {_task_type(m, run.tasks[m], catalog) for m in members}
            if len(types) != 1:
                continue
            (hf_type, hf_name), = types
            rows = suite_rows(run, catalog, suite)
            value = sum(r["value"] for r in rows) / len(rows)
            marks = " [some members not on the protocol's full sample sets]" if any(map(_count_note, rows)) else ""
            description = catalog.suites[suite].description or suite
            results.append({"task": {"type": hf_type, "name": hf_name},
                            "dataset": {"name": f"{description} (mean of {len(members)} tasks){marks}",
                                        "type": f"evalsuite-suite/{suite}",
                                        "args": {"evalsuite_suite": suite, "members": members,
                                                 "count_status": suite_count_status(members, {m: run.row(m)
                                                                                              for m in members}),
                                                 "partial": any(is_partial(r) for r in rows)}},
                            "metrics": [{"type": metric_type("mean_primary"), "value": _percent(value),
                                         "name": metric_name("mean_primary"), "verified": False}]})
        entries.append({"name": run.model, "results": results})
    return {"model-index": entries}


def model_index_text(runs: list[ModelRun], catalog: Catalog) -> str:
    import yaml

    header = ("# Hugging Face model card metadata written by evalsuite export --format model-index: paste it into the"
              " README's front matter (between the --- lines).\n")
    return header + yaml.safe_dump(model_index(runs, catalog), sort_keys=False, allow_unicode=True, width=120)
