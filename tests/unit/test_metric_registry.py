"""The metric registry (evalsuite/metrics.py): each metric declared once (per-sample values, aggregate, family and
so how the bootstrap resamples it); scoring, bootstrap.py and compare.py read the declarations. The pinned numbers
below were computed by the code before the registry (if-chains on metric names) on the same seeded cases: the
registry changes none of them, bit for bit."""

import hashlib

import pytest
import torch

from evalsuite import bootstrap as B
from evalsuite import compare as C
from evalsuite import metrics as M
from evalsuite.config import SourceSpec, TaskSpec
from evalsuite.errors import ConfigError
from evalsuite.metrics import AVERAGE, CLASS_MEAN, CLASSIFICATION, MEAN, METRICS, RETRIEVAL, Metric
from evalsuite.tasks import TASK_TYPES, build_task


def digest(t):
    return hashlib.sha256(repr([float(x) for x in t]).encode()).hexdigest()[:16]


def classification_case():
    g = torch.Generator().manual_seed(11)
    n, classes = 300, 7
    targets = torch.randint(0, classes, (n,), generator=g)
    logits = torch.randn(n, classes, generator=g) + 1.5 * torch.nn.functional.one_hot(targets, classes)
    return M.topk_indices(logits, 5), targets, classes


def retrieval_case():
    g = torch.Generator().manual_seed(12)
    n_images = 45
    per = torch.randint(1, 5, (n_images,), generator=g)
    owner = torch.repeat_interleave(torch.arange(n_images), per).tolist()
    images = torch.nn.functional.normalize(torch.randn(n_images, 12, generator=g), dim=1)
    texts = torch.nn.functional.normalize(images[owner] + 0.8 * torch.randn(len(owner), 12, generator=g), dim=1)
    return images, texts, owner


def paired_case():
    g = torch.Generator().manual_seed(13)
    n = 250
    labels = torch.randint(0, 6, (n,), generator=g)
    a1 = (torch.rand(n, generator=g) < 0.6).double()
    b1 = torch.where(torch.rand(n, generator=g) < 0.85, a1, 1 - a1)
    a5 = torch.maximum(a1, (torch.rand(n, generator=g) < 0.5).double())
    b5 = torch.maximum(b1, (torch.rand(n, generator=g) < 0.5).double())
    return labels, (a1, a5), (b1, b5)


def numbers():
    out = {}
    topk, targets, classes = classification_case()
    names = ["acc1", "acc5", "mean_per_class_recall", "mean_acc1_acc5"]
    out["classification"] = M.classification_metrics(topk, targets, classes, names)
    for m in names:
        out[f"interval {m}"] = B.classification_interval(m, topk, targets, classes, B.BootstrapConfig(200, 1))
    images, texts, owner = retrieval_case()
    metrics, t2i, i2t = M.retrieval_metrics(images, texts, owner, [1, 5, 10])
    out["retrieval"] = metrics
    out["interval mean_recall"] = B.retrieval_interval(t2i, owner, i2t, [1, 5, 10], B.BootstrapConfig(200, 2))
    labels, a, b = paired_case()
    for m in names:
        records = C.classification_records(m, labels, a, b)
        va, vb, d = C.paired_bootstrap(records, C.classification_statistic(m, 0), C.classification_statistic(m, 1),
                                       B.BootstrapConfig(300, 3))
        out[f"paired {m}"] = (va, vb, digest(d))
    ks = [1, 5, 10]
    arrays = []
    for side in range(2):
        noisy = texts + 0.3 * side * torch.randn(texts.shape, generator=torch.Generator().manual_seed(side))
        _, t2i_s, i2t_s = M.retrieval_metrics(images, torch.nn.functional.normalize(noisy, dim=1), owner, ks)
        ow = torch.tensor(owner)
        arrays.append(C.RetrievalArrays(torch.bincount(ow).double(),
                                        {k: torch.bincount(ow, weights=(t2i_s < k).double()) for k in ks},
                                        {k: (i2t_s < k).double() for k in ks}))
    records = C.retrieval_records(arrays[0], arrays[1], ks)
    for m in ["mean_recall", "image_retrieval_recall@5", "text_retrieval_recall@1"]:
        va, vb, d = C.paired_bootstrap(records, C.retrieval_statistic(m, 0, ks), C.retrieval_statistic(m, 1, ks),
                                       B.BootstrapConfig(300, 4))
        out[f"paired {m}"] = (va, vb, digest(d))
    return out


PINNED = {
    'classification': {'acc1': 0.6133333333333333, 'acc5': 0.98, 'mean_per_class_recall': 0.6207922278254758,
                       'mean_acc1_acc5': 0.7966666666666666},
    'interval acc1': (0.5598333333333334, 0.6633333333333333),
    'interval acc5': (0.9633333333333334, 0.9933333333333333),
    'interval mean_per_class_recall': (0.5685601948728801, 0.6703937934064835),
    'interval mean_acc1_acc5': (0.7616666666666667, 0.8233333333333334),
    'retrieval': {'image_retrieval_recall@1': 0.1592920353982301, 'image_retrieval_recall@5': 0.5575221238938053,
                  'image_retrieval_recall@10': 0.7168141592920354, 'text_retrieval_recall@1': 0.2222222222222222,
                  'text_retrieval_recall@5': 0.5777777777777777, 'text_retrieval_recall@10': 0.7555555555555555,
                  'mean_recall': 0.49819731235660436},
    'interval mean_recall': (0.423703811536692, 0.5728364008996419),
    'paired acc1': (0.624, 0.6, '855c8431130edb35'),
    'paired acc5': (0.832, 0.78, '9b6ed1452ec381ff'),
    'paired mean_per_class_recall': (0.6231531403681033, 0.5999743304611482, 'cb5e5050831ebac4'),
    'paired mean_acc1_acc5': (0.728, 0.69, '132f8478ffaee1e3'),
    'paired mean_recall': (0.4981973123566044, 0.3141592920353982, '3aaa24638d3f3731'),
    'paired image_retrieval_recall@5': (0.5575221238938053, 0.3008849557522124, 'd60649b900588bc6'),
    'paired text_retrieval_recall@1': (0.2222222222222222, 0.08888888888888889, '5e8e5494b59032bf'),
}


def test_numbers_equal_those_before_the_registry():
    got = numbers()
    for key, value in PINNED.items():
        assert repr(got[key]) == repr(value), key  # repr: every float digit


def test_declarations():
    acc1, acc5, mpcr, mean15 = (METRICS.get(n) for n in ("acc1", "acc5", "mean_per_class_recall", "mean_acc1_acc5"))
    assert (acc1.family, acc1.aggregate, acc1.values) == (CLASSIFICATION, MEAN, ("correct", 1))
    assert acc5.values == ("correct", 5) and acc5.min_classes == 5
    assert mpcr.aggregate == CLASS_MEAN and mpcr.needs_labels() and not acc1.needs_labels()
    assert mean15.aggregate == AVERAGE and [p.name for p in mean15.parts_of()] == ["acc1", "acc5"]
    image, text = METRICS.get("image_retrieval_recall@5"), METRICS.get("text_retrieval_recall@10")
    assert image.family is RETRIEVAL and image.values == ("t2i_hit", 5) and image.grouped  # captions go with images
    assert text.values == ("i2t_hit", 10) and not text.grouped
    names = ["text_retrieval_recall@1", "image_retrieval_recall@1", "image_retrieval_recall@5",
             "text_retrieval_recall@5", "mean_recall"]
    assert [p.name for p in METRICS.get("mean_recall").parts_of(names)] == [
        "image_retrieval_recall@1", "image_retrieval_recall@5", "text_retrieval_recall@1", "text_retrieval_recall@5"]
    assert METRICS.find("recall@5") is None and METRICS.find("image_retrieval_recall@x") is None
    with pytest.raises(KeyError, match="Did you mean: acc1"):
        METRICS.get("acc_1")
    with pytest.raises(ValueError, match="registered twice"):
        METRICS.add(Metric("acc1", CLASSIFICATION, MEAN, values=("correct", 1)))


def test_task_types_declare_their_metric_sets():
    classification, video, retrieval = (TASK_TYPES.get(t) for t in
                                        ("classification", "video_middle_frame", "zeroshot_retrieval"))
    assert classification.metric_set.labels == ("acc1", "acc5", "mean_per_class_recall")
    assert video.metric_set.labels == ("acc1", "acc5", "mean_per_class_recall", "mean_acc1_acc5")
    assert retrieval.metric_set.labels == ("image_retrieval_recall@K", "text_retrieval_recall@K", "mean_recall")
    assert retrieval.metric_set.accepts("text_retrieval_recall@50") and not retrieval.metric_set.accepts("acc1")
    assert not classification.metric_set.accepts("mean_acc1_acc5")


def _spec(tmp_path, type_, metrics, primary, **extra):
    source = SourceSpec("synthetic_captions" if type_ == "zeroshot_retrieval" else "synthetic", {})
    return TaskSpec(name="t", type=type_, version=1, source=source, metrics=metrics, primary_metric=primary,
                    file=str(tmp_path / "t.yaml"), **extra)


@pytest.mark.parametrize("type_,metric,allowed", [
    ("classification", "mean_acc1_acc5", "allowed: acc1, acc5, mean_per_class_recall"),
    ("video_middle_frame", "mean_recall", "allowed: acc1, acc5, mean_per_class_recall, mean_acc1_acc5"),
    ("zeroshot_retrieval", "acc1", "allowed: image_retrieval_recall@K, text_retrieval_recall@K, mean_recall"),
])
def test_validation_errors_name_the_allowed_metrics(tmp_path, type_, metric, allowed):
    extra = {} if type_ == "zeroshot_retrieval" else {"classnames": "demo_shapes", "templates": "demo_shapes",
                                                       "num_classes": 30}
    with pytest.raises(ConfigError, match=f"metrics \\['{metric}'\\] are not computed by task type '{type_}'.*"
                                          f"{allowed}$"):
        build_task(_spec(tmp_path, type_, [metric], metric, **extra))


@pytest.fixture
def extra_metric():
    """A metric declared only in the registry: scoring, bootstrap and compare handle it with no code of theirs."""
    metric = METRICS.add(Metric("mean_acc1_recall", CLASSIFICATION, AVERAGE, parts=("acc1", "mean_per_class_recall")))
    yield metric
    del METRICS._metrics[metric.name]


def test_a_new_metric_needs_only_its_declaration(extra_metric):
    topk, targets, classes = classification_case()
    values = M.classification_metrics(topk, targets, classes, ["acc1", "mean_per_class_recall", "mean_acc1_recall"])
    assert values["mean_acc1_recall"] == (values["acc1"] + values["mean_per_class_recall"]) / 2
    low, high = B.classification_interval("mean_acc1_recall", topk, targets, classes, B.BootstrapConfig(200, 1))
    assert low < values["mean_acc1_recall"] < high
    labels, a, b = paired_case()
    records = C.classification_records("mean_acc1_recall", labels, a, b)
    assert records[:, 0].equal(labels.double())  # needs the labels through its per-class part
    va, vb, diffs = C.paired_bootstrap(records, C.classification_statistic("mean_acc1_recall", 0),
                                       C.classification_statistic("mean_acc1_recall", 1), B.BootstrapConfig(100, 0))
    per_class = torch.stack([a[0][labels == c].mean() for c in labels.unique()]).mean()
    assert len(diffs) == 100 and va == pytest.approx(float(a[0].mean() + per_class) / 2, abs=1e-12)


def test_compare_refuses_metrics_of_another_family():
    from evalsuite.errors import UserInputError

    with pytest.raises(UserInputError, match="no paired bootstrap for classification metric 'mean_recall'"):
        C.classification_statistic("mean_recall", 0)
    with pytest.raises(UserInputError, match="no paired bootstrap for retrieval metric 'image_retrieval_recall@3'"):
        C.retrieval_statistic("image_retrieval_recall@3", 0, [1, 5])
