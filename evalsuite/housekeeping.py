"""Stale temp files of killed writes, removed when a run starts.

Every write goes through a temp file (``.<name>.<random>.tmp`` from evalsuite/atomic.py, ``.<random>.npy.tmp``
for a pixel-cache entry being filled) that a killed run leaves behind: a full-size pixel temp file is 7.5 GB for
ImageNet at 224 px. A temp file is stale when no write has touched it for an hour (a live writer touches its file
at every batch) and it belongs to the current user (never another user's files in a shared cache).
"""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path
from typing import Iterator, Optional

log = logging.getLogger(__name__)

STALE_AFTER_S = 3600.0
CACHE_FOLDERS = ("features", "pixels", "video-frames", "digests")  # what the caches write under the cache dir


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def temp_files(root: Path) -> Iterator[Path]:
    """Temp-file names anywhere below ``root`` (symlinks not followed)."""
    for folder, _, names in os.walk(root, onerror=lambda exc: None):
        yield from (Path(folder) / n for n in names if is_temp_name(n))


def is_stale(path: Path, now: float, max_age_s: float) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid() and now - st.st_mtime > max_age_s


def remove_stale_temp_files(cache_dir: Path, output_dir: Path, max_age_s: float = STALE_AFTER_S,
                            now: Optional[float] = None) -> list[Path]:
    """Remove this user's temp files older than ``max_age_s`` in the cache folders and ``output_dir``; never
    raises (a file that cannot be removed stays)."""
    now = time.time() if now is None else now
    removed = []
    for root in [Path(cache_dir) / f for f in CACHE_FOLDERS] + [Path(output_dir)]:
        for path in temp_files(root):
            if is_stale(path, now, max_age_s):
                try:
                    path.unlink()
                    removed.append(path)
                except OSError:
                    pass
    if removed:
        log.info("removed %d stale temp file(s) of interrupted writes, e.g. %s", len(removed), removed[0])
    return removed
