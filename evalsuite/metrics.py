"""Metrics: a registry that declares each metric once, and the pure tensor functions that compute them.

A metric is declared by three things (``Metric``):

- its **per-sample values**: ``correct@k`` per classified sample; for retrieval ``t2i_hit@k`` per caption query
  (text -> image: the caption's image in the top k) and ``i2t_hit@k`` per image query (image -> text: any of its
  captions in the top k);
- its **aggregate**: ``mean`` of the values, ``class_mean`` (mean over the classes present of each class's mean:
  needs each sample's class), or ``average`` of other metrics (``parts``);
- its **family** (``Family``), which says what the bootstrap resamples: classification resamples samples;
  retrieval resamples images with their captions (``t2i_hit`` values are grouped by their image: a resample's
  text -> image recall is the ratio of its images' hit sums to their caption counts). Declared once, here.

The task scoring (``point_value``), bootstrap.py (index resampling) and compare.py (paired resampling of distinct
records) read these declarations; none of them branches on a metric's name. Task types declare the metrics they
compute as a ``MetricSet`` of registry names (``METRICS.select``), so validation errors list what is allowed.

Declarations are importable without torch (``evalsuite validate`` checks metric names); the functions import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Optional, Sequence, Union

from .registry import did_you_mean

if TYPE_CHECKING:
    import torch

MEAN = "mean"
CLASS_MEAN = "class_mean"
AVERAGE = "average"
AGGREGATES = (MEAN, CLASS_MEAN, AVERAGE)


@dataclass(frozen=True)
class Family:
    """Metrics computed from the same per-sample evidence and resampled the same way by the bootstrap."""

    name: str
    unit: str  # what one bootstrap draw picks (with replacement)
    values: tuple[str, ...]  # the per-sample value kinds (each with a k) this family's evidence gives
    # value kinds whose queries are not the units but belong to one (retrieval: a caption to its image): a resample
    # takes every query of each drawn unit, and a mean over them is the ratio of the units' sums to their sizes
    grouped: tuple[str, ...] = ()


CLASSIFICATION = Family("classification", "sample", values=("correct",))
RETRIEVAL = Family("retrieval", "image, with its captions", values=("t2i_hit", "i2t_hit"), grouped=("t2i_hit",))


@dataclass(frozen=True)
class Metric:
    name: str
    family: Family
    aggregate: str  # MEAN | CLASS_MEAN | AVERAGE
    values: Optional[tuple[str, int]] = None  # (value kind, k) for MEAN and CLASS_MEAN
    # AVERAGE: the metrics averaged, or a function of the task's metric names that picks them (mean_recall: every
    # recall@k the task computes)
    parts: Union[tuple[str, ...], Callable[[Sequence[str]], list[str]]] = ()
    min_classes: int = 0  # left out below this many classes (acc5 of a 3-class task would be 100%, never reported)
    description: str = ""

    def __post_init__(self) -> None:
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"metric {self.name!r}: aggregate {self.aggregate!r} is not one of {AGGREGATES}")
        if (self.aggregate == AVERAGE) != (self.values is None):
            raise ValueError(f"metric {self.name!r}: {self.aggregate} needs {'parts' if self.values else 'values'}")
        if self.values is not None and self.values[0] not in self.family.values:
            raise ValueError(f"metric {self.name!r}: {self.family.name} evidence has no {self.values[0]!r} values")

    @property
    def grouped(self) -> bool:
        """Whether its values are per query of a unit (resampled with the unit) rather than per unit."""
        return self.values is not None and self.values[0] in self.family.grouped

    def parts_of(self, names: Sequence[str] = ()) -> list["Metric"]:
        """AVERAGE: the metrics averaged, for a task computing ``names``."""
        chosen = self.parts(names) if callable(self.parts) else list(self.parts)
        return [METRICS.get(n) for n in chosen]

    def needs_labels(self, names: Sequence[str] = ()) -> bool:
        if self.aggregate == AVERAGE:
            return any(p.needs_labels(names) for p in self.parts_of(names))
        return self.aggregate == CLASS_MEAN


@dataclass(frozen=True)
class _Pattern:
    label: str  # as listed to users, e.g. image_retrieval_recall@K
    regex: re.Pattern
    build: Callable[[re.Match], Metric]


class MetricRegistry:
    """Metrics by name, and name patterns (``image_retrieval_recall@K``) that build one per match."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._patterns: dict[str, _Pattern] = {}

    def add(self, metric: Metric) -> Metric:
        if metric.name in self._metrics or metric.name in self._patterns:
            raise ValueError(f"metric {metric.name!r} is registered twice")
        self._metrics[metric.name] = metric
        return metric

    def add_pattern(self, label: str, regex: str, build: Callable[[re.Match], Metric]) -> None:
        if label in self._metrics or label in self._patterns:
            raise ValueError(f"metric {label!r} is registered twice")
        self._patterns[label] = _Pattern(label, re.compile(regex), build)

    def find(self, name: str) -> Optional[Metric]:
        if name in self._metrics:
            return self._metrics[name]
        for pattern in self._patterns.values():
            match = pattern.regex.fullmatch(name)
            if match:
                return pattern.build(match)
        return None

    def get(self, name: str) -> Metric:
        metric = self.find(name)
        if metric is None:
            raise KeyError(f"unknown metric {name!r}.{did_you_mean(name, self.labels())} "
                           f"Known: {', '.join(self.labels())}")
        return metric

    def labels(self) -> list[str]:
        return list(self._metrics) + list(self._patterns)

    def label_of(self, name: str) -> Optional[str]:
        """The registry entry ``name`` belongs to: itself, or the pattern it matches."""
        if name in self._metrics:
            return name
        return next((p.label for p in self._patterns.values() if p.regex.fullmatch(name)), None)

    def select(self, *labels: str) -> "MetricSet":
        unknown = [label for label in labels if label not in self._metrics and label not in self._patterns]
        if unknown:
            raise KeyError(f"no metric or metric pattern {unknown}; known: {', '.join(self.labels())}")
        return MetricSet(tuple(labels))


@dataclass(frozen=True)
class MetricSet:
    """The metrics a task type computes: registry names and patterns (what its YAML ``metrics`` may list)."""

    labels: tuple[str, ...] = ()

    def __add__(self, other: Union["MetricSet", Iterable[str]]) -> "MetricSet":
        more = other.labels if isinstance(other, MetricSet) else tuple(other)
        return METRICS.select(*self.labels, *(m for m in more if m not in self.labels))

    def accepts(self, name: str) -> bool:
        return METRICS.label_of(name) in self.labels

    def unknown(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if not self.accepts(n)]

    def allowed(self) -> str:
        return ", ".join(self.labels)


METRICS = MetricRegistry()
RECALL_DIRECTIONS = {"image": "t2i_hit", "text": "i2t_hit"}  # image retrieval: text -> image queries, and back


def _recall(match: re.Match) -> Metric:
    direction, k = match.group(1), int(match.group(2))
    what = "text -> image: the caption's image" if direction == "image" else "image -> text: any of its captions"
    return Metric(match.group(0), RETRIEVAL, MEAN, values=(RECALL_DIRECTIONS[direction], k),
                  description=f"recall@{k}, {what} in the top {k}")


def recall_metrics(names: Sequence[str]) -> list[str]:
    """Every recall@k of ``names``' k's, both directions: image retrieval at each k (in the order ``names`` first
    gives them), then text retrieval."""
    found = (METRICS.find(n) for n in names)
    ks = list(dict.fromkeys(m.values[1] for m in found if m is not None and m.family is RETRIEVAL and m.values))
    return [f"{d}_retrieval_recall@{k}" for d in RECALL_DIRECTIONS for k in ks]


def recall_ks(names: Iterable[str]) -> list[int]:
    """The sorted k's of the recall@k metrics among ``names``."""
    found = (METRICS.find(n) for n in names)
    return sorted({m.values[1] for m in found if m is not None and m.family is RETRIEVAL and m.values})


METRICS.add(Metric("acc1", CLASSIFICATION, MEAN, values=("correct", 1), description="top-1 accuracy"))
METRICS.add(Metric("acc5", CLASSIFICATION, MEAN, values=("correct", 5), min_classes=5,
                   description="top-5 accuracy"))
METRICS.add(Metric("mean_per_class_recall", CLASSIFICATION, CLASS_MEAN, values=("correct", 1),
                   description="mean over the classes present of their top-1 recall (sklearn's balanced accuracy)"))
METRICS.add(Metric("mean_acc1_acc5", CLASSIFICATION, AVERAGE, parts=("acc1", "acc5"), min_classes=5,
                   description="(acc1 + acc5) / 2, the Kinetics protocol's single number"))
METRICS.add_pattern("image_retrieval_recall@K", r"(image)_retrieval_recall@(\d+)", _recall)
METRICS.add_pattern("text_retrieval_recall@K", r"(text)_retrieval_recall@(\d+)", _recall)
METRICS.add(Metric("mean_recall", RETRIEVAL, AVERAGE, parts=recall_metrics,
                   description="mean of every recall@k, both directions"))


# ---------------------------------------------------------------------------------------------------------------
# per-sample evidence and point values


class ClassificationEvidence:
    """Per sample: its class and its top-k predicted classes (best first)."""

    family = CLASSIFICATION

    def __init__(self, topk: "torch.Tensor", targets: "torch.Tensor") -> None:
        self.topk, self.labels = topk, targets
        self._values: dict = {}

    @property
    def units(self) -> int:
        return len(self.labels)

    def values(self, kind: str, k: int) -> "torch.Tensor":
        """correct@k per sample (float64 0/1)."""
        if (kind, k) not in self._values:
            if self.topk.shape[1] < k:
                raise ValueError(f"acc@{k} needs at least {k} predictions per sample, got {self.topk.shape[1]}")
            self._values[kind, k] = (self.topk[:, :k] == self.labels[:, None]).any(dim=1).double()
        return self._values[kind, k]

    def groups(self, kind: str) -> None:
        return None


class RetrievalEvidence:
    """Per query its best positive's rank, both ways; the units (resampled) are the images."""

    family = RETRIEVAL

    def __init__(self, t2i_ranks: "torch.Tensor", text_to_image: Sequence[int], i2t_ranks: "torch.Tensor") -> None:
        self.t2i, self.i2t, self.text_to_image = t2i_ranks, i2t_ranks, text_to_image
        self.labels = None

    @property
    def units(self) -> int:
        return len(self.i2t)

    def values(self, kind: str, k: int) -> "torch.Tensor":
        """t2i_hit@k per caption query, i2t_hit@k per image query (float64 0/1)."""
        return ((self.t2i if kind == "t2i_hit" else self.i2t) < k).double()

    def groups(self, kind: str):
        """For a grouped value kind, the unit (image) of each query."""
        return self.text_to_image if kind in self.family.grouped else None


def point_value(metric: Metric, evidence, names: Sequence[str] = ()) -> float:
    """The metric's value on all of ``evidence`` (``names``: the task's metrics, for AVERAGE parts)."""
    import torch

    if metric.family is not evidence.family:
        raise ValueError(f"{metric.name!r} is a {metric.family.name} metric, not a {evidence.family.name} one")
    if metric.aggregate == AVERAGE:
        parts = [point_value(p, evidence, names) for p in metric.parts_of(names)]
        return sum(parts) / len(parts)
    values = evidence.values(*metric.values)
    if len(values) == 0:
        raise ValueError(f"{metric.name} of an empty set")
    if metric.aggregate == MEAN:
        return values.mean().item()
    labels = evidence.labels
    return torch.stack([values[labels == c].mean() for c in labels.unique()]).mean().item()


def compute(evidence, wanted: Sequence[str], num_classes: Optional[int] = None) -> dict[str, float]:
    """The metrics named in ``wanted`` of ``evidence``'s family; those needing more classes than ``num_classes``
    are left out."""
    out: dict[str, float] = {}
    for name in wanted:
        metric = METRICS.find(name)
        if metric is None or metric.family is not evidence.family:
            raise ValueError(f"unknown {evidence.family.name} metric {name!r}")
        if num_classes is not None and num_classes < metric.min_classes:
            continue
        out[name] = point_value(metric, evidence, wanted)
    return out


# ---------------------------------------------------------------------------------------------------------------
# classification


def topk_indices(logits: "torch.Tensor", k: int) -> "torch.Tensor":
    """(N, C) scores -> (N, min(k, C)) class indices, best first."""
    return logits.topk(min(k, logits.shape[1]), dim=1).indices


def accuracy_at_k(topk: "torch.Tensor", targets: "torch.Tensor", k: int) -> float:
    """Fraction of rows whose target is among the first ``k`` predicted indices."""
    return point_value(Metric(f"acc@{k}", CLASSIFICATION, MEAN, values=("correct", k)),
                       ClassificationEvidence(topk, targets))


def mean_per_class_recall(predictions: "torch.Tensor", targets: "torch.Tensor") -> float:
    """Mean over the classes present in ``targets`` of the recall of that class (sklearn's balanced accuracy)."""
    return point_value(METRICS.get("mean_per_class_recall"), ClassificationEvidence(predictions[:, None], targets))


def classification_metrics(topk: "torch.Tensor", targets: "torch.Tensor", num_classes: int,
                           wanted: list[str]) -> dict[str, float]:
    """The classification metrics named in ``wanted``. ``acc5`` (and ``mean_acc1_acc5``) are left out when there
    are fewer than 5 classes (it would be 100% or undefined, never a number to report): ``Metric.min_classes``."""
    return compute(ClassificationEvidence(topk, targets), wanted, num_classes)


# ---------------------------------------------------------------------------------------------------------------
# retrieval


def best_positive_ranks(queries: "torch.Tensor", gallery: "torch.Tensor", positives: list[list[int]],
                        block: int = 512) -> "torch.Tensor":
    """For each query, the 0-based rank of its best-ranked positive in the gallery, by dot-product score.

    Ties are broken by gallery index (a lower index ranks first), as a stable sort would. Queries are scored in
    blocks of ``block`` rows, so memory stays at a few ``block x len(gallery)`` buffers whatever the sizes; the
    positives are looked up by index, never through a dense mask.
    """
    import torch

    if len(positives) != len(queries):
        raise ValueError(f"{len(positives)} positive lists for {len(queries)} queries")
    if any(not p for p in positives):
        raise ValueError("every query needs at least one positive")
    gallery_t = gallery.T
    ranks = []
    for start in range(0, len(queries), block):
        chunk = positives[start:start + block]
        scores = queries[start:start + block] @ gallery_t
        rows = torch.tensor([r for r, pos in enumerate(chunk) for _ in pos], device=scores.device)
        cols = torch.tensor([c for pos in chunk for c in pos], device=scores.device)
        positive_scores = scores[rows, cols]
        best = torch.full((len(chunk),), float("-inf"), dtype=scores.dtype, device=scores.device).scatter_reduce(
            0, rows, positive_scores, reduce="amax")
        # among positives at the best score, the lowest gallery index is the one a stable ranking meets first
        at_best = positive_scores == best[rows]
        best_index = torch.full((len(chunk),), len(gallery), dtype=torch.long, device=scores.device).scatter_reduce(
            0, rows[at_best], cols[at_best], reduce="amin")
        rank = (scores > best[:, None]).sum(dim=1)
        ties = scores == best[:, None]
        ties[torch.arange(scores.shape[1], device=scores.device)[None, :] >= best_index[:, None]] = False
        ranks.append(rank + ties.sum(dim=1))
    return torch.cat(ranks).cpu()


def retrieval_metrics(image_features: "torch.Tensor", text_features: "torch.Tensor", text_to_image: list[int],
                      ks: list[int], block: int = 512) -> tuple[dict[str, float], "torch.Tensor", "torch.Tensor"]:
    """Recall@k both ways with CLIP-paper semantics, plus the ranks they came from.

    ``image_retrieval_recall@k``: text -> image, a hit when the caption's image is in the top k.
    ``text_retrieval_recall@k``: image -> text, a hit when ANY of the image's captions is in the top k.
    Returns (metrics: every recall@k, image retrieval first, and mean_recall; text->image ranks; image->text ranks).
    """
    captions_of: list[list[int]] = [[] for _ in range(len(image_features))]
    for text, image in enumerate(text_to_image):
        captions_of[image].append(text)
    t2i = best_positive_ranks(text_features, image_features, [[i] for i in text_to_image], block)
    i2t = best_positive_ranks(image_features, text_features, captions_of, block)
    names = [f"{d}_retrieval_recall@{k}" for d in RECALL_DIRECTIONS for k in ks] + ["mean_recall"]
    return compute(RetrievalEvidence(t2i, text_to_image, i2t), names), t2i, i2t
