import pytest

from evalsuite.errors import UnknownNameError
from evalsuite.registry import Registry


def test_decorator_and_get():
    reg = Registry("widget")

    @reg.register("round")
    class Round:
        pass

    assert reg.get("round") is Round
    assert reg.names() == ["round"]


def test_duplicate_names_raise():
    reg = Registry("widget")
    reg.register("a")(object)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(int)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register_lazy("a", "json:dumps")


def test_lazy_entry_imports_on_first_get():
    reg = Registry("codec")
    reg.register_lazy("dumps", "json:dumps")
    import json

    assert reg.get("dumps") is json.dumps
    assert "dumps" in reg


def test_lazy_target_must_name_an_attribute():
    with pytest.raises(ValueError, match="pkg.module:Attr"):
        Registry("x").register_lazy("bad", "json.dumps")


def test_unknown_name_suggests_close_match():
    reg = Registry("task type")
    reg.register_lazy("classification", "json:dumps")
    with pytest.raises(UnknownNameError, match="Did you mean: classification"):
        reg.get("clasification")
    assert UnknownNameError.exit_code == 2
