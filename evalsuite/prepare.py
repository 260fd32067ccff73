"""``evalsuite prepare``: get each task's data in place (download and convert where a source can), then verify
the sample count. One outcome per task; a task that fails never stops the others."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .config import TaskSpec
from .errors import DatasetUnavailableError
from .tasks import build_task


@dataclass(frozen=True)
class PrepareOutcome:
    task: str
    ok: bool
    message: str
    num_samples: Optional[int] = None

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.task}: {' '.join(self.message.split())}"


def prepare_task(spec: TaskSpec, data_root: Path, include_paths=()) -> PrepareOutcome:
    task = build_task(spec, include_paths)
    ctx = task.source_context(data_root)
    action = "found"
    try:
        samples = task.find_samples(ctx)
    except DatasetUnavailableError:
        problems = []
        for source in task.sources:  # in YAML order: the first that can fetch the data wins
            try:
                source.fetch(ctx)
                break
            except DatasetUnavailableError as exc:
                problems.append(str(exc) if len(task.sources) == 1 else f"[{source.kind}] {exc}")
        else:
            return PrepareOutcome(spec.name, False, " | ".join(problems))
        action = "downloaded"
        try:
            samples = task.find_samples(ctx)
        except DatasetUnavailableError as exc:
            return PrepareOutcome(spec.name, False, f"downloaded, but then not readable: {exc}")
    n = len(samples.items)
    where = f"{n} samples {action} (source {task.source_used}) under {data_root}"
    if spec.expected_num_samples is not None and n != spec.expected_num_samples:
        return PrepareOutcome(spec.name, False, f"{where}, but the task expects {spec.expected_num_samples}:"
                                                f" incomplete or a different version of the dataset", n)
    return PrepareOutcome(spec.name, True, where, n)


def prepare_tasks(specs: list[TaskSpec], data_root: Path, include_paths=()) -> list[PrepareOutcome]:
    return [prepare_task(spec, data_root, include_paths) for spec in specs]
