"""Results folders as one tidy pandas table: one row per model x task x metric.

The rows are the task CSVs' own (``results.TASK_COLUMNS``, read strictly by ``results.read_task_csv``) plus
``path``, the CSV they came from. Folders are read as ``evalsuite aggregate`` reads them (``report.load_runs``):
a model folder or a folder of model folders; ``history/``, summary/suites tables, predictions and stray CSVs
(``cifar10_old.csv``) are skipped. Importing this module imports neither torch nor pandas.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Union

from .results import TASK_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

TIDY_COLUMNS = TASK_COLUMNS + ("path",)
# pandas dtypes of the columns that are not strings (nullable Int64 where a CSV cell may be empty)
_DTYPES = {"task_version": "int64", "value": "float64", "ci_low": "float64", "ci_high": "float64",
           "is_primary": "bool", "num_samples": "int64", "num_texts": "Int64", "num_failed": "int64",
           "expected_num_samples": "Int64", "expected_num_texts": "Int64", "partial": "bool",
           "seconds": "float64", "images_per_second": "float64"}

PathLike = Union[str, "os.PathLike[str]"]


def tidy_frame(tables: Iterable[tuple[Path, list[dict]]]) -> "pd.DataFrame":
    """(task CSV path, its rows) pairs -> the tidy DataFrame (columns TIDY_COLUMNS, typed)."""
    import pandas as pd

    records = [{**{c: row[c] for c in TASK_COLUMNS}, "path": str(path)} for path, rows in tables for row in rows]
    frame = pd.DataFrame.from_records(records, columns=list(TIDY_COLUMNS))
    for column, dtype in _DTYPES.items():
        if dtype == "float64":
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        else:
            frame[column] = frame[column].astype(dtype)
    return frame


def load_results(paths: Union[PathLike, Iterable[PathLike]], include_paths: Iterable[PathLike] = ()
                 ) -> "pd.DataFrame":
    """Every task result under ``paths`` (each a model folder ``results/<model>/`` or a folder holding model
    folders) as one DataFrame, one row per model x task x metric; columns ``TIDY_COLUMNS``. ``include_paths``:
    folders of extra task definitions (as ``--include-path``), so their CSVs are known tasks. A damaged task CSV
    raises ``ResultFileError`` naming file, line and column; a folder without results raises ``UserInputError``."""
    from .catalog import Catalog
    from .report import load_runs

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    known = set(Catalog.load([Path(p) for p in include_paths]).tasks)
    seen: set[Path] = set()
    tables = []
    for folder in paths:
        for run in load_runs(Path(folder), known):
            for task, rows in sorted(run.tasks.items()):
                csv_path = run.folder / f"{task}.csv"
                if csv_path.resolve() not in seen:  # a folder named twice (or inside another) is read once
                    seen.add(csv_path.resolve())
                    tables.append((csv_path, rows))
    return tidy_frame(tables)
