"""Recall@k with CLIP-paper semantics: hand-made scores, blocking, and CLIP_benchmark's recall_at_k."""

import pytest
import torch

from evalsuite.metrics import best_positive_ranks, retrieval_metrics


def one_hot_rows(rows):
    """Queries as one-hot-ish vectors so that query @ gallery.T reproduces a hand-written score matrix."""
    return torch.tensor(rows, dtype=torch.float64)


def test_ranks_on_a_hand_made_matrix():
    scores = torch.tensor([[0.9, 0.1, 0.5],   # positive 0 is best -> rank 0
                           [0.9, 0.1, 0.5],   # positive 1 is last -> rank 2
                           [0.2, 0.7, 0.7]])  # tie with a lower index ahead of positive 2 -> rank 1
    ranks = best_positive_ranks(scores, torch.eye(3, dtype=scores.dtype), [[0], [1], [2]])
    assert ranks.tolist() == [0, 2, 1]


def test_multiple_positives_count_the_best_one():
    scores = torch.tensor([[0.1, 0.8, 0.3, 0.9]])
    assert best_positive_ranks(scores, torch.eye(4), [[0, 2]]).tolist() == [2]  # 0.3: behind 0.9 and 0.8
    assert best_positive_ranks(scores, torch.eye(4), [[0, 1, 2]]).tolist() == [1]


def test_ties_between_positives_and_negatives_break_by_index():
    scores = torch.tensor([[0.5, 0.5, 0.5]])
    assert best_positive_ranks(scores, torch.eye(3), [[0]]).tolist() == [0]
    assert best_positive_ranks(scores, torch.eye(3), [[2]]).tolist() == [2]
    assert best_positive_ranks(scores, torch.eye(3), [[1, 2]]).tolist() == [1]


def test_k_larger_than_the_gallery_is_a_hit():
    images, texts = torch.eye(2), torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    metrics, _, _ = retrieval_metrics(images, texts, [0, 0, 1], ks=[1, 10])
    assert metrics["image_retrieval_recall@10"] == 1.0 and metrics["text_retrieval_recall@10"] == 1.0
    assert metrics["image_retrieval_recall@1"] == pytest.approx(2 / 3)  # text 0 scores image 1 higher
    # image 0: its caption 1 scores 1.0, top -> hit. image 1: its caption 2 scores 1.0 but so does caption 0, which
    # comes first -> rank 1, a miss at k=1
    assert metrics["text_retrieval_recall@1"] == 0.5
    _, _, i2t = retrieval_metrics(images, texts, [0, 0, 1], ks=[1])
    assert i2t.tolist() == [0, 1]


def test_one_query_without_positive_is_an_error():
    with pytest.raises(ValueError):
        best_positive_ranks(torch.eye(2), torch.eye(2), [[0], []])


def random_problem(num_images=37, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.nn.functional.normalize(torch.randn(num_images, dim, generator=g), dim=-1)
    counts = torch.randint(1, 8, (num_images,), generator=g).tolist()  # 1..7 captions per image
    text_to_image = [i for i, c in enumerate(counts) for _ in range(c)]
    texts = torch.nn.functional.normalize(images[text_to_image] + 0.9 * torch.randn(len(text_to_image), dim,
                                                                                     generator=g), dim=-1)
    return images, texts, text_to_image


def test_blocked_equals_full_matrix():
    images, texts, t2i = random_problem()
    full = retrieval_metrics(images, texts, t2i, [1, 5, 10], block=10_000)
    for block in (1, 3, 64):
        blocked = retrieval_metrics(images, texts, t2i, [1, 5, 10], block=block)
        assert blocked[0] == full[0]
        assert torch.equal(blocked[1], full[1]) and torch.equal(blocked[2], full[2])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_clip_benchmark_recall_at_k(seed):
    from clip_benchmark.metrics.zeroshot_retrieval import batchify, recall_at_k

    images, texts, t2i = random_problem(seed=seed)
    ours, _, _ = retrieval_metrics(images, texts, t2i, [1, 5, 10])
    scores = images @ texts.T  # (images, texts), as CLIP_benchmark computes it
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[t2i, torch.arange(len(t2i))] = True
    for k in (1, 5, 10):
        image_retrieval = (batchify(recall_at_k, scores.T, positive.T, 16, "cpu", k=k) > 0).float().mean().item()
        text_retrieval = (batchify(recall_at_k, scores, positive, 16, "cpu", k=k) > 0).float().mean().item()
        assert ours[f"image_retrieval_recall@{k}"] == pytest.approx(image_retrieval, abs=1e-7)
        assert ours[f"text_retrieval_recall@{k}"] == pytest.approx(text_retrieval, abs=1e-7)
    assert ours["mean_recall"] == pytest.approx(sum(v for m, v in ours.items() if m != "mean_recall") / 6)
