"""`evalsuite compare RUN_A RUN_B`: paired bootstrap differences from the two runs' predictions files. The
statistics (evalsuite/compare.py) against plain index resampling and evalsuite/bootstrap.py; the command on two
demo runs that differ (prompts, model) covering the CSVs' differences, refusing runs on other samples, and exit 4
with --fail-if-worse on a known large drop."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from evalsuite.bootstrap import (
    BootstrapConfig,
    classification_interval,
    classification_predictions_csv,
    retrieval_interval,
    retrieval_predictions_csv,
)
from evalsuite.cli import main
from evalsuite.compare import (
    Difference,
    RetrievalArrays,
    classification_records,
    classification_statistic,
    distinct_records,
    p_value,
    paired_bootstrap,
    resampled_counts,
    retrieval_records,
    retrieval_statistic,
    suite_difference,
    task_seed,
)
from evalsuite.results import TASK_COLUMNS, count_status, write_task_csv
from helpers import REPO

# ---------------------------------------------------------------------------------------------------------------
# the statistics


def _index_bootstrap(diff_fn, n: int, iterations: int, seed: int) -> np.ndarray:
    """Plain bootstrap: draw n indices with replacement, the same for A and B."""
    rng = np.random.default_rng(seed)
    return np.array([diff_fn(rng.integers(0, n, n)) for _ in range(iterations)])


def _paired_classification(n=400, classes=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    a1 = (torch.rand(n, generator=g) < 0.7).double()
    b1 = torch.where(torch.rand(n, generator=g) < 0.8, a1, 1 - a1)  # correlated with A, as two checkpoints are
    a5 = torch.maximum(a1, (torch.rand(n, generator=g) < 0.5).double())
    b5 = torch.maximum(b1, (torch.rand(n, generator=g) < 0.5).double())
    return labels, (a1, a5), (b1, b5)


@pytest.mark.parametrize("metric", ["acc1", "acc5", "mean_acc1_acc5", "mean_per_class_recall"])
def test_counts_bootstrap_equals_index_bootstrap_in_distribution(metric):
    labels, a, b = _paired_classification()
    records = classification_records(metric, labels, a, b)
    value_a, value_b, diffs = paired_bootstrap(records, classification_statistic(metric, 0),
                                               classification_statistic(metric, 1), BootstrapConfig(4000, seed=1))
    lab, a1, a5, b1, b5 = labels.numpy(), *(x.numpy() for x in (*a, *b))

    def metric_of(c1, c5, idx):
        if metric == "mean_per_class_recall":
            present = np.unique(lab[idx])
            return np.mean([c1[idx][lab[idx] == c].mean() for c in present])
        return {"acc1": c1, "acc5": c5, "mean_acc1_acc5": (c1 + c5) / 2}[metric][idx].mean()

    everything = np.arange(len(lab))
    assert value_a == pytest.approx(metric_of(a1, a5, everything), abs=1e-12)
    assert value_b == pytest.approx(metric_of(b1, b5, everything), abs=1e-12)
    plain = _index_bootstrap(lambda idx: metric_of(b1, b5, idx) - metric_of(a1, a5, idx), len(lab), 4000, 2)
    # the same distribution: mean, spread and 95% interval agree within Monte Carlo error
    assert float(diffs.mean()) == pytest.approx(plain.mean(), abs=0.003)
    assert float(diffs.std()) == pytest.approx(plain.std(), rel=0.08)
    low, high = np.quantile(diffs.numpy(), [0.025, 0.975])
    assert low == pytest.approx(np.quantile(plain, 0.025), abs=0.01)
    assert high == pytest.approx(np.quantile(plain, 0.975), abs=0.01)


def test_counts_bootstrap_agrees_with_bootstrap_py_for_one_run():
    """A run alone, resampled as compare does, gives bootstrap.py's interval (within Monte Carlo error)."""
    labels, a, _ = _paired_classification(n=600, classes=6)
    topk = torch.stack([torch.where(a[0].bool(), labels, (labels + 1) % 6)] + [(labels + k) % 6 for k in (2, 3, 4, 5)],
                       dim=1)
    for metric in ("acc1", "mean_per_class_recall"):
        records = classification_records(metric, labels, a, a)
        unique, counts = distinct_records(records)
        stat = classification_statistic(metric, 0)
        values = torch.cat([stat(w, unique) for w in resampled_counts(counts, BootstrapConfig(4000, 3))])
        ref_low, ref_high = classification_interval(metric, topk, labels, 6, BootstrapConfig(4000, 4))
        low, high = np.quantile(values.numpy(), [0.025, 0.975])
        assert low == pytest.approx(ref_low, abs=0.01) and high == pytest.approx(ref_high, abs=0.01)


def _retrieval_case(n_images=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    per_image = torch.randint(1, 4, (n_images,), generator=g)
    owner = torch.repeat_interleave(torch.arange(n_images), per_image)
    t2i = torch.randint(0, 12, (len(owner),), generator=g)
    i2t = torch.randint(0, 12, (n_images,), generator=g)
    return owner, t2i, i2t


def test_retrieval_resamples_images_with_their_captions_as_bootstrap_py():
    owner, t2i, i2t = _retrieval_case()
    ks = [1, 5, 10]
    captions = torch.bincount(owner).double()
    arrays = RetrievalArrays(captions, {k: torch.bincount(owner, weights=(t2i < k).double()) for k in ks},
                             {k: (i2t < k).double() for k in ks})
    records = retrieval_records(arrays, arrays, ks)
    unique, counts = distinct_records(records)
    stat = retrieval_statistic("mean_recall", 0, ks)
    expected = np.mean([float((t2i < k).double().mean()) for k in ks] + [float((i2t < k).double().mean()) for k in ks])
    assert float(stat(counts[None], unique)[0]) == pytest.approx(expected, abs=1e-12)
    values = torch.cat([stat(w, unique) for w in resampled_counts(counts, BootstrapConfig(4000, 5))])
    ref_low, ref_high = retrieval_interval(t2i, owner.tolist(), i2t, ks, BootstrapConfig(4000, 6))
    low, high = np.quantile(values.numpy(), [0.025, 0.975])
    assert low == pytest.approx(ref_low, abs=0.015) and high == pytest.approx(ref_high, abs=0.015)


def test_p_value_interval_seed_and_suite_rules():
    assert p_value(torch.zeros(999, dtype=torch.double)) == 1.0  # identical runs
    assert p_value(torch.full((999,), 0.01, dtype=torch.double)) == pytest.approx(2 / 1000)
    labels, a, b = _paired_classification()
    records = classification_records("acc1", labels, a, b)
    stats = classification_statistic("acc1", 0), classification_statistic("acc1", 1)
    one = paired_bootstrap(records, *stats, BootstrapConfig(500, seed=7))[2]
    assert torch.equal(one, paired_bootstrap(records, *stats, BootstrapConfig(500, seed=7))[2])  # seeded
    assert not torch.equal(one, paired_bootstrap(records, *stats, BootstrapConfig(500, seed=8))[2])
    assert task_seed(0, "cifar10") != task_seed(0, "cifar100") and task_seed(1, "x") != task_seed(0, "x")
    m1 = Difference("t1", "acc1", 10, 0.5, 0.6, 0.1, 0, 0, 1, torch.tensor([0.1, 0.2, 0.3], dtype=torch.double))
    m2 = Difference("t2", "acc1", 20, 0.4, 0.2, -0.2, 0, 0, 1, torch.tensor([-0.3, -0.2, -0.1], dtype=torch.double))
    suite = suite_difference("s", [m1, m2], 0.95)
    assert suite.delta == pytest.approx(-0.05) and suite.value_a == pytest.approx(0.45)
    assert torch.allclose(suite.diffs, torch.tensor([-0.1, 0.0, 0.1], dtype=torch.double))
    assert suite.num_samples == 30 and suite.members == ("t1", "t2")
    worse = Difference("t", "acc1", 10, 0.8, 0.7, -0.1, -0.15, -0.05, 0.01, torch.zeros(1))
    assert worse.significantly_worse(5) and not worse.significantly_worse(10)  # -10 pp is not below -10 pp
    noisy = Difference("t", "acc1", 10, 0.8, 0.7, -0.1, -0.15, 0.01, 0.2, torch.zeros(1))
    assert not noisy.significantly_worse(0)  # interval reaches 0


# ---------------------------------------------------------------------------------------------------------------
# synthetic runs with a known difference


def write_classification_run(folder: Path, task: str, labels: list[int], correct: list[bool], classes: int = 10,
                             names: list[str] | None = None) -> Path:
    """A task CSV and its predictions file as a run writes them: top-1 right where ``correct`` says."""
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"img{i:05d}" for i in range(len(labels))]
    targets = torch.tensor(labels)
    first = torch.where(torch.tensor(correct), targets, (targets + 1) % classes)
    topk = torch.stack([first] + [(first + k) % classes for k in (1, 2, 3, 4)], dim=1)
    (folder / f"{task}.predictions.csv").write_text(classification_predictions_csv(names, targets, topk))
    acc1 = sum(correct) / len(correct)
    n = len(labels)
    rows = [{c: "" for c in TASK_COLUMNS} | {
        "model": folder.name, "model_fingerprint": "f" * 16, "adapter": "open_clip", "weights": "file:x", "task": task,
        "task_version": 1, "task_fingerprint": "t" * 16, "transform": "shortest",
        "protocol": "decoder=pil;precision=fp32;transform=shortest", "metric": "acc1", "value": acc1,
        "is_primary": True, "num_samples": n, "num_failed": 0, "expected_num_samples": None,
        "count_status": count_status(n, None, False), "partial": False, "seconds": 1.0, "images_per_second": 1.0}]
    write_task_csv(folder / f"{task}.csv", rows)
    return folder


def test_known_large_drop_exits_4_with_fail_if_worse(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 1000).tolist()
    good = [bool(x) for x in rng.random(1000) < 0.8]
    bad = [bool(g and r < 0.6) for g, r in zip(good, rng.random(1000))]  # B loses ~32 pp of A's hits
    a = write_classification_run(tmp_path / "a" / "m", "toy", labels, good)
    b = write_classification_run(tmp_path / "b" / "m", "toy", labels, bad)
    drop = 100 * (sum(bad) - sum(good)) / 1000
    assert main(["compare", str(a), str(b), "--fail-if-worse", "5", "--iterations", "2000"]) == 4
    captured = capsys.readouterr()
    assert "WORSE" in captured.out and "toy" in captured.err and "significantly worse" in captured.err
    assert f"{drop:+.2f}" in captured.out
    assert main(["compare", str(a), str(b), "--fail-if-worse", str(-drop + 1), "--iterations", "2000"]) == 0
    assert main(["compare", str(a), str(b), "--iterations", "2000"]) == 0  # no gate without --fail-if-worse
    assert main(["compare", str(b), str(a), "--fail-if-worse", "0", "--iterations", "2000"]) == 0  # B better
    capsys.readouterr()


def test_refuses_other_samples_other_labels_and_foreign_predictions(tmp_path, capsys):
    labels, correct = [i % 10 for i in range(200)], [i % 3 > 0 for i in range(200)]
    a = write_classification_run(tmp_path / "a" / "m", "toy", labels, correct)
    fewer = write_classification_run(tmp_path / "fewer" / "m", "toy", labels[:150], correct[:150])
    assert main(["compare", str(a), str(fewer)]) == 2
    err = capsys.readouterr().err
    assert "task toy" in err and "200 samples in A, 150 in B" in err and "50 only in A" in err and "img00150" in err
    renamed = write_classification_run(tmp_path / "renamed" / "m", "toy", labels, correct,
                                       names=[f"img{i:05d}" for i in range(199)] + ["other"])
    assert main(["compare", str(a), str(renamed)]) == 2
    err = capsys.readouterr().err
    assert "1 only in A ('img00199')" in err and "1 only in B ('other')" in err
    relabelled = write_classification_run(tmp_path / "relabelled" / "m", "toy", [(x + 1) % 10 for x in labels],
                                          correct)
    assert main(["compare", str(a), str(relabelled)]) == 2
    assert "other labels" in capsys.readouterr().err
    foreign = write_classification_run(tmp_path / "foreign" / "m", "toy", labels, correct)
    (foreign / "toy.predictions.csv").write_text(classification_predictions_csv(
        [f"img{i:05d}" for i in range(200)], torch.tensor(labels), torch.tensor([[(x + 1) % 10] * 5 for x in labels])))
    assert main(["compare", str(a), str(foreign)]) == 2
    assert "not this result's" in capsys.readouterr().err
    (foreign / "toy.predictions.csv").unlink()
    assert main(["compare", str(a), str(foreign)]) == 2
    assert "no per-sample predictions file" in capsys.readouterr().err


def test_retrieval_predictions_pair_by_image(tmp_path, capsys):
    """Gallery order may differ between runs; images are matched by name and carry their captions along."""
    names = [f"im{i}" for i in range(5)]
    owner = [0, 0, 1, 2, 2, 2, 3, 4]
    t2i, i2t = torch.tensor([0, 3, 1, 0, 0, 7, 2, 0]), torch.tensor([0, 1, 6, 0, 2])
    from evalsuite.compare import pair_retrieval, read_predictions, retrieval_arrays

    path_a = tmp_path / "a.csv"
    path_a.write_text(retrieval_predictions_csv(names, owner, t2i, i2t))
    order = [4, 3, 2, 1, 0]  # B lists the gallery backwards
    new_index = {old: new for new, old in enumerate(order)}
    texts_b = sorted(range(len(owner)), key=lambda t: (new_index[owner[t]], t))
    path_b = tmp_path / "b.csv"
    path_b.write_text(retrieval_predictions_csv([names[i] for i in order], [new_index[owner[t]] for t in texts_b],
                                                t2i[texts_b], i2t[order]))
    a, b = read_predictions(path_a), read_predictions(path_b)
    arrays_a, arrays_b = pair_retrieval("r", a, b, [1, 5])
    assert torch.equal(arrays_a.captions, arrays_b.captions)
    for k in (1, 5):
        assert torch.equal(arrays_a.t2i_hits[k], arrays_b.t2i_hits[k])
        assert torch.equal(arrays_a.i2t_hits[k], arrays_b.i2t_hits[k])
    assert retrieval_arrays(a, [1]).t2i_hits[1].tolist() == [1, 0, 2, 0, 1]


# ---------------------------------------------------------------------------------------------------------------
# two real demo runs


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    """demo-clip on demo_shapes + demo_heldout + demo_retrieval, with its templates (A) and with one template of
    an --include-path prompt file (B); a --limit run (C); the tiny random model on demo_retrieval (D)."""
    from evalsuite.models.tiny import write_tiny_clip

    root = tmp_path_factory.mktemp("compare-demo")
    inc = root / "inc"
    (inc / "prompts" / "templates").mkdir(parents=True)
    (inc / "prompts" / "templates" / "demo_shapes.yaml").write_text(
        'source: test\ntemplates: ["a {c}.", "a drawing of a {c} on a grey background."]\n')
    (inc / "tasks" / "suites").mkdir(parents=True)
    (inc / "tasks" / "suites" / "shapes_pair.yaml").write_text(
        "name: shapes_pair\ndescription: two demo classification tasks\nmembers: [demo_shapes, demo_heldout]\n")
    common = ["--workers", "0", "--no-progress", "--model", "demo-clip", "--include-path", str(inc)]
    tasks = "demo_shapes,demo_heldout,demo_retrieval"
    assert main(["run", *common[:-2], "--tasks", tasks, "--output-dir", str(root / "a")]) == 0
    assert main(["run", *common, "--tasks", tasks, "--output-dir", str(root / "b")]) == 0
    assert main(["run", *common[:-2], "--tasks", "demo_shapes", "--limit", "300", "--output-dir",
                 str(root / "c")]) == 0
    tiny = write_tiny_clip(root / "tiny", seed=0)
    assert main(["run", "--workers", "0", "--no-progress", "--model", f"local-dir:{tiny}", "--tasks", "demo_retrieval",
                 "--output-dir", str(root / "d")]) == 0
    return {k: next((root / k).iterdir()) for k in "abcd"}, inc


def _values(folder: Path) -> dict[str, float]:
    tasks = [p for p in folder.glob("*.csv") if p.stem not in ("summary", "suites") and ".predictions" not in p.name]
    return {p.stem: float(r["value"]) for p in tasks for r in csv.DictReader(p.open()) if r["is_primary"] == "true"}


def test_compare_demo_runs_with_other_prompts(demo_runs, tmp_path, capsys):
    runs, inc = demo_runs
    out = tmp_path / "cmp.csv"
    assert main(["compare", str(runs["a"]), str(runs["b"]), "--include-path", str(inc), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "prompts=include-path" in table and "10000 resamples" in table
    rows = {r["name"]: r for r in csv.DictReader(out.open())}
    assert set(rows) == {"demo_shapes", "demo_heldout", "demo_retrieval", "suite:shapes_pair"}
    a, b = _values(runs["a"]), _values(runs["b"])
    assert a["demo_shapes"] != b["demo_shapes"]  # the prompts changed the result
    for task in ("demo_shapes", "demo_heldout", "demo_retrieval"):
        r = rows[task]
        true = b[task] - a[task]
        assert float(r["delta"]) == pytest.approx(true, abs=1e-12)
        assert float(r["ci_low"]) <= true <= float(r["ci_high"])  # the interval covers the CSVs' difference
        assert float(r["value_a"]) == a[task] and float(r["value_b"]) == b[task]
    suite_true = (b["demo_shapes"] + b["demo_heldout"] - a["demo_shapes"] - a["demo_heldout"]) / 2
    suite = rows["suite:shapes_pair"]
    assert float(suite["delta"]) == pytest.approx(suite_true, abs=1e-12)
    assert float(suite["ci_low"]) <= suite_true <= float(suite["ci_high"])
    assert rows["demo_retrieval"]["delta"] == "0.0" and rows["demo_retrieval"]["p_value"] == "1.0"  # same captions
    # the same command again: the same numbers (seeded)
    again = tmp_path / "again.csv"
    assert main(["compare", str(runs["a"]), str(runs["b"]), "--include-path", str(inc), "--out", str(again)]) == 0
    assert again.read_text() == out.read_text()
    capsys.readouterr()


def test_compare_refuses_demo_runs_on_other_samples(demo_runs, capsys):
    runs, _ = demo_runs
    assert main(["compare", str(runs["a"]), str(runs["c"])]) == 2
    err = capsys.readouterr().err
    assert "task demo_shapes" in err and "600 samples in A, 300 in B" in err and "300 only in A" in err


def test_compare_retrieval_of_two_models_and_the_ci_gate(demo_runs, capsys):
    runs, _ = demo_runs
    a, d = _values(runs["a"]), _values(runs["d"])
    true = d["demo_retrieval"] - a["demo_retrieval"]
    assert true < -0.3  # the random tiny model is far worse than the trained demo model
    assert main(["compare", str(runs["a"]), str(runs["d"]), "--fail-if-worse", "1"]) == 4
    captured = capsys.readouterr()
    line = next(x for x in captured.out.splitlines() if x.startswith("demo_retrieval"))
    assert f"{100 * true:+.2f}" in line and "WORSE" in line
    assert "not compared (only in A): demo_heldout, demo_shapes" in captured.out
    assert "demo_retrieval mean_recall" in captured.err
    assert main(["compare", str(runs["d"]), str(runs["a"]), "--fail-if-worse", "1"]) == 0
    capsys.readouterr()


def test_the_gate_fails_when_b_lacks_a_task_a_has(demo_runs, tmp_path, capsys):
    """A candidate whose task failed (no CSV) must not pass the gate on the tasks that finished."""
    import shutil

    runs, _ = demo_runs
    b = tmp_path / "demo-clip"
    shutil.copytree(runs["a"], b)
    for path in b.glob("demo_heldout*.csv"):
        path.unlink()
    assert main(["compare", str(runs["a"]), str(b), "--iterations", "200", "--fail-if-worse", "1"]) == 4
    err = capsys.readouterr().err
    assert "B has no result for 1 task(s) A has: demo_heldout" in err and "--tasks" in err
    assert main(["compare", str(runs["a"]), str(b), "--iterations", "200"]) == 0  # no gate: a report only
    assert main(["compare", str(runs["a"]), str(b), "--iterations", "200", "--fail-if-worse", "1",
                 "--tasks", "demo_shapes,demo_retrieval"]) == 0
    assert main(["compare", str(b), str(runs["a"]), "--iterations", "200", "--fail-if-worse", "1"]) == 0  # B has more
    capsys.readouterr()


def test_compare_help_has_defaults_and_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = capsys.readouterr().out
    assert "default 10000" in text and "example: evalsuite compare" in text and "--fail-if-worse" in text


def test_readme_documents_compare_and_export_formats():
    readme = (REPO / "README.md").read_text()
    assert "evalsuite compare" in readme and "--format model-index" in readme and "--format json" in readme
