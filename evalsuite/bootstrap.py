"""Per-sample predictions and seeded bootstrap confidence intervals computed from them.

The predictions a task saves (``<task>.predictions.csv``) are enough to recompute its metrics and intervals
without the model: classification keeps each sample's label and top-5 classes, retrieval each query's rank.
Intervals are percentile bootstrap intervals (95% by default) over resampled samples; for retrieval the images are
resampled and their captions go with them (a caption's query is not independent of its image's).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

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


def classification_statistic(metric: str, topk: torch.Tensor, targets: torch.Tensor, num_classes: int):
    """Per-resample statistic for a classification metric, as a function of resampled indices."""
    correct1 = (topk[:, 0] == targets).double()
    correct5 = (topk[:, :5] == targets[:, None]).any(dim=1).double() if topk.shape[1] >= 5 else None
    if metric == "acc1":
        return lambda idx: correct1[idx].mean(dim=1)
    if metric == "acc5":
        return lambda idx: correct5[idx].mean(dim=1)
    if metric == "mean_acc1_acc5":
        return lambda idx: ((correct1 + correct5) / 2)[idx].mean(dim=1)
    if metric == "mean_per_class_recall":
        def per_class(idx):
            out = []
            for row in idx:
                t, c = targets[row], correct1[row]
                totals = torch.bincount(t, minlength=num_classes).double()
                hits = torch.bincount(t, weights=c, minlength=num_classes)
                present = totals > 0
                out.append((hits[present] / totals[present]).mean())
            return torch.stack(out)
        return per_class
    raise ValueError(f"no bootstrap for metric {metric!r}")


def classification_interval(metric: str, topk: torch.Tensor, targets: torch.Tensor, num_classes: int,
                            config: BootstrapConfig) -> Optional[tuple[float, float]]:
    if config.iterations <= 0 or len(targets) == 0:
        return None
    statistic = classification_statistic(metric, topk, targets, num_classes)
    return _interval(torch.cat([statistic(idx) for idx in _resampled(len(targets), config)]), config.level)


def retrieval_interval(t2i_ranks: torch.Tensor, text_to_image: list[int], i2t_ranks: torch.Tensor, ks: list[int],
                       config: BootstrapConfig) -> Optional[tuple[float, float]]:
    """Interval of mean_recall (mean of recall@k both ways), resampling images with their captions."""
    if config.iterations <= 0:
        return None
    n_images = len(i2t_ranks)
    owner = torch.tensor(text_to_image)
    texts_per_image = torch.bincount(owner, minlength=n_images).double()
    t2i_hits = {k: torch.bincount(owner, weights=(t2i_ranks < k).double(), minlength=n_images) for k in ks}
    i2t_hits = {k: (i2t_ranks < k).double() for k in ks}
    stats = []
    for idx in _resampled(n_images, config):
        recalls = [t2i_hits[k][idx].sum(dim=1) / texts_per_image[idx].sum(dim=1) for k in ks]
        recalls += [i2t_hits[k][idx].mean(dim=1) for k in ks]
        stats.append(torch.stack(recalls).mean(dim=0))
    return _interval(torch.cat(stats), config.level)


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
