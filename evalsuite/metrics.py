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




def best_positive_ranks(queries: torch.Tensor, gallery: torch.Tensor, positives: list[list[int]],
                        block: int = 512) -> torch.Tensor:
    """For each query, the 0-based rank of its best-ranked positive in the gallery, by dot-product score.

    Ties are broken by gallery index (a lower index ranks first), as a stable sort would. Queries are scored in
    blocks of ``block`` rows, so memory stays at a few ``block x len(gallery)`` buffers whatever the sizes; the
    positives are looked up by index, never through a dense mask.
    """
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


def retrieval_metrics(image_features: torch.Tensor, text_features: torch.Tensor, text_to_image: list[int],
                      ks: list[int], block: int = 512) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
    """Recall@k both ways with CLIP-paper semantics, plus the ranks they came from.

    ``image_retrieval_recall@k``: text -> image, a hit when the caption's image is in the top k.
    ``text_retrieval_recall@k``: image -> text, a hit when ANY of the image's captions is in the top k.
    Returns (metrics, text->image ranks, image->text ranks).
    """
    captions_of: list[list[int]] = [[] for _ in range(len(image_features))]
    for text, image in enumerate(text_to_image):
        captions_of[image].append(text)
    t2i = best_positive_ranks(text_features, image_features, [[i] for i in text_to_image], block)
    i2t = best_positive_ranks(image_features, text_features, captions_of, block)
    metrics: dict[str, float] = {}
    for k in ks:
        metrics[f"image_retrieval_recall@{k}"] = (t2i < k).double().mean().item()
    for k in ks:
        metrics[f"text_retrieval_recall@{k}"] = (i2t < k).double().mean().item()
    metrics["mean_recall"] = sum(metrics.values()) / len(metrics)
    return metrics, t2i, i2t
