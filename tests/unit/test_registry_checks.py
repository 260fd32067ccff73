"""Plugins are checked when they are loaded: an entry point of the adapters, sources or task types group must name a
subclass of ModelAdapter, DataSource or Task, else a PluginError naming the plugin and its distribution (never an
AttributeError far away in the runner); and a code registration made after the plugins were read wins in
plugin_origin() as it does in get()."""

import logging

import pytest
from test_plugins import write_dist

from evalsuite.registry import PluginError, Registry

NOT_A_CLASS = "def make(*args, **kwargs):\n    return 42\n\n\nclass Plain:\n    pass\n"


@pytest.mark.parametrize("kind, base", [("model adapter", "evalsuite.models.base.ModelAdapter"),
                                        ("data source kind", "evalsuite.data.base.DataSource"),
                                        ("task type", "evalsuite.tasks.base.Task")])
def test_a_plugin_that_is_not_the_kinds_class_is_named(tmp_path, monkeypatch, kind, base):
    group = "evalsuite_test.checked"
    write_dist(tmp_path, "odd-plugin", {group: {"fn": "odd_mod:make", "plain": "odd_mod:Plain"}},
               {"odd_mod": NOT_A_CLASS})
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry(kind, group=group)
    where = rf"{kind} 'fn' of plugin odd-plugin 0.1 \(entry point {group}: fn = odd_mod:make\)"
    with pytest.raises(PluginError, match=rf"{where} is a function \(odd_mod.make\), not a subclass of {base}; fix"
                                          " or uninstall that package"):
        reg.get("fn")
    with pytest.raises(PluginError, match=rf"'plain' of plugin odd-plugin 0.1 .* is the class odd_mod.Plain, not a"
                                          rf" subclass of {base}"):
        reg.get("plain")
    with pytest.raises(PluginError, match="is a function"):  # refused every time, never served afterwards
        reg.get("fn")


def test_a_plugin_of_the_kinds_class_is_served(tmp_path, monkeypatch):
    group = "evalsuite_test.checked_ok"
    write_dist(tmp_path, "good-plugin", {group: {"cls": "evalsuite.tasks.classification:ClassificationTask"}}, {})
    monkeypatch.syspath_prepend(str(tmp_path))
    from evalsuite.tasks.classification import ClassificationTask

    assert Registry("task type", group=group).get("cls") is ClassificationTask


@pytest.mark.parametrize("lazy", [False, True])
def test_a_code_registration_after_plugins_were_read_is_served_and_reported(tmp_path, monkeypatch, caplog, lazy):
    group = "evalsuite_test.late"
    write_dist(tmp_path, "late-plugin", {group: {"late": "json:loads"}}, {})
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("widget", group=group)
    assert "late" in reg.names() and reg.plugin_origin("late") == "late-plugin 0.1"  # plugins read now
    with caplog.at_level(logging.WARNING, logger="evalsuite"):
        if lazy:
            reg.register_lazy("late", "json:dumps")
        else:
            reg.register("late")(int)
    assert reg.get("late") is (__import__("json").dumps if lazy else int)
    assert reg.plugin_origin("late") is None and reg.names() == ["late"]
    assert "plugin widget 'late' from late-plugin 0.1 ignored: the name is registered in code" in caplog.text


def test_a_plugin_already_served_cannot_be_replaced_in_code(tmp_path, monkeypatch):
    group = "evalsuite_test.served"
    write_dist(tmp_path, "served-plugin", {group: {"served": "json:loads"}}, {})
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("widget", group=group)
    assert reg.get("served") is __import__("json").loads
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("served")(int)
    assert reg.get("served") is __import__("json").loads and reg.plugin_origin("served") == "served-plugin 0.1"
