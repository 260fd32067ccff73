"""`evalsuite prepare`'s plan: one line per task naming the source it would use, `--dry-run`, and the offline
path (exit 2, nothing fetched or created)."""

import os
import subprocess
import sys

import pytest

from evalsuite.catalog import Catalog
from evalsuite.cli import main
from evalsuite.data.clip_benchmark import ClipBenchmarkSource
from evalsuite.errors import DatasetUnavailableError, TasksFailedError
from evalsuite.prepare import hub_reachable, plan_task, run_prepare
from helpers import write_fake_mnist

CATALOG = Catalog.load()
DEAD_PROXY = "http://127.0.0.1:9"  # nothing listens on the discard port: a network that is not there


def offline_env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_ENDPOINT", "EVALSUITE_DATA_ROOT")}
    return {**env, "https_proxy": DEAD_PROXY, "HTTPS_PROXY": DEAD_PROXY, "http_proxy": DEAD_PROXY,
            "HTTP_PROXY": DEAD_PROXY, "no_proxy": "", "NO_PROXY": "", "HF_HOME": str(tmp_path / "hf-home")}


def plan_lines(stdout: str) -> dict[str, str]:
    return {line.split(":")[0].removeprefix("plan "): line for line in stdout.splitlines()
            if line.startswith("plan ")}


def test_offline_prepare_prints_the_plan_fails_each_task_and_creates_nothing(tmp_path):
    """The whole suite, nothing present, no network: a plan line per task, a FAIL line per task, exit 2, and no
    folder anywhere (data root, Hugging Face cache, working directory)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    data_root = tmp_path / "data"
    proc = subprocess.run([sys.executable, "-m", "evalsuite.cli", "prepare", "eva_cls27", "--data-root",
                           str(data_root)], cwd=cwd, env=offline_env(tmp_path), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    members = CATALOG.suite_members("eva_cls27")
    plans = plan_lines(proc.stdout)
    assert list(plans) == members
    fails = [line for line in proc.stdout.splitlines() if line.startswith("FAIL ")]
    assert [line.split(":")[0] for line in fails] == [f"FAIL {m}" for m in members]
    assert "plan imagenet1k: download webdataset clip-benchmark/wds_imagenet1k@b24c7a5a3ef1 split=test" in plans[
        "imagenet1k"]
    assert "download clip_benchmark cifar100 split=test: into " in plans["cifar100"]
    assert "manual image_folder" in plans["birdsnap"] and "get_birdsnap.py" in plans["birdsnap"]
    assert "FAIL cifar100: offline: needs a download" in proc.stdout
    assert "network is unreachable" in proc.stderr and "127.0.0.1:9" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd"] and not any(cwd.iterdir())


def test_dry_run_prints_the_plan_and_stops(tmp_path, capsys):
    code = main(["prepare", "eva_cls27,eva_retrieval", "--dry-run", "--data-root", str(tmp_path / "data")])
    assert code == 0
    plans = plan_lines(capsys.readouterr().out)
    assert len(plans) == 29
    defaults = {name: line.split(": ")[1] for name, line in plans.items()}
    assert defaults["sun397"] == "download webdataset clip-benchmark/wds_sun397@main split=test"
    assert defaults["stanford_cars"] == "download webdataset clip-benchmark/wds_cars@main split=test"
    assert defaults["pcam"] == "download webdataset clip-benchmark/wds_vtab-pcam@502695fe1a14 split=test"
    assert defaults["fer2013"] == "download webdataset clip-benchmark/wds_fer2013@9399b9416752 split=test"
    assert defaults["objectnet"] == "download webdataset clip-benchmark/wds_objectnet@main split=test"
    assert defaults["oxford_pets"] == "download clip_benchmark pets split=test"
    assert defaults["flickr30k"] == "download webdataset_captions clip-benchmark/wds_flickr30k@main split=test"
    assert defaults["resisc45"].startswith("manual image_folder")
    assert not (tmp_path / "data").exists()


def test_present_data_is_counted_without_the_network(tmp_path, monkeypatch):
    """A task whose data is there is verified offline (count mismatch: exit 3, not the offline 2)."""
    write_fake_mnist(tmp_path / "mnist", [1, 2, 3])
    monkeypatch.setattr(ClipBenchmarkSource, "download_into", lambda *a: pytest.fail("must not download"))
    plan = plan_task(CATALOG.tasks["mnist"], tmp_path)
    assert plan.action == "present" and plan.num_samples == 3 and plan.kind == "clip_benchmark"
    lines: list[str] = []
    with pytest.raises(TasksFailedError):
        run_prepare([CATALOG.tasks["mnist"]], tmp_path, online=False, out=lines.append)
    assert lines[0].startswith("plan mnist: present clip_benchmark mnist split=test: 3 samples at")
    assert lines[1].startswith("FAIL mnist: 3 samples found") and "expects 10000" in lines[1]


def test_offline_only_downloads_fail(tmp_path):
    write_fake_mnist(tmp_path / "mnist", list(range(10)) * 1000)
    specs = [CATALOG.tasks["mnist"], CATALOG.tasks["cifar100"]]
    lines: list[str] = []
    with pytest.raises(DatasetUnavailableError, match="1 need a download"):
        run_prepare(specs, tmp_path, online=False, out=lines.append)
    assert lines[2].startswith("ok   mnist: 10000 samples found") and lines[3].startswith("FAIL cifar100: offline")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist"]


def test_download_false_is_never_tried(tmp_path, monkeypatch):
    """sun397's CLIP_benchmark source only reads a copy (its URL is dead): prepare goes to the webdataset."""
    from evalsuite.data.webdataset import WebdatasetSource

    def hub_down(self):
        raise DatasetUnavailableError("hub down")

    monkeypatch.setattr(ClipBenchmarkSource, "download_into", lambda *a: pytest.fail("must not download"))
    monkeypatch.setattr(WebdatasetSource, "download", hub_down)
    lines: list[str] = []
    with pytest.raises(TasksFailedError):
        run_prepare([CATALOG.tasks["sun397"]], tmp_path, online=True, out=lines.append)
    assert "hub down" in lines[1] and "[clip_benchmark]" in lines[1]


def test_hub_probe(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_reachable() == (False, "HF_HUB_OFFLINE is set")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    for name in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, DEAD_PROXY)
    monkeypatch.setenv("no_proxy", "")
    reachable, why = hub_reachable(timeout=1)
    assert not reachable and "127.0.0.1:9" in why
