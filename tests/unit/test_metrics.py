import math

import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from evalsuite.metrics import accuracy_at_k, classification_metrics, mean_per_class_recall, topk_indices


def test_hand_computed_accuracies():
    logits = torch.tensor([
        [0.9, 0.1, 0.0, 0.0, 0.0, 0.0],  # target 0: top-1 hit
        [0.5, 0.4, 0.3, 0.2, 0.1, 0.0],  # target 4: rank 5 -> top-5 hit only
        [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],  # target 0: rank 6 -> miss
        [0.1, 0.8, 0.1, 0.0, 0.0, 0.0],  # target 1: top-1 hit
    ])
    targets = torch.tensor([0, 4, 0, 1])
    top = topk_indices(logits, 5)
    assert accuracy_at_k(top, targets, 1) == 0.5
    assert accuracy_at_k(top, targets, 5) == 0.75
    # per class: class 0 -> 1 of 2, class 1 -> 1 of 1, class 4 -> 0 of 1 => (0.5 + 1 + 0) / 3
    assert mean_per_class_recall(top[:, 0], targets) == pytest.approx(0.5)


def test_mean_per_class_recall_equals_sklearn_balanced_accuracy():
    gen = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 7, (500,), generator=gen)
    preds = torch.where(torch.rand(500, generator=gen) < 0.6, targets, torch.randint(0, 9, (500,), generator=gen))
    ours = mean_per_class_recall(preds, targets)
    assert ours == pytest.approx(balanced_accuracy_score(targets.numpy(), preds.numpy()), abs=1e-12)


def test_acc5_is_omitted_below_five_classes_never_nan():
    logits = torch.tensor([[0.2, 0.8, 0.0], [0.9, 0.05, 0.05]])
    targets = torch.tensor([1, 2])
    top = topk_indices(logits, 5)
    assert top.shape == (2, 3)
    out = classification_metrics(top, targets, 3, ["acc1", "acc5", "mean_per_class_recall"])
    assert set(out) == {"acc1", "mean_per_class_recall"}
    assert all(not math.isnan(v) for v in out.values())


def test_accuracy_at_k_refuses_too_few_predictions():
    with pytest.raises(ValueError):
        accuracy_at_k(torch.zeros(2, 3, dtype=torch.long), torch.tensor([0, 1]), 5)
