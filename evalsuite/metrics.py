"""Metric functions on tensors. Pure: no model, no data loading, no I/O."""

from __future__ import annotations

import torch


def topk_indices(logits: torch.Tensor, k: int) -> torch.Tensor:
    """(N, C) scores -> (N, min(k, C)) class indices, best first."""
    return logits.topk(min(k, logits.shape[1]), dim=1).indices


def accuracy_at_k(topk: torch.Tensor, targets: torch.Tensor, k: int) -> float:
    """Fraction of rows whose target is among the first ``k`` predicted indices."""
    if topk.shape[1] < k:
        raise ValueError(f"acc@{k} needs at least {k} predictions per sample, got {topk.shape[1]}")
    if len(targets) == 0:
        raise ValueError("accuracy of an empty set")
    return (topk[:, :k] == targets[:, None]).any(dim=1).double().mean().item()


def mean_per_class_recall(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean over the classes present in ``targets`` of the recall of that class (sklearn's balanced accuracy)."""
    classes = targets.unique()
    recalls = [(predictions[targets == c] == c).double().mean() for c in classes]
    return torch.stack(recalls).mean().item()


def classification_metrics(topk: torch.Tensor, targets: torch.Tensor, num_classes: int,
                           wanted: list[str]) -> dict[str, float]:
    """The classification metrics named in ``wanted``. ``acc5`` is left out when there are fewer than 5 classes
    (it would be 100% or undefined, never a number to report)."""
    out: dict[str, float] = {}
    for name in wanted:
        if name == "acc1":
            out[name] = accuracy_at_k(topk, targets, 1)
        elif name == "acc5":
            if num_classes >= 5:
                out[name] = accuracy_at_k(topk, targets, 5)
        elif name == "mean_acc1_acc5":  # the Kinetics protocol's single number
            if num_classes >= 5:
                out[name] = (accuracy_at_k(topk, targets, 1) + accuracy_at_k(topk, targets, 5)) / 2
        elif name == "mean_per_class_recall":
            out[name] = mean_per_class_recall(topk[:, 0], targets)
        else:
            raise ValueError(f"unknown classification metric {name!r}")
    return out


