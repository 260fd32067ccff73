"""The task catalogue: every task and suite YAML, and resolution of ``--tasks`` selectors."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .config import SuiteSpec, TaskSpec, load_suite_spec, load_task_spec
from .errors import ConfigError, UnknownNameError
from .registry import did_you_mean
from .resources import task_dirs

# files a run writes beside <task>.csv in the results folder: a task with one of these names (or suffixes) would
# overwrite them, or be taken for them by the reports
RESERVED_TASK_NAMES = ("summary", "suites")
RESERVED_TASK_SUFFIXES = (".predictions", ".errors")


def check_task_name(name: str, path: Path) -> None:
    """ConfigError (file and line of ``name:``) for a task name that would collide with a run's other files or
    not be a plain file name: ``<name>.csv`` lands in the results folder."""
    why = None
    if name in RESERVED_TASK_NAMES:
        why = f"is reserved: its results file {name}.csv would overwrite the run's {name}.csv"
    elif name.endswith(RESERVED_TASK_SUFFIXES):
        base, suffix = name.rsplit(".", 1)
        why = (f"is reserved: {name}.csv is the name of task {base!r}'s predictions file" if suffix == "predictions"
               else f"is reserved: names ending in .errors are kept for the runs' error lists ({base}.errors.txt)")
    elif name.startswith(".") or not name.strip() or any(ch in name for ch in "/\\\0"):
        why = "is not a plain file name (no leading dot, no path separators): results go to <name>.csv"
    if why:
        from .yamlio import load_yaml

        try:
            line = load_yaml(path).line_of("name")
        except Exception:  # noqa: BLE001 - the name is wrong either way; the line is a courtesy
            line = 0
        raise ConfigError(f"{path}{f':{line}' if line else ''}: task name {name!r} {why}; rename the task (and"
                          " its file)")


@dataclass
class Catalog:
    tasks: dict[str, TaskSpec]
    suites: dict[str, SuiteSpec]

    @classmethod
    def load(cls, include_paths=()) -> "Catalog":
        tasks: dict[str, TaskSpec] = {}
        suites: dict[str, SuiteSpec] = {}
        for root in task_dirs(include_paths):
            for path in sorted(root.rglob("*.yaml")):
                is_suite = path.parent.name == "suites"
                spec = load_suite_spec(path) if is_suite else load_task_spec(path)
                if not is_suite:
                    check_task_name(spec.name, path)
                table = suites if is_suite else tasks
                if spec.name in table:
                    # include paths come first, so a user file shadows a built-in one only if it says so
                    raise ConfigError(
                        f"{path}: {'suite' if is_suite else 'task'} {spec.name!r} is defined twice"
                        f" (also in {table[spec.name].file}); rename one of them"
                    )
                table[spec.name] = spec
        for name in suites:
            if name in tasks:
                raise ConfigError(f"{suites[name].file}: suite {name!r} has the same name as a task")
        catalog = cls(tasks, suites)
        for name, suite in suites.items():
            if suite.member_metrics:
                catalog.check_member_metrics(name)
        return catalog

    # ----------------------------------------------------------------------------------------------------------

    def _expand(self, selector: str, seen_suites: tuple[str, ...]) -> list[str]:
        if selector in self.tasks:
            return [selector]
        if selector in self.suites:
            return self.suite_members(selector, seen_suites)
        if selector.startswith("tag:"):
            tag = selector[4:]
            found = [name for name, spec in self.tasks.items() if tag in spec.tags]
            if not found:
                tags = sorted({t for spec in self.tasks.values() for t in spec.tags})
                raise UnknownNameError(f"no task has tag {tag!r}.{did_you_mean(tag, tags)} "
                                       f"Known tags: {', '.join(tags)}")
            return sorted(found)
        if any(ch in selector for ch in "*?["):
            found = sorted(fnmatch.filter(self.tasks, selector))
            if not found:
                raise UnknownNameError(f"no task matches the pattern {selector!r}")
            return found
        choices = list(self.tasks) + list(self.suites)
        raise UnknownNameError(
            f"unknown task or suite {selector!r}.{did_you_mean(selector, choices)}"
            " List them with: evalsuite ls tasks / evalsuite ls suites"
        )

    def suite_members(self, name: str, seen: tuple[str, ...] = ()) -> list[str]:
        suite = self.suites[name]
        if name in seen:
            raise ConfigError(f"{suite.file}: suite {name!r} includes itself (via {' -> '.join(seen)})")
        members: list[str] = []
        for selector in suite.members:
            try:
                expanded = self._expand(selector, seen + (name,))
            except UnknownNameError as exc:
                raise ConfigError(f"{suite.file}: member {selector!r} of suite {name!r}: {exc}") from exc
            members += [m for m in expanded if m not in members]
        if suite.expected_size is not None and len(members) != suite.expected_size:
            raise ConfigError(
                f"{suite.file}: suite {name!r} expects {suite.expected_size} tasks but its members resolve to"
                f" {len(members)}: {', '.join(members)}"
            )
        return members

    def task_types(self) -> dict[str, str]:
        """Task name -> its task type."""
        return {name: spec.type for name, spec in self.tasks.items()}

    def member_metric(self, suite: str, task: str) -> Optional[str]:
        """The metric ``task`` contributes to ``suite``'s mean: the suite's ``member_metrics`` entry, or None (the
        task's primary metric)."""
        return self.suites[suite].member_metrics.get(task)

    def check_member_metrics(self, name: str) -> None:
        """ConfigError unless every ``member_metrics`` key is a member and its metric one the task computes."""
        suite, members = self.suites[name], self.suite_members(name)
        for task, metric in suite.member_metrics.items():
            if task not in members:
                raise ConfigError(f"{suite.file}: member_metrics names {task!r}, which is no member of suite {name!r}")
            if metric not in self.tasks[task].metrics:
                raise ConfigError(f"{suite.file}: member_metrics {task}: {metric!r} is not among task {task!r}'s"
                                  f" metrics {self.tasks[task].metrics}")

    def select(self, selectors: list[str]) -> list[TaskSpec]:
        """Resolve comma-separated selectors (names, suites, ``tag:X``, globs, ``all``) in order, deduplicated."""
        names: list[str] = []
        for selector in selectors:
            selector = selector.strip()
            if not selector:
                continue
            for name in self._expand(selector, ()):
                if name not in names:
                    names.append(name)
        if not names:
            raise UnknownNameError("no tasks selected: pass --tasks NAME[,NAME...] (see evalsuite ls tasks)")
        return [self.tasks[n] for n in names]

    def suites_covering(self, task_names: list[str]) -> list[str]:
        """Suites whose members are all among ``task_names`` (for the suites table)."""
        done = set(task_names)
        return [s for s in sorted(self.suites) if set(self.suite_members(s)) <= done]

