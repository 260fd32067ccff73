"""Paired comparison of two runs on the same samples: per task the difference of the primary metric (B - A) with a
paired bootstrap interval and p-value, and the suite means likewise (``evalsuite compare RUN_A RUN_B``).

Everything is computed from the two runs' ``<task>.predictions.csv`` files (evalsuite/bootstrap.py writes them):

- **Pairing.** Samples are matched by name (classification: ``sample``; retrieval: the image, with its captions in
  query order). Runs scored on different samples (another ``--limit``, a missing image, another copy of the data,
  other labels or caption counts) are refused with the task and how the sets differ: a difference on other
  samples is no paired difference. The primary metric recomputed from each predictions file must equal the
  task CSV's value, so a predictions file of another run is never compared.
- **Resampling.** Each resample draws the task's samples with replacement and applies the same draw to A and B:
  classification resamples the per-sample correctness vectors jointly (with the labels, for per-class recall);
  retrieval resamples images with their captions, as ``bootstrap.retrieval_interval`` does. A draw is made as
  the counts of the distinct per-sample records (the same distribution as drawing indices, at a cost that does
  not grow with the number of samples: see "statistics" below). A task's resamples are seeded from ``--seed`` and
  the task's name, so tasks are resampled independently and adding a task changes no other task's numbers.
- **Suites.** Per resample, the suite difference is the mean of its members' differences (each member resampled
  within itself): the bootstrap distribution of the difference of the two suite means.
- **Interval and p-value.** The interval is the percentile interval of the resampled differences (95%). The
  p-value is two-sided, read off the same distribution: twice the smaller share of resampled differences on
  either side of 0 (each count + 1, over iterations + 1; at most 1). The interval excludes 0 about when p < 0.05.
- **Regression rule** (``--fail-if-worse PP``): B is significantly worse than A on a task or suite when its
  difference is below -PP percentage points *and* the 95% interval lies entirely below 0. PP is the drop you
  accept (noise you do not care about); the interval guards against flagging resampling noise. A task A has and
  B lacks fails the gate too: a candidate whose task failed must not pass on the tasks that finished.
"""

from __future__ import annotations

import csv
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch

from .bootstrap import BootstrapConfig, _interval
from .errors import UserInputError
from .metrics import AVERAGE, CLASSIFICATION, MEAN, METRICS, RECALL_DIRECTIONS, RETRIEVAL, Metric, recall_ks

DEFAULT_ITERATIONS = 10_000
CHUNK = 500  # resamples drawn at once (memory: CHUNK x distinct records)
CONSISTENCY = 1e-9  # recomputed primary metric vs the task CSV's value (fractions)


class SampleSetMismatch(UserInputError):
    """The two runs of a task were scored on different samples: no paired comparison is possible."""


# ---------------------------------------------------------------------------------------------------------------
# predictions files


@dataclass(frozen=True)
class ClassificationPredictions:
    keys: list[tuple[str, int]]  # (sample name, occurrence) in file order
    labels: torch.Tensor
    correct1: torch.Tensor  # float64 0/1
    correct5: torch.Tensor


@dataclass(frozen=True)
class RetrievalPredictions:
    keys: list[tuple[str, int]]  # (image name, occurrence) in gallery order
    i2t: torch.Tensor  # per image: rank of its best caption (image -> text)
    t2i: list[list[int]]  # per image: the ranks of its captions' queries (text -> image), in query order


def _key_list(names: list[str]) -> list[tuple[str, int]]:
    seen: Counter = Counter()
    keys = []
    for name in names:
        keys.append((name, seen[name]))
        seen[name] += 1
    return keys


def read_predictions(path: Path):
    """A ``<task>.predictions.csv`` as ClassificationPredictions or RetrievalPredictions (by its header)."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            rows = list(reader)
    except FileNotFoundError:
        raise UserInputError(f"{path}: no per-sample predictions file (compare needs <task>.predictions.csv, written"
                             " by every run since per-sample predictions exist; re-run the task)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserInputError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None
    try:
        if header[:2] == ["sample", "label"] and {"correct1", "correct5"} <= set(header):
            return ClassificationPredictions(
                _key_list([r["sample"] for r in rows]), torch.tensor([int(r["label"]) for r in rows]),
                torch.tensor([float(int(r["correct1"])) for r in rows], dtype=torch.double),
                torch.tensor([float(int(r["correct5"])) for r in rows], dtype=torch.double))
        if header == ["direction", "query", "image", "rank"]:
            return _retrieval(rows)
    except (TypeError, ValueError, KeyError) as exc:
        raise UserInputError(f"{path}: damaged predictions file ({type(exc).__name__}: {exc}; re-run the task)"
                             ) from None
    raise UserInputError(f"{path}: not an evalsuite predictions file (header {header})")


def _retrieval(rows: list[dict]) -> RetrievalPredictions:
    images = [r for r in rows if r["direction"] == "image_to_text"]
    texts = [r for r in rows if r["direction"] == "text_to_image"]
    if len(images) + len(texts) != len(rows):
        raise ValueError("a direction other than image_to_text / text_to_image")
    if [int(r["query"]) for r in images] != list(range(len(images))):
        raise ValueError("image queries out of order")
    keys = _key_list([r["image"] for r in images])
    first = {}
    for i, (name, occurrence) in enumerate(keys):
        if occurrence == 0:
            first[name] = i
    if len(first) != len(keys):
        raise ValueError("an image name occurs twice in the gallery")
    t2i: list[list[int]] = [[] for _ in images]
    for r in sorted(texts, key=lambda r: int(r["query"])):
        t2i[first[r["image"]]].append(int(r["rank"]))
    return RetrievalPredictions(keys, torch.tensor([int(r["rank"]) for r in images]), t2i)


# ---------------------------------------------------------------------------------------------------------------
# pairing


def _examples(keys, limit: int = 3) -> str:
    shown = [repr(name if occurrence == 0 else f"{name} (#{occurrence + 1})") for name, occurrence in keys[:limit]]
    return ", ".join(shown) + (", ..." if len(keys) > limit else "")


def _align(task: str, what: str, keys_a: list, keys_b: list) -> list[int]:
    """For each of A's samples, its position in B; SampleSetMismatch naming how the sets differ."""
    set_a, set_b = set(keys_a), set(keys_b)
    if set_a != set_b:
        only_a, only_b = [k for k in keys_a if k not in set_b], [k for k in keys_b if k not in set_a]
        parts = [f"{len(keys_a)} {what} in A, {len(keys_b)} in B"]
        if only_a:
            parts.append(f"{len(only_a)} only in A ({_examples(only_a)})")
        if only_b:
            parts.append(f"{len(only_b)} only in B ({_examples(only_b)})")
        raise SampleSetMismatch(f"task {task}: the runs were scored on different {what} ({'; '.join(parts)}): a"
                                " paired comparison needs the same sample set (same data, same --limit, no"
                                " unreadable samples in one run only)")
    position = {k: i for i, k in enumerate(keys_b)}
    return [position[k] for k in keys_a]


def pair_classification(task: str, a: ClassificationPredictions, b: ClassificationPredictions):
    """(labels, (correct1, correct5) of A, (correct1, correct5) of B), B reordered to A's samples."""
    order = torch.tensor(_align(task, "samples", a.keys, b.keys), dtype=torch.long)
    labels_b = b.labels[order]
    differ = (labels_b != a.labels).nonzero().flatten().tolist()
    if differ:
        i = differ[0]
        raise SampleSetMismatch(f"task {task}: {len(differ)} samples carry other labels in B than in A (e.g."
                                f" {a.keys[i][0]!r}: {int(a.labels[i])} in A, {int(labels_b[i])} in B): another"
                                " class mapping or data, not the same sample set")
    return a.labels, (a.correct1, a.correct5), (b.correct1[order], b.correct5[order])


@dataclass(frozen=True)
class RetrievalArrays:
    """Per image of the gallery: its caption count, its captions' text->image hits and its image->text hit at
    each k (what a resample of images, captions going along, needs)."""

    captions: torch.Tensor
    t2i_hits: dict[int, torch.Tensor]
    i2t_hits: dict[int, torch.Tensor]


def retrieval_arrays(p: RetrievalPredictions, ks: list[int], order: Optional[list[int]] = None) -> RetrievalArrays:
    index = order if order is not None else list(range(len(p.keys)))
    captions = torch.tensor([len(p.t2i[i]) for i in index], dtype=torch.double)
    t2i = {k: torch.tensor([sum(r < k for r in p.t2i[i]) for i in index], dtype=torch.double) for k in ks}
    i2t = {k: (p.i2t[index] < k).double() for k in ks}
    return RetrievalArrays(captions, t2i, i2t)


def pair_retrieval(task: str, a: RetrievalPredictions, b: RetrievalPredictions, ks: list[int]):
    """(A's arrays, B's arrays) on A's gallery order; SampleSetMismatch when images or caption counts differ."""
    order = _align(task, "images", a.keys, b.keys)
    arrays_a, arrays_b = retrieval_arrays(a, ks), retrieval_arrays(b, ks, order)
    differ = (arrays_a.captions != arrays_b.captions).nonzero().flatten().tolist()
    if differ:
        i = differ[0]
        raise SampleSetMismatch(f"task {task}: {len(differ)} images have another number of captions in B than in A"
                                f" (e.g. {a.keys[i][0]!r}: {int(arrays_a.captions[i])} in A,"
                                f" {int(arrays_b.captions[i])} in B): not the same caption set")
    return arrays_a, arrays_b


# ---------------------------------------------------------------------------------------------------------------
# statistics (pure: tensors in, tensors out)
#
# A resample of n samples with replacement is a vector of counts, how often each sample was drawn:
# Multinomial(n, uniform). A statistic depends on the samples only through their records (for classification a
# sample's label and both runs' correctness, for retrieval an image's caption count and both runs' hits), so
# samples with equal records are interchangeable: the counts of the m distinct records are Multinomial(n, their
# shares). Drawing those counts is the same bootstrap as drawing indices (the same distribution), at a cost of
# m, not n, per resample: acc1 has at most 4 distinct records (correct in A, in B), whatever n.


def distinct_records(records: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(m distinct rows of the (n, f) records, how many samples each stands for)."""
    unique, counts = torch.unique(records, dim=0, return_counts=True)
    return unique, counts.double()


def resampled_counts(counts: torch.Tensor, config: BootstrapConfig, chunk: int = CHUNK):
    """Seeded bootstrap resamples as (rows, m) counts of each distinct record, ``config.iterations`` in all."""
    import numpy as np

    rng = np.random.default_rng(config.seed)
    n = int(counts.sum())
    shares = (counts / counts.sum()).numpy()
    done = 0
    while done < config.iterations:
        size = min(chunk, config.iterations - done)
        yield torch.from_numpy(rng.multinomial(n, shares, size=size)).double()
        done += size


def _mean(column: int):
    return lambda w, u: w @ u[:, column] / w.sum(dim=1)


def _statistic(metric: Metric, names: Sequence[str], column, size_column: int, label_column: int):
    """(counts (R, m), records (m, f)) -> the metric on each resample, from its registry declaration: ``column``
    maps a (value kind, k) to its records column, ``size_column`` holds a unit's query count (grouped values) and
    ``label_column`` its class (per-class means)."""
    if metric.aggregate == AVERAGE:
        parts = [_statistic(p, names, column, size_column, label_column) for p in metric.parts_of(names)]
        return lambda w, u: torch.stack([p(w, u) for p in parts]).mean(dim=0)
    c = column(metric.values)
    if metric.aggregate == MEAN and metric.grouped:  # queries go with their unit: ratio of the units' sums
        return lambda w, u: w @ u[:, c] / (w @ u[:, size_column])
    if metric.aggregate == MEAN:
        return _mean(c)

    def per_class(w, u):  # over the classes present in the resample, as bootstrap.py
        # distinct_records sorts the records by label (the first column): each class is one run of columns,
        # so its totals are differences of running sums at the runs' ends (exact: whole numbers in float64)
        labels = u[:, label_column]
        ends = torch.cat([(labels[1:] != labels[:-1]).nonzero().flatten(), torch.tensor([len(labels) - 1])])

        def class_sums(x):
            at_ends = x.cumsum(dim=1)[:, ends]
            return torch.cat([at_ends[:, :1], at_ends[:, 1:] - at_ends[:, :-1]], dim=1)

        totals, hits = class_sums(w), class_sums(w * u[:, c])
        present = totals > 0
        return (hits / totals.clamp(min=1)).sum(dim=1) / present.sum(dim=1)
    return per_class


def _registered(metric: str, family) -> Metric:
    found = METRICS.find(metric)
    if found is None or found.family is not family:
        raise UserInputError(f"compare: no paired bootstrap for {family.name} metric {metric!r}")
    return found


def classification_statistic(metric: str, side: int):
    """(counts (R, m), records (m, 5)) -> the metric of run ``side`` (0: A, 1: B) on each resample. Records:
    label, A's correct1, A's correct5, B's correct1, B's correct5 (see classification_records)."""
    columns = {("correct", 1): 1 + 2 * side, ("correct", 5): 2 + 2 * side}

    def column(values):
        if values not in columns:
            raise UserInputError(f"compare: predictions files hold correct@1 and correct@5, not {metric!r}")
        return columns[values]
    return _statistic(_registered(metric, CLASSIFICATION), (metric,), column, size_column=-1, label_column=0)


def classification_records(metric: str, labels: torch.Tensor, a: tuple, b: tuple) -> torch.Tensor:
    """(n, 5): label, A's correct1 and correct5, B's correct1 and correct5 (paired samples). The label column is
    0 unless the metric needs it (per-class recall), so that accuracies have at most 16 distinct records."""
    needs_labels = _registered(metric, CLASSIFICATION).needs_labels((metric,))
    label_column = labels.double() if needs_labels else torch.zeros(len(labels), dtype=torch.double)
    return torch.stack([label_column, a[0], a[1], b[0], b[1]], dim=1)


def retrieval_records(a: RetrievalArrays, b: RetrievalArrays, ks: list[int]) -> torch.Tensor:
    """(n images, 1 + 4 len(ks)): captions, then per run its text->image hits at each k, image->text hits at each k."""
    columns = [a.captions]
    for arrays in (a, b):
        columns += [arrays.t2i_hits[k] for k in ks] + [arrays.i2t_hits[k] for k in ks]
    return torch.stack(columns, dim=1)


def retrieval_statistic(metric: str, side: int, ks: list[int]):
    """(counts (R, m), records (m, f)) -> the metric of run ``side`` on each resample of images (captions go with
    their image: text->image recall is over the resampled images' captions)."""
    base = 1 + 2 * len(ks) * side
    offset = {"t2i_hit": 0, "i2t_hit": len(ks)}

    def column(values):
        kind, k = values
        if k not in ks:
            raise UserInputError(f"compare: no paired bootstrap for retrieval metric {metric!r} (recall@k at"
                                 f" {ks} only)")
        return base + offset[kind] + ks.index(k)
    names = [f"{d}_retrieval_recall@{k}" for d in RECALL_DIRECTIONS for k in ks] + ["mean_recall"]
    return _statistic(_registered(metric, RETRIEVAL), names, column, size_column=0, label_column=-1)


def task_seed(seed: int, task: str) -> int:
    """The generator seed of one task's resamples: from --seed and the task's name (tasks independent)."""
    return (seed * 1_000_003 + zlib.crc32(task.encode("utf-8"))) % 2**63


def paired_bootstrap(records: torch.Tensor, statistic_a, statistic_b, config: BootstrapConfig
                     ) -> tuple[float, float, torch.Tensor]:
    """(A's value, B's value, resampled differences B - A): each resample draws the same samples for A and B."""
    unique, counts = distinct_records(records)
    value_a, value_b = float(statistic_a(counts[None], unique)[0]), float(statistic_b(counts[None], unique)[0])
    diffs = [statistic_b(w, unique) - statistic_a(w, unique) for w in resampled_counts(counts, config)]
    return value_a, value_b, torch.cat(diffs) if diffs else torch.zeros(0, dtype=torch.double)


def p_value(diffs: torch.Tensor) -> float:
    """Two-sided: twice the smaller share of resampled differences at or beyond 0 on either side (+1 each)."""
    below, above = int((diffs <= 0).sum()), int((diffs >= 0).sum())
    return min(1.0, 2 * (1 + min(below, above)) / (len(diffs) + 1))


# ---------------------------------------------------------------------------------------------------------------
# results


@dataclass
class Difference:
    """One line of the comparison (fractions; ``name`` a task or ``suite:<name>``)."""

    name: str
    metric: str
    num_samples: int
    value_a: float
    value_b: float
    delta: float  # B - A
    ci_low: float
    ci_high: float
    p_value: float
    diffs: torch.Tensor = field(repr=False)  # the resampled differences (suites average them)
    members: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)  # counts or protocols that differ between the runs

    def significantly_worse(self, pp: float) -> bool:
        """B below A by more than ``pp`` percentage points, with the 95% interval entirely below 0."""
        return 100 * self.delta < -pp and self.ci_high < 0


def summarize(name: str, metric: str, num_samples: int, value_a: float, value_b: float, diffs: torch.Tensor,
              level: float, members: tuple = (), notes: Optional[list] = None) -> Difference:
    low, high = _interval(diffs, level)
    return Difference(name, metric, num_samples, value_a, value_b, value_b - value_a, low, high, p_value(diffs),
                      diffs, tuple(members), list(notes or []))


def suite_difference(suite: str, members: list[Difference], level: float) -> Difference:
    """The difference of the two suite means: per resample the mean of the members' differences."""
    diffs = torch.stack([m.diffs for m in members]).mean(dim=0)
    value_a = sum(m.value_a for m in members) / len(members)
    value_b = sum(m.value_b for m in members) / len(members)
    return summarize(f"suite:{suite}", "mean_primary", sum(m.num_samples for m in members), value_a, value_b, diffs,
                     level, tuple(m.name for m in members))


def _ks(rows: list[dict]) -> list[int]:
    return recall_ks(r["metric"] for r in rows)


def _check_value(task: str, side: str, folder: Path, recomputed: float, row: dict) -> None:
    if abs(recomputed - row["value"]) > CONSISTENCY:
        raise UserInputError(f"task {task}: {folder / (task + '.predictions.csv')} gives {row['metric']} ="
                             f" {recomputed!r}, its task CSV says {row['value']!r} (run {side}): the predictions"
                             " file is not this result's (edited or copied); re-run the task")


def _notes(row_a: dict, row_b: dict) -> list[str]:
    notes = []
    if row_a["protocol"] != row_b["protocol"]:
        notes.append(f"protocol A {row_a['protocol']} | B {row_b['protocol']}")
    for column in ("count_status", "partial"):
        if row_a[column] != row_b[column]:
            notes.append(f"{column} A {row_a[column]} | B {row_b[column]}")
    if row_a["task_version"] != row_b["task_version"]:
        notes.append(f"task_version A {row_a['task_version']} | B {row_b['task_version']}")
    return notes


def _metric_row(task: str, side: str, rows: list[dict], metric: str) -> dict:
    row = next((r for r in rows if r["metric"] == metric), None)
    if row is None:
        raise UserInputError(f"task {task}: run {side} has no {metric} row (its metrics:"
                             f" {', '.join(r['metric'] for r in rows)})")
    return row


def compare_task(task: str, folder_a: Path, rows_a: list[dict], folder_b: Path, rows_b: list[dict],
                 config: BootstrapConfig, metric: Optional[str] = None) -> Difference:
    """One task's paired difference from the two runs' predictions (task CSV rows as results.read_task_csv), in
    ``metric`` (default: the primary metric, which must be the same in both)."""
    if metric is None:
        row_a = next(r for r in rows_a if r["is_primary"])
        row_b = next(r for r in rows_b if r["is_primary"])
        metric = row_a["metric"]
        if row_b["metric"] != metric:
            raise UserInputError(f"task {task}: the primary metric is {metric} in A and {row_b['metric']} in B")
    else:
        row_a, row_b = _metric_row(task, "A", rows_a, metric), _metric_row(task, "B", rows_b, metric)
    pred_a = read_predictions(folder_a / f"{task}.predictions.csv")
    pred_b = read_predictions(folder_b / f"{task}.predictions.csv")
    if type(pred_a) is not type(pred_b):
        raise UserInputError(f"task {task}: one run's predictions are classification, the other's retrieval")
    if isinstance(pred_a, ClassificationPredictions):
        labels, a, b = pair_classification(task, pred_a, pred_b)
        records = classification_records(metric, labels, a, b)
        stat_a, stat_b = classification_statistic(metric, 0), classification_statistic(metric, 1)
    else:
        ks = _ks(rows_a)
        if not ks:
            raise UserInputError(f"task {task}: no recall@k metric in its CSV to compare")
        arrays_a, arrays_b = pair_retrieval(task, pred_a, pred_b, ks)
        records = retrieval_records(arrays_a, arrays_b, ks)
        stat_a, stat_b = retrieval_statistic(metric, 0, ks), retrieval_statistic(metric, 1, ks)
    task_config = BootstrapConfig(config.iterations, task_seed(config.seed, task), config.level)
    value_a, value_b, diffs = paired_bootstrap(records, stat_a, stat_b, task_config)
    _check_value(task, "A", folder_a, value_a, row_a)
    _check_value(task, "B", folder_b, value_b, row_b)
    # the CSV values (full precision) are the reported ones; the recomputed equal them within CONSISTENCY
    return summarize(task, metric, len(records), row_a["value"], row_b["value"], diffs, config.level,
                     notes=_notes(row_a, row_b))


@dataclass
class Comparison:
    run_a: Path
    run_b: Path
    model_a: str
    model_b: str
    config: BootstrapConfig
    tasks: list[Difference]
    suites: list[Difference]
    only_a: list[str]
    only_b: list[str]

    def worse(self, pp: float) -> list[Difference]:
        return [d for d in self.tasks + self.suites if d.significantly_worse(pp)]


def compare_runs(run_a, run_b, suites: dict[str, list[str]], config: BootstrapConfig,
                 tasks: Optional[list[str]] = None,
                 member_metrics: Optional[dict[str, dict[str, str]]] = None) -> Comparison:
    """``run_a``/``run_b``: report.ModelRun. Every task both hold (or ``tasks``), then each suite of ``suites``
    whose members were all compared. A suite averages each member's primary metric unless ``member_metrics[suite]``
    names another one for it (as the suite's mean in suites.csv does)."""
    if tasks:
        missing = [f"{t} (not in {side})" for t in tasks for side, run in (("A", run_a), ("B", run_b))
                   if t not in run.tasks]
        if missing:
            raise UserInputError(f"compare: no result for {', '.join(missing)}")
        names = list(dict.fromkeys(tasks))
    else:
        names = sorted(set(run_a.tasks) & set(run_b.tasks))
    if not names:
        raise UserInputError(f"compare: {run_a.folder} and {run_b.folder} have no task in common")
    diffs = [compare_task(t, run_a.folder, run_a.tasks[t], run_b.folder, run_b.tasks[t], config) for t in names]
    by_name = {(d.name, d.metric): d for d in diffs}
    primary = {d.name: d.metric for d in diffs}
    suite_diffs = []
    for suite, members in suites.items():
        if not members or not all(m in primary for m in members):
            continue
        chosen = (member_metrics or {}).get(suite, {})
        parts = []
        for member in members:
            metric = chosen.get(member, primary[member])
            if (member, metric) not in by_name:
                by_name[member, metric] = compare_task(member, run_a.folder, run_a.tasks[member], run_b.folder,
                                                       run_b.tasks[member], config, metric)
            parts.append(by_name[member, metric])
        suite_diffs.append(suite_difference(suite, parts, config.level))
    return Comparison(run_a.folder, run_b.folder, run_a.model, run_b.model, config, diffs, suite_diffs,
                      sorted(set(run_a.tasks) - set(run_b.tasks)) if not tasks else [],
                      sorted(set(run_b.tasks) - set(run_a.tasks)) if not tasks else [])


# ---------------------------------------------------------------------------------------------------------------
# output

CSV_COLUMNS = ("name", "metric", "num_samples", "value_a", "value_b", "delta", "ci_low", "ci_high", "p_value",
               "significantly_worse")


def format_table(comparison: Comparison, fail_if_worse: Optional[float] = None) -> str:
    c = comparison
    level = f"{100 * c.config.level:g}%"
    lines = [f"A: {c.run_a} ({c.model_a})", f"B: {c.run_b} ({c.model_b})",
             f"paired bootstrap: {c.config.iterations} resamples, seed {c.config.seed}; B - A in percentage points,"
             f" {level} percentile interval, two-sided p", ""]
    width = max(len(d.name) for d in c.tasks + c.suites)
    mw = max(6, *(len(d.metric) for d in c.tasks + c.suites))
    lines.append(f"{'task':<{width}}  {'metric':<{mw}} {'n':>7} {'A':>7} {'B':>7} {'B-A':>7}  {level + ' interval':<18}"
                 f" {'p':>7}")
    for d in c.tasks + c.suites:
        mark = ""
        if fail_if_worse is not None and d.significantly_worse(fail_if_worse):
            mark = f"  WORSE (by more than {fail_if_worse:g} pp, interval below 0)"
        interval = f"[{100 * d.ci_low:+.2f}, {100 * d.ci_high:+.2f}]"
        lines.append(f"{d.name:<{width}}  {d.metric:<{mw}} {d.num_samples:>7} {100 * d.value_a:>7.2f}"
                     f" {100 * d.value_b:>7.2f} {100 * d.delta:>+7.2f}  {interval:<18} {d.p_value:>7.4f}{mark}")
    notes = [f"  {d.name}: {n}" for d in c.tasks for n in d.notes]
    if notes:
        lines += ["", "what else differs between the two results:"] + notes
    if c.only_a or c.only_b:
        lines.append("")
        if c.only_a:
            lines.append(f"not compared (only in A): {', '.join(c.only_a)}")
        if c.only_b:
            lines.append(f"not compared (only in B): {', '.join(c.only_b)}")
    return "\n".join(lines) + "\n"


def comparison_csv(comparison: Comparison, fail_if_worse: Optional[float] = None) -> str:
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for d in comparison.tasks + comparison.suites:
        worse = "" if fail_if_worse is None else str(d.significantly_worse(fail_if_worse)).lower()
        writer.writerow([d.name, d.metric, d.num_samples, repr(d.value_a), repr(d.value_b), repr(d.delta),
                         repr(d.ci_low), repr(d.ci_high), repr(d.p_value), worse])
    return buf.getvalue()


def regression_message(comparison: Comparison, pp: float) -> str:
    """Why the ``--fail-if-worse`` gate fails: the significantly worse tasks and suites, and the tasks B lacks."""
    worse = comparison.worse(pp)
    parts = []
    if worse:
        listed = "; ".join(f"{d.name} {d.metric} {100 * d.delta:+.2f} pp [{100 * d.ci_low:+.2f},"
                           f" {100 * d.ci_high:+.2f}] p={d.p_value:.4f}" for d in worse)
        parts.append(f"B is significantly worse than A (below by more than {pp:g} pp, 95% interval entirely below"
                     f" 0) on {len(worse)} of {len(comparison.tasks) + len(comparison.suites)} compared: {listed}")
    if comparison.only_a:
        parts.append(f"B has no result for {len(comparison.only_a)} task(s) A has: {', '.join(comparison.only_a)}"
                     " (a task B failed or left out is no pass: run it in B, or gate on the others with --tasks)")
    return "; ".join(parts)
