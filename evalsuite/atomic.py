"""Atomic file writes (temp file in the same folder + ``os.replace``: a reader never sees half a file) that keep
the permissions an ordinary ``open(path, "w")`` would give.

``tempfile.mkstemp`` creates files 0600 whatever the umask, so a results folder shared with colleagues or a web
server would become unreadable to them; every temp file here is set to ``0666 & ~umask`` before it is published.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


def _process_umask() -> int:
    mask = os.umask(0)  # the only way to read it; set back at once (at import, before any worker thread)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_process_umask()


def new_temp_file(folder: Path, suffix: str = ".tmp", prefix: str = ".") -> str:
    """An empty temp file in ``folder`` with the normal file mode; the caller publishes it with os.replace."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return tmp


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temp path beside ``path`` to write; on success it replaces ``path``, on any error it is removed."""
    tmp = new_temp_file(path.parent, suffix=suffix, prefix=f".{path.name}.")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
