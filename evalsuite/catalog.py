"""The task catalogue: every task and suite YAML, and resolution of ``--tasks`` selectors."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from .config import SuiteSpec, TaskSpec, load_suite_spec, load_task_spec
from .errors import ConfigError, UnknownNameError
from .registry import did_you_mean
from .resources import task_dirs


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
        return cls(tasks, suites)

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
                raise UnknownNameError(f"no task has tag {tag!r}.{did_you_mean(tag, tags)} Known tags: {', '.join(tags)}")
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

