"""A CSV manifest of ``path,label`` rows; label is a class index or a label key; paths relative to the CSV."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataNotFoundError, DatasetUnavailableError
from .base import DataSource, Samples, SourceContext, load_image_file


@dataclass(frozen=True)
class FileListArgs:
    file: str  # relative to --data-root, or absolute
    instructions: str = ""


class FileListSource(DataSource):
    Args = FileListArgs

    def samples(self, ctx: SourceContext):
        csv_path = Path(self.args.file)
        if not csv_path.is_absolute():
            csv_path = ctx.data_root / csv_path
        if not csv_path.is_file():
            how = f" {self.args.instructions}" if self.args.instructions else ""
            raise DataNotFoundError(f"task {self.spec.name!r}: file list {csv_path} not found.{how}")
        return read_file_list(csv_path, ctx.label_keys, self.spec.name)


def read_file_list(csv_path: Path, label_keys: list[str], task: str) -> Samples:
    """Samples from a ``path,label`` CSV (optional header); a label is a class key or a class index.

    An error names the file and line, never what the line holds: a task file can point ``file`` anywhere, and
    the message (shown, and kept in run.json) must not become a way to read another file's contents."""
    key_to_index = {k: i for i, k in enumerate(label_keys)}
    csv_path = csv_path.resolve()  # absolute items: the same listing read from another working directory
    items, labels = [], []
    line_of: dict[str, int] = {}  # item -> the line that listed it first
    lineno = 0
    try:
        with csv_path.open(newline="", encoding="utf-8") as f:
            for lineno, row in enumerate(csv.reader(f), start=1):
                if not row or (lineno == 1 and [c.strip().lower() for c in row[:2]] == ["path", "label"]):
                    continue
                if len(row) != 2:
                    raise DatasetUnavailableError(f"{csv_path}:{lineno}: expected 2 columns path,label; this line has"
                                                  f" {len(row)}")
                path, label = row[0].strip(), row[1].strip()
                if label in key_to_index:
                    index = key_to_index[label]
                elif label.isdigit() and int(label) < len(label_keys):
                    index = int(label)
                else:
                    raise DatasetUnavailableError(
                        f"{csv_path}:{lineno}: the label (column 2) is neither a class key of task {task!r}"
                        f" nor an index below {len(label_keys)}"
                    )
                p = Path(path)
                item = str(p if p.is_absolute() else csv_path.parent / p)
                key = os.path.normpath(item)
                if key in line_of:  # counted twice, or under two labels: never one sample
                    raise DatasetUnavailableError(f"{csv_path}:{lineno}: the path of line {line_of[key]} again;"
                                                  " list each image once")
                line_of[key] = lineno
                items.append(item)
                labels.append(index)
    except UnicodeDecodeError:
        raise DatasetUnavailableError(f"{csv_path}: not UTF-8 text (after line {lineno}); a file list is a"
                                      " path,label CSV") from None
    except csv.Error as exc:
        reason = "a NUL byte (a binary file?)" if "NUL" in str(exc) else "not a readable CSV line"
        raise DatasetUnavailableError(f"{csv_path}:{lineno + 1}: {reason}; a file list is a path,label CSV") from None
    except OSError as exc:
        raise DatasetUnavailableError(f"task {task!r}: file list {csv_path} cannot be read"
                                      f" ({exc.strerror or type(exc).__name__})") from None
    return Samples(items, labels, load_image_file, items, root=str(csv_path.parent))
