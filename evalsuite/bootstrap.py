"""Per-sample predictions and seeded bootstrap confidence intervals computed from them.

The predictions a task saves (``<task>.predictions.csv``) are enough to recompute its metrics and intervals
without the model: classification keeps each sample's label and top-5 classes, retrieval each query's rank.
Intervals are percentile bootstrap intervals (95% by default) over resampled samples; for retrieval the images are
resampled and their captions go with them (a caption's query is not independent of its image's). What a metric is
on a resample comes from its declaration in the metric registry (evalsuite/metrics.py), not from its name.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from .metrics import AVERAGE, MEAN, METRICS, RECALL_DIRECTIONS, ClassificationEvidence, Metric, RetrievalEvidence

CHUNK = 100  # resamples drawn at once (memory: CHUNK x samples indices)


@dataclass(frozen=True)
class BootstrapConfig:
    iterations: int = 1000
    seed: int = 0
    level: float = 0.95


def _interval(values: torch.Tensor, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2
    q = torch.quantile(values.double(), torch.tensor([tail, 1 - tail], dtype=torch.double))
    return float(q[0]), float(q[1])


def _resampled(n: int, config: BootstrapConfig):
    g = torch.Generator().manual_seed(config.seed)
    done = 0
    while done < config.iterations:
        size = min(CHUNK, config.iterations - done)
        yield torch.randint(0, n, (size, n), generator=g)
        done += size


def statistic(metric: Metric, evidence, names: Sequence[str] = (), num_classes: int = 0):
    """The metric on each resample, as a function of resampled unit indices (R, n) -> (R,): the metric's
    aggregate over the drawn units, read off its registry declaration (evalsuite/metrics.py)."""
    if metric.family is not evidence.family:
        raise ValueError(f"no bootstrap for {metric.family.name} metric {metric.name!r} on {evidence.family.name}"
                         " predictions")
    if metric.aggregate == AVERAGE:
        parts = metric.parts_of(names)
        if all(p.aggregate == MEAN and not p.grouped for p in parts):
            # means over the same units: the mean of the per-sample averages is the average of the means
            values = sum(evidence.values(*p.values) for p in parts) / len(parts)
            return lambda idx: values[idx].mean(dim=1)
        stats = [statistic(p, evidence, names, num_classes) for p in parts]
        return lambda idx: torch.stack([s(idx) for s in stats]).mean(dim=0)
    values = evidence.values(*metric.values)
    if metric.aggregate == MEAN and metric.grouped:  # queries go with their unit: ratio of the units' sums
        owner = torch.tensor(evidence.groups(metric.values[0]))
        sums = torch.bincount(owner, weights=values, minlength=evidence.units)
        sizes = torch.bincount(owner, minlength=evidence.units).double()
        return lambda idx: sums[idx].sum(dim=1) / sizes[idx].sum(dim=1)
    if metric.aggregate == MEAN:
        return lambda idx: values[idx].mean(dim=1)
    labels = evidence.labels  # CLASS_MEAN: over the classes present in the resample
    minlength = num_classes or int(labels.max()) + 1

    def per_class(idx):
        out = []
        for row in idx:
            t, c = labels[row], values[row]
            totals = torch.bincount(t, minlength=minlength).double()
            hits = torch.bincount(t, weights=c, minlength=minlength)
            present = totals > 0
            out.append((hits[present] / totals[present]).mean())
        return torch.stack(out)
    return per_class


def interval(metric: str, evidence, config: BootstrapConfig, names: Sequence[str] = (),
             num_classes: int = 0) -> Optional[tuple[float, float]]:
    """Percentile bootstrap interval of ``metric`` (a registry name), resampling the evidence's units (samples;
    retrieval: images with their captions); None when turned off or there is nothing to resample."""
    if config.iterations <= 0 or evidence.units == 0:
        return None
    stat = statistic(METRICS.get(metric), evidence, names or (metric,), num_classes)
    return _interval(torch.cat([stat(idx) for idx in _resampled(evidence.units, config)]), config.level)


def classification_statistic(metric: str, topk: torch.Tensor, targets: torch.Tensor, num_classes: int):
    """Per-resample statistic for a classification metric, as a function of resampled indices."""
    return statistic(METRICS.get(metric), ClassificationEvidence(topk, targets), (metric,), num_classes)


def classification_interval(metric: str, topk: torch.Tensor, targets: torch.Tensor, num_classes: int,
                            config: BootstrapConfig) -> Optional[tuple[float, float]]:
    return interval(metric, ClassificationEvidence(topk, targets), config, num_classes=num_classes)


def retrieval_interval(t2i_ranks: torch.Tensor, text_to_image: list[int], i2t_ranks: torch.Tensor, ks: list[int],
                       config: BootstrapConfig, metric: str = "mean_recall") -> Optional[tuple[float, float]]:
    """Interval of a retrieval metric (default mean_recall, the mean of recall@k both ways at ``ks``),
    resampling images with their captions."""
    names = [f"{d}_retrieval_recall@{k}" for d in RECALL_DIRECTIONS for k in ks] + ["mean_recall"]
    return interval(metric, RetrievalEvidence(t2i_ranks, text_to_image, i2t_ranks), config, names)


# ---------------------------------------------------------------------------------------------------------------
# per-sample prediction files


def classification_predictions_csv(names: list[str], targets: torch.Tensor, topk: torch.Tensor) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["sample", "label", "top5", "correct1", "correct5"])
    for name, label, top in zip(names, targets.tolist(), topk.tolist()):
        writer.writerow([name, label, " ".join(map(str, top[:5])), int(top[0] == label), int(label in top[:5])])
    return buf.getvalue()


def retrieval_predictions_csv(image_names: list[str], text_to_image: list[int], t2i: torch.Tensor,
                              i2t: torch.Tensor) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["direction", "query", "image", "rank"])
    for i, rank in enumerate(i2t.tolist()):
        writer.writerow(["image_to_text", i, image_names[i], rank])
    for t, rank in enumerate(t2i.tolist()):
        writer.writerow(["text_to_image", t, image_names[text_to_image[t]], rank])
    return buf.getvalue()


def read_classification_predictions(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(top-k indices, targets) from a saved predictions file."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    topk = torch.tensor([[int(x) for x in r["top5"].split()] for r in rows])
    targets = torch.tensor([int(r["label"]) for r in rows])
    return topk, targets
