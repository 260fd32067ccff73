"""Third-party registrations through package entry points: a distribution's dist-info written on sys.path (no
pip), found lazily by the registries, listed by `evalsuite ls models`, usable by `evalsuite run`; a broken plugin
named with its distribution and never in the way of --help or ls."""

import importlib.metadata
import os
import subprocess
import sys

import pytest

from evalsuite.errors import UnknownNameError
from evalsuite.registry import PluginError, Registry

TOY_ADAPTER = '''
from evalsuite.models.open_clip_adapter import OpenClipAdapter


class ToyAdapter(OpenClipAdapter):
    """A third-party adapter: open_clip's loading under the plugin's own name."""
'''


def write_dist(site, name, entry_points: dict, modules: dict) -> None:
    """``site/<name>-0.1.dist-info`` (METADATA + entry_points.txt) and the plugin's modules beside it."""
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    sections = [f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items())
                for group, entries in entry_points.items()]
    (info / "entry_points.txt").write_text("".join(sections))
    for module, text in modules.items():
        (site / f"{module}.py").write_text(text)


def test_registry_reads_entry_points_lazily_and_names_broken_plugins(tmp_path, monkeypatch):
    group = "evalsuite_test.widgets"
    write_dist(tmp_path, "widget-plugin", {group: {"round": "widget_mod:Round", "broken": "widget_missing:X"}},
               {"widget_mod": "class Round:\n    pass\n"})
    write_dist(tmp_path / "other", "other-plugin", {group: {"round2": "widget_mod:Round", "code": "widget_mod:Round"}},
               {})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path / "other"))
    reads = []
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: reads.append(kw) or real(**kw))

    reg = Registry("widget", group=group)
    reg.register_lazy("code", "json:dumps")
    assert reg.get("code") is __import__("json").dumps and reads == []  # a name in code: no metadata read
    assert reg.names() == ["broken", "code", "round", "round2"] and len(reads) == 1
    assert "widget_mod" not in sys.modules  # listing imports no plugin
    assert reg.get("round").__name__ == "Round" and reg.plugin_origin("round") == "widget-plugin 0.1"
    assert reg.plugin_origin("code") is None  # the code registration wins over other-plugin's "code"
    with pytest.raises(PluginError, match=r"widget 'broken' of plugin widget-plugin 0.1 \(entry point "
                                          r"evalsuite_test.widgets: broken = widget_missing:X\) cannot be loaded:"
                                          r" ModuleNotFoundError"):
        reg.get("broken")
    with pytest.raises(UnknownNameError, match="Did you mean: round"):
        reg.get("rund")
    assert len(reads) == 1  # read once


def test_two_plugins_declaring_one_name_is_an_error_naming_both(tmp_path, monkeypatch):
    group = "evalsuite_test.gadgets"
    write_dist(tmp_path / "a", "gadget-a", {group: {"g": "json:dumps"}}, {})
    write_dist(tmp_path / "b", "gadget-b", {group: {"g": "json:loads"}}, {})
    monkeypatch.syspath_prepend(str(tmp_path / "a"))
    monkeypatch.syspath_prepend(str(tmp_path / "b"))
    with pytest.raises(PluginError, match=r"declared by several plugins.*gadget-[ab] 0.1.*gadget-[ab] 0.1"):
        Registry("gadget", group=group).get("g")


def test_the_built_in_registries_have_their_groups():
    from evalsuite.data import SOURCES
    from evalsuite.models.loading import ADAPTERS
    from evalsuite.tasks import TASK_TYPES

    assert (ADAPTERS.group, SOURCES.group, TASK_TYPES.group) == (
        "evalsuite.adapters", "evalsuite.sources", "evalsuite.task_types")


def evalsuite_cli(site, *argv, timeout=300):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "evalsuite", *map(str, argv)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_plugin_adapter_is_listed_and_used_by_the_cli(tmp_path, tiny_model_dir):
    from helpers import write_class_folders, write_include_task

    site = tmp_path / "site"
    write_dist(site, "toy-plugin", {"evalsuite.adapters": {"toy": "toy_plugin:ToyAdapter",
                                                           "broken": "toy_plugin_missing:Adapter"}},
               {"toy_plugin": TOY_ADAPTER})
    inc = tmp_path / "inc"
    write_include_task(inc, "toy3", ["red", "green", "blue"])
    write_class_folders(tmp_path / "data" / "toy3", ["red", "green", "blue"], per_class=2)
    (inc / "cards").mkdir()
    for name, adapter in (("toy-clip", "toy"), ("broken-clip", "broken")):
        (inc / "cards" / f"{name}.yaml").write_text(
            f"name: {name}\nadapter: {adapter}\narchitecture: local-dir:{tiny_model_dir}\nprecision: fp32\n"
            f"weights:\n  - kind: local_dir\n    ref: {tiny_model_dir}\n")

    listed = evalsuite_cli(site, "ls", "models", "--include-path", inc)
    assert listed.returncode == 0, listed.stderr
    assert "toy-clip" in listed.stdout and "toy (plugin toy-plugin 0.1)" in listed.stdout
    assert "broken (plugin toy-plugin 0.1)" in listed.stdout  # listed by name; its module is not imported
    assert evalsuite_cli(site, "--help").returncode == 0

    out = tmp_path / "results"
    common = ["--tasks", "toy3", "--data-root", tmp_path / "data", "--include-path", inc, "--output-dir", out,
              "--workers", "0"]
    ran = evalsuite_cli(site, "run", "--model", "toy-clip", *common)
    assert ran.returncode == 0, ran.stderr
    (csv_path,) = out.glob("*/toy3.csv")
    assert ",toy," in csv_path.read_text().splitlines()[1]  # the adapter column: the plugin's

    broken = evalsuite_cli(site, "run", "--model", "broken-clip", *common)
    assert broken.returncode == 2 and "Traceback" not in broken.stderr
    assert ("model adapter 'broken' of plugin toy-plugin 0.1 (entry point evalsuite.adapters: broken ="
            " toy_plugin_missing:Adapter) cannot be loaded: ModuleNotFoundError") in broken.stderr
