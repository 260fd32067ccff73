"""Class names and prompt templates, read only from prompts/ — never borrowed from another dataset."""

from __future__ import annotations

import hashlib
import json
import logging
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .config import TaskSpec, from_mapping
from .errors import PromptError
from .resources import builtin_root, prompt_dirs
from .yamlio import load_yaml

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassnamesFile:
    source: str
    classnames: list[str]
    # Optional label keys in the same order (e.g. ImageNet wnids, folder names): how data sources map a folder
    # or file-name label to a class index. Default: the class names themselves.
    keys: Optional[list[str]] = None
    notes: str = ""


@dataclass(frozen=True)
class TemplatesFile:
    source: str
    templates: list[str]
    notes: str = ""


@dataclass(frozen=True)
class PromptBank:
    classnames: list[str]
    templates: list[str]
    keys: list[str]
    sources: dict[str, str] = field(default_factory=dict)
    # prompt files taken from an --include-path folder in place of the built-in file of the same name
    # (never the paper's prompts: recorded in the results' protocol so `check` refuses them)
    shadowed: tuple[str, ...] = ()

    @property
    def digest(self) -> str:
        payload = json.dumps([self.classnames, self.templates, self.keys], ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def prompts(self) -> list[list[str]]:
        """``prompts()[c][t]``: template t filled with class c as ``str.format`` does (CLIP_benchmark's way), so
        ``{c!r}``, ``{c:>10}`` and ``{{`` mean what they mean in Python."""
        return [[t.format(c=c) for t in self.templates] for c in self.classnames]


def check_prompt_name(kind: str, name: str, where: str) -> None:
    """A prompt file is named, never pathed: no separators, no leading dot (``..``, hidden files), no NUL."""
    if not name or any(ch in name for ch in "/\\\0") or name.startswith(".") or name != name.strip():
        raise PromptError(f"{where}: {kind} {name!r} must be a plain file name (no path separators, no leading dot):"
                          f" prompt files are read only from the prompts/{kind}/ folders")


def _find(kind: str, name: str, include_paths, where: str = "") -> Path:
    """``prompts/<kind>/<name>.yaml`` in the first prompts folder holding it; the file must lie inside that folder
    (a link leading out of it is refused), so a task can only ever read prompt files."""
    check_prompt_name(kind, name, where or "task")
    tried = []
    for root in prompt_dirs(include_paths):
        folder = root / kind
        path = folder / f"{name}.yaml"
        if path.is_file():
            if not path.resolve().is_relative_to(folder.resolve()):
                raise PromptError(f"{path}: leads outside {folder} (a link?); prompt files are read only from the"
                                  " prompts folders")
            return path
        tried.append(str(path))
    raise PromptError(f"no {kind} file {name!r}; looked for: {', '.join(tried)}")


def check_template(template: str, where: str) -> None:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise PromptError(f"{where}: template {template!r} is not a valid format string: {exc}") from exc
    if fields != ["c"]:
        raise PromptError(
            f"{where}: template {template!r} must contain the placeholder {{c}} exactly once and no other"
            f" placeholder (found: {fields or 'none'})"
        )


def load_prompt_bank(spec: TaskSpec, include_paths=()) -> PromptBank:
    """Load and validate the class names and templates a classification-style task names."""
    if not spec.classnames or not spec.templates:
        raise PromptError(f"{spec.file}: task {spec.name!r} needs both 'classnames' and 'templates' keys")
    names_path = _find("classnames", spec.classnames, include_paths, spec.file)
    templ_path = _find("templates", spec.templates, include_paths, spec.file)
    names = _load_file(ClassnamesFile, names_path)
    templ = _load_file(TemplatesFile, templ_path)
    shadowed = tuple(str(path) for kind, path in (("classnames", names_path), ("templates", templ_path))
                     if _shadows_builtin(kind, path))
    for path in shadowed:
        log.warning("task %s: prompt file %s replaces the built-in file of the same name; results are marked"
                    " prompts=include-path and `evalsuite check` will not compare them with the papers",
                    spec.name, path)

    if not names.classnames:
        raise PromptError(f"{names_path}: 'classnames' is empty")
    if any(not isinstance(c, str) or not c.strip() for c in names.classnames):
        raise PromptError(f"{names_path}: every class name must be a non-empty string")
    keys = names.keys if names.keys is not None else names.classnames
    if len(keys) != len(names.classnames):
        raise PromptError(f"{names_path}: {len(keys)} keys for {len(names.classnames)} class names")
    if len(set(keys)) != len(keys):
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        raise PromptError(f"{names_path}: label keys must be unique; repeated: {dupes[:5]}")
    if spec.num_classes is not None and spec.num_classes != len(names.classnames):
        raise PromptError(
            f"{spec.file}: task {spec.name!r} says num_classes={spec.num_classes} but {names_path}"
            f" lists {len(names.classnames)} class names"
        )
    if not templ.templates:
        raise PromptError(f"{templ_path}: 'templates' is empty")
    for t in templ.templates:
        check_template(t, str(templ_path))
    return PromptBank(
        classnames=list(names.classnames),
        templates=list(templ.templates),
        keys=list(keys),
        sources={"classnames": names.source, "templates": templ.source},
        shadowed=shadowed,
    )


def _shadows_builtin(kind: str, path: Path) -> bool:
    builtin = builtin_root() / "prompts" / kind / path.name
    return builtin.is_file() and builtin.resolve() != path.resolve()


def _load_file(cls, path: Path):
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise PromptError(f"{path}: expected a mapping with 'source' and the list")
    return from_mapping(cls, data, path)
