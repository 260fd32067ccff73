"""Cost of the data identity (issue 14): listing a class-folder dataset of N files, and the identity that keys
the task fingerprint and the caches — names and labels only (before), plus one ``stat`` per file (size,
mtime_ns: the default), or plus a sha256 of every file (``--verify-data``). Measured side by side in one run on
generated files (4 KiB each, 100 class folders), after one warm-up listing so the page cache holds the inodes.

    python benchmarks/data_identity.py [--files 10000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

from evalsuite.data.base import file_identities


def write_files(root: Path, n: int, classes: int = 100) -> list[str]:
    paths = []
    payload = os.urandom(4096)
    for i in range(n):
        folder = root / f"class{i % classes:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:06d}.jpg"
        path.write_bytes(payload)
        paths.append(str(path))
    return paths


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_files(root, args.files)

        def listing() -> list[str]:  # what image_folder does: sorted class folders, sorted files
            return [str(p) for d in sorted(root.iterdir()) for p in sorted(d.iterdir()) if p.suffix == ".jpg"]

        paths = listing()
        labels = [int(Path(p).parent.name[5:]) for p in paths]

        def names_only() -> str:
            return hashlib.sha256(json.dumps([paths, labels]).encode()).hexdigest()

        def with_stat() -> str:
            ids = file_identities(paths, str(root))
            return hashlib.sha256(json.dumps([paths, labels, ids]).encode()).hexdigest()

        def with_hash() -> str:
            ids = file_identities(paths, str(root), verify=True)
            return hashlib.sha256(json.dumps([paths, labels, ids]).encode()).hexdigest()

        t_list = best_of(3, listing)
        t_names = best_of(3, names_only)
        t_stat = best_of(3, with_stat)
        t_hash = best_of(3, with_hash)
    n = args.files
    print(f"{n} files: listing {t_list * 1e3:.0f} ms; identity from names+labels {t_names * 1e3:.0f} ms,"
          f" + stat (default) {t_stat * 1e3:.0f} ms ({t_stat / n * 1e6:.1f} us/file),"
          f" + sha256 (--verify-data) {t_hash * 1e3:.0f} ms ({t_hash / n * 1e6:.1f} us/file)")
    print(f"ratios: (listing + stat identity) / listing = {(t_list + t_stat) / t_list:.2f};"
          f" stat identity / names-only identity = {t_stat / t_names:.1f}; sha256 / stat = {t_hash / t_stat:.1f}")
    print(f"extrapolated to 50,000 files: stat identity {t_stat * 50_000 / n:.2f} s")


if __name__ == "__main__":
    main()
