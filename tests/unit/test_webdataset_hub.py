"""The webdataset sources through the CLI against a stand-in hub on 127.0.0.1 (tests/unit/webdataset_hub.py) with
the real huggingface_hub client: `prepare` downloads into the HF cache once, runs read the shards there, a local
copy is used without asking the hub, and offline with nothing cached is one line and exit 2."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evalsuite.catalog import Catalog
from evalsuite.prepare import prepare_task
from evalsuite.prompts import load_prompt_bank
from evalsuite.tasks import build_task
from webdataset_hub import COMMIT, FakeHub, write_classification_shards, write_retrieval_shards

CLASSES = ["cat", "dog", "bird"]
LABELS = [0, 1, 2, 2, 1, 0, 1]
CAPTIONS = [["a red square.", "a square"], ["a blue circle."], ["a green thing", "green"]]
TASKS = {  # name -> (kind, repo, revision, expected count)
    "toy_cls": ("webdataset", "clip-benchmark/wds_toy_cls", "main", len(LABELS)),
    "toy_caps": ("webdataset_captions", "clip-benchmark/wds_toy_caps", COMMIT, len(CAPTIONS)),
    "toy_nope": ("webdataset", "clip-benchmark/wds_nope", "main", 1),
}


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("repos")
    return {"clip-benchmark/wds_toy_cls": write_classification_shards(root / "wds_toy_cls", CLASSES, LABELS),
            "clip-benchmark/wds_toy_caps": write_retrieval_shards(root / "wds_toy_caps", CAPTIONS, max_count=2)}


@pytest.fixture
def hub(repos):
    fake = FakeHub(dict(repos))
    fake.url = fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def inc(tmp_path) -> Path:
    inc = tmp_path / "inc"
    for sub in ("tasks", "prompts/classnames", "prompts/templates"):
        (inc / sub).mkdir(parents=True)
    (inc / "prompts/classnames/toy.yaml").write_text(f"source: test\nclassnames: {CLASSES}\n")
    (inc / "prompts/templates/toy.yaml").write_text("source: test\ntemplates: ['a photo of a {c}.']\n")
    for name, (kind, repo, revision, count) in TASKS.items():
        body = ("type: zeroshot_retrieval\nmetrics: [image_retrieval_recall@1, text_retrieval_recall@1]\n"
                "primary_metric: image_retrieval_recall@1\n" if kind == "webdataset_captions" else
                "type: classification\nclassnames: toy\ntemplates: toy\nnum_classes: 3\nmetrics: [acc1]\n"
                "primary_metric: acc1\n")
        (inc / "tasks" / f"{name}.yaml").write_text(
            f"name: {name}\nversion: 1\n{body}expected_num_samples: {count}\nsource:\n  kind: {kind}\n  args:\n"
            f"    repo: {repo}\n    revision: '{revision}'\n    split: test\n")
    return inc


def cli(args: list[str], tmp_path: Path, hub: FakeHub | None, offline: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf"), NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    env["HF_ENDPOINT"] = hub.url if hub else "http://127.0.0.1:9"  # nothing listens on port 9
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run([sys.executable, "-m", "evalsuite.cli", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


def outcome_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """prepare's per-task outcome lines (after its plan lines)."""
    return [line for line in proc.stdout.splitlines() if line.startswith(("ok ", "FAIL "))]


def test_prepare_downloads_once_and_runs_read_the_cache(hub, inc, tmp_path, tiny_model_dir):
    data_root = tmp_path / "data"
    common = ["--include-path", str(inc), "--data-root", str(data_root)]
    first = cli(["prepare", "toy_cls,toy_caps,toy_nope", *common], tmp_path, hub)
    assert first.returncode == 3, first.stderr
    lines = outcome_lines(first)
    assert [line.split(":")[0] for line in lines] == ["ok   toy_cls", "ok   toy_caps", "FAIL toy_nope"], lines
    assert "could not download clip-benchmark/wds_nope@main from the Hugging Face hub: RepositoryNotFound" in lines[2]
    assert "Traceback" not in first.stdout + first.stderr
    assert sorted(hub.downloads) == sorted(  # each file of the split and the metadata, once
        [f"wds_toy_cls/{n}" for n in ("classnames.txt", "zeroshot_classification_templates.txt",
                                      "test/nshards.txt", "test/0.tar", "test/1.tar")]
        + [f"wds_toy_caps/{n}" for n in ("dataset_type.txt", "test/nshards.txt", "test/0.tar", "test/1.tar")])
    assert not data_root.exists()  # read from the HF cache: nothing copied under --data-root
    snapshots = sorted((tmp_path / "hf" / "hub").glob("datasets--clip-benchmark--wds_toy_*/snapshots/*"))
    assert [p.name for p in snapshots] == [COMMIT, COMMIT]

    hub.requests.clear()
    again = cli(["prepare", "toy_cls,toy_caps", *common], tmp_path, hub)
    assert again.returncode == 0, again.stdout + again.stderr
    assert hub.requests == []  # found in the cache: the hub is not even asked

    out = tmp_path / "results"
    run = cli(["run", "--model", f"local-dir:{tiny_model_dir}", "--tasks", "toy_cls,toy_caps", *common,
               "--output-dir", str(out), "--workers", "1"], tmp_path, hub, offline=True)
    assert run.returncode == 0, run.stderr[-3000:]
    model_dir = next(out.iterdir())
    cls_rows = list(csv.DictReader((model_dir / "toy_cls.csv").open()))
    caps_rows = list(csv.DictReader((model_dir / "toy_caps.csv").open()))
    assert ({r["num_samples"] for r in cls_rows} == {str(len(LABELS))}
            and {r["count_status"] for r in cls_rows} == {"ok"})
    assert {r["num_samples"] for r in caps_rows} == {"3"} and {r["num_texts"] for r in caps_rows} == {"5"}
    assert hub.requests == []


def test_local_shards_under_data_root_never_ask_the_hub(hub, repos, inc, tmp_path, tiny_model_dir):
    import shutil

    shutil.copytree(repos["clip-benchmark/wds_toy_cls"], tmp_path / "data" / "wds_toy_cls")
    out = tmp_path / "results"
    run = cli(["run", "--model", f"local-dir:{tiny_model_dir}", "--tasks", "toy_cls", "--include-path", str(inc),
               "--data-root", str(tmp_path / "data"), "--output-dir", str(out), "--workers", "0"], tmp_path, hub)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"7 samples in 2 shards under {tmp_path / 'data' / 'wds_toy_cls'}" in run.stderr
    assert hub.requests == [] and not (tmp_path / "hf").exists()


def test_offline_with_nothing_cached_is_one_line_and_exit_2(inc, tmp_path):
    common = ["--include-path", str(inc), "--data-root", str(tmp_path / "data")]
    run = cli(["run", "--model", "demo-clip", "--tasks", "toy_cls", *common, "--output-dir",
               str(tmp_path / "results")], tmp_path, None, offline=True)
    assert run.returncode == 2, run.stderr[-3000:]
    (reason,) = [line for line in run.stderr.splitlines() if "wds_toy_cls" in line]  # one line says it all
    assert "Traceback" not in run.stderr, run.stderr
    assert "clip-benchmark/wds_toy_cls@main not downloaded" in reason and "evalsuite prepare toy_cls" in reason

    prepare = cli(["prepare", "toy_cls", *common], tmp_path, None, offline=True)
    assert prepare.returncode in (2, 3) and "Traceback" not in prepare.stdout + prepare.stderr
    (line,) = outcome_lines(prepare)
    assert line.startswith("FAIL toy_cls: ") and "\n" not in line, line
    assert not (tmp_path / "data").exists() and not (tmp_path / "hf").exists()


def test_download_while_offline_is_one_line_naming_the_repo(inc, tmp_path, monkeypatch):
    """The source's own download error (prepare may stop earlier, after probing the network)."""
    import huggingface_hub.constants as constants

    from evalsuite.errors import DatasetUnavailableError

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    task = build_task(Catalog.load([inc]).tasks["toy_cls"], [inc])
    with pytest.raises(DatasetUnavailableError) as err:
        task.sources[0].fetch(task.source_context(tmp_path / "data"))
    message = str(err.value)
    assert "\n" not in message and "could not download clip-benchmark/wds_toy_cls@main" in message
    assert "HF_HUB_OFFLINE is set" in message


def test_stanford_cars_yaml_reads_wds_cars_shards_in_place(tmp_path, monkeypatch):
    """The catalogue's stanford_cars (kind hf_webdataset, now read in place) on converter shards in wds_cars/."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    spec = Catalog.load().tasks["stanford_cars"]
    names = load_prompt_bank(spec).classnames
    write_classification_shards(tmp_path / "data" / "wds_cars", names, [0, 40, 80, 120, 195])
    task = build_task(spec)
    assert task.find_samples(task.source_context(tmp_path / "data")).labels == [0, 40, 80, 120, 195]
    outcome = prepare_task(spec, tmp_path / "data")
    assert outcome.num_samples == 5 and "expects 8041" in outcome.message


def test_prepare_downloads_a_damaged_cached_shard_again(hub, inc, tmp_path):
    """The hub cache trusts a file once it is there: a shard cut short in it was reported, and every later
    prepare reported it again ('download it again' could not be followed)."""
    common = ["--include-path", str(inc), "--data-root", str(tmp_path / "data")]
    assert cli(["prepare", "toy_cls", *common], tmp_path, hub).returncode == 0
    (shard,) = (tmp_path / "hf" / "hub").glob("datasets--clip-benchmark--wds_toy_cls/snapshots/*/test/1.tar")
    blob = shard.resolve()
    blob.write_bytes(blob.read_bytes()[:1000])  # an interrupted copy, a bad disk
    hub.downloads.clear()
    again = cli(["prepare", "toy_cls", *common], tmp_path, hub)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "damaged" in again.stderr and "wds_toy_cls/test/1.tar" in hub.downloads
    assert outcome_lines(again)[0].startswith("ok   toy_cls: 7 samples")
