"""Shared fixtures. Tests never download: tiny random-init models, generated images, ../shared/data slices."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import CIFAR10_CLASSES, write_class_folders


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from evalsuite.models.tiny import write_tiny_clip

    return write_tiny_clip(tmp_path_factory.mktemp("tiny-clip"), seed=0)


@pytest.fixture
def cifar_like_root(tmp_path) -> Path:
    """``<tmp>/cifar10/<class>/*.png``: a generated stand-in for the CIFAR-10 layout, 4 images per class."""
    write_class_folders(tmp_path / "cifar10", CIFAR10_CLASSES, per_class=4)
    return tmp_path


@pytest.fixture(scope="session", autouse=True)
def isolated_cache_dir(tmp_path_factory):
    """Frame caches and demo clips go to a per-session folder, never the user's ~/.cache."""
    import os

    folder = tmp_path_factory.mktemp("evalsuite-cache")
    previous = os.environ.get("EVALSUITE_CACHE_DIR")
    os.environ["EVALSUITE_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("EVALSUITE_CACHE_DIR", None)
    else:
        os.environ["EVALSUITE_CACHE_DIR"] = previous


@pytest.fixture
def empty_hub(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache in offline mode: nothing of the user's cache or the network is reached."""
    from huggingface_hub import constants

    hub = tmp_path / "hub"
    hub.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub
