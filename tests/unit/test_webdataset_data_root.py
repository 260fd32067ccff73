"""--data-root at a shard folder serves only the task the folder is named for: another webdataset task of the
same run must not read those shards (Flickr30k's and COCO's captioned shards look alike; classification copies
are also caught by their classnames.txt)."""

from __future__ import annotations

import shutil

import pytest
from test_webdataset_source import CAPTIONS, caption_shards, include, listing, no_hub  # noqa: F401 - fixtures

from evalsuite.errors import DatasetUnavailableError


def test_data_root_at_the_named_copy_is_read(caption_shards, tmp_path):
    root = tmp_path / "wds_toycaps"
    shutil.copytree(caption_shards, root)
    inc = include(tmp_path, name="toycaps", kind="webdataset_captions", repo="clip-benchmark/wds_toycaps")
    assert listing(inc, root, name="toycaps").captions == CAPTIONS
    assert listing(inc, root / "test", name="toycaps").captions == CAPTIONS  # the split folder itself


def test_data_root_at_another_tasks_copy_is_not_read(caption_shards, tmp_path):
    root = tmp_path / "wds_flickr30k"
    shutil.copytree(caption_shards, root)
    inc = include(tmp_path, name="coco", kind="webdataset_captions", repo="clip-benchmark/wds_mscoco_captions")
    for data_root in (root, root / "test"):
        with pytest.raises(DatasetUnavailableError, match="not found"):
            listing(inc, data_root, name="coco")
