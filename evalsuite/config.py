"""Specs read from YAML (tasks, suites) and the run configuration, validated strictly.

Every YAML mapping is checked against a dataclass: unknown keys, missing required keys and wrong types are
errors that name the file and line. Validation here never imports torch.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from .errors import ConfigError, UserInputError
from .registry import did_you_mean
from .yamlio import LineDict, load_yaml

# --------------------------------------------------------------------------------------------------------------
# generic dataclass-from-YAML


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "mapping"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _same_shape(value: Any, tp: Any) -> bool:
    """Whether ``value`` is the kind of container ``tp`` wants (mapping for dataclasses and dicts, list for lists)."""
    if isinstance(value, dict):
        return dataclasses.is_dataclass(tp) or typing.get_origin(tp) is dict
    if isinstance(value, list):
        return typing.get_origin(tp) is list
    return False


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (nested dataclasses are built)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        shaped = [o for o in typing.get_args(tp) if _same_shape(value, o)]
        if len(shaped) == 1 and isinstance(value, (dict, list)):  # report the nested error, not "expected X or Y"
            return _coerce(value, shaped[0], where)
        errors = []
        for option in typing.get_args(tp):
            if option is type(None) and value is None:
                return None
            try:
                return _coerce(value, option, where)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {type(value).__name__}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        file = where.split(":")[0]
        return from_mapping(tp, value, file)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, tp):
        return value
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def from_mapping(cls: type, data: dict, file: str | Path, skip: tuple[str, ...] = ()) -> Any:
    """Build dataclass ``cls`` from a YAML mapping, strictly. Fields in ``skip`` are not read from YAML."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip and f.init}
    line = getattr(data, "line", 0)

    def at(key: str | None = None) -> str:
        n = data.line_of(key) if (key is not None and isinstance(data, LineDict)) else line
        return f"{file}:{n}" if n else str(file)

    for key in data:
        if key not in fields:
            raise ConfigError(
                f"{at(key)}: unknown key {key!r} in {cls.__name__}.{did_you_mean(str(key), list(fields))}"
                f" Allowed: {', '.join(fields)}"
            )
    kwargs = {}
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if name not in data:
            if required:
                raise ConfigError(f"{at()}: missing required key {name!r} in {cls.__name__}")
            continue
        kwargs[name] = _coerce(data[name], hints[name], f"{at(name)}: key {name!r}")
    return cls(**kwargs)


# --------------------------------------------------------------------------------------------------------------
# task and suite specs


@dataclass(frozen=True)
class SourceSpec:
    """Where a task's data comes from: a registered source kind and its YAML arguments."""

    kind: str
    args: dict = field(default_factory=dict)


TYPE_ARGUMENT = {"type_argument": True}  # field metadata: an argument of some task types, checked by the type's Args


@dataclass(frozen=True)
class TaskSpec:
    """A task file. The fields every task has, plus its task type's arguments: the built-in types' arguments
    (``classnames``, ``templates``, ``num_classes``, ``expected_num_texts``; marked TYPE_ARGUMENT) stay top-level
    fields, so existing files and ``as_dict()`` (the fingerprint) are unchanged; a type's further arguments go under
    ``args``. Which of them a type takes, their types and defaults are the type's ``Args`` dataclass
    (``type_arguments``), as a source kind's are; ``metrics`` and ``primary_metric`` default to the type's
    ``default_metrics`` / ``default_primary_metric`` (``with_type_defaults``)."""

    name: str
    type: str
    version: int
    # one source, or alternatives tried in order (e.g. a local export first, then a downloader); the first
    # whose data is found is used and named in the log
    source: Union[SourceSpec, list[SourceSpec]]
    metrics: Optional[list[str]] = None  # None: the task type's default_metrics (filled in by load_task_spec)
    primary_metric: Optional[str] = None  # None: the task type's default_primary_metric
    classnames: Optional[str] = field(default=None, metadata=TYPE_ARGUMENT)
    templates: Optional[str] = field(default=None, metadata=TYPE_ARGUMENT)
    num_classes: Optional[int] = field(default=None, metadata=TYPE_ARGUMENT)
    tags: list[str] = field(default_factory=list)
    expected_num_samples: Optional[int] = None
    # retrieval: captions of the protocol's gallery (COCO 5k: 25,010)
    expected_num_texts: Optional[int] = field(default=None, metadata=TYPE_ARGUMENT)
    description: str = ""
    notes: str = ""
    args: dict = field(default_factory=dict)  # the task type's arguments that are no field here (its Args)
    file: str = ""  # set by the loader, not read from YAML

    @property
    def sources(self) -> list[SourceSpec]:
        return self.source if isinstance(self.source, list) else [self.source]

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("file")
        if not d["args"]:  # absent when empty, so the fingerprints of tasks without type args stay as they were
            d.pop("args")
        return d


def type_argument_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(TaskSpec) if f.metadata.get("type_argument")]


def type_arguments(spec: TaskSpec, args_cls: type) -> Any:
    """The task type's ``Args`` dataclass built from ``spec``: its TYPE_ARGUMENT fields that are set and its
    ``args`` mapping. ConfigError for a type argument the type does not take, a missing required one, a TaskSpec
    field given under ``args``, or a wrong type (naming the file)."""
    own = [f.name for f in dataclasses.fields(args_cls)]
    listed = ", ".join(own) or "none"
    given = {name: getattr(spec, name) for name in type_argument_fields() if getattr(spec, name) is not None}
    for name in given:
        if name not in own:
            raise ConfigError(f"{spec.file}: key {name!r} is not an argument of task type {spec.type!r}"
                              f" (its arguments: {listed})")
    for name in spec.args:
        if name in {f.name for f in dataclasses.fields(TaskSpec)}:
            raise ConfigError(f"{spec.file}: args: {name!r} is a task-file key; give it at the top level, not"
                              " under args")
    for f in dataclasses.fields(args_cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.name not in given and f.name not in spec.args:
            where = "" if f.name in type_argument_fields() else " under args"
            raise ConfigError(f"{spec.file}: task type {spec.type!r} needs {f.name!r}{where} (its arguments:"
                              f" {listed})")
    return from_mapping(args_cls, {**given, **spec.args}, f"{spec.file} (task type {spec.type!r} args)")


def with_type_defaults(spec: TaskSpec, task_type: type, where: str = "") -> TaskSpec:
    """``spec`` with ``metrics`` / ``primary_metric`` it omits taken from the task type's ``default_metrics`` /
    ``default_primary_metric``; unchanged when it states both."""
    if spec.metrics is not None and spec.primary_metric is not None:
        return spec
    where = where or spec.file
    metrics = spec.metrics
    if metrics is None:
        metrics = list(getattr(task_type, "default_metrics", ()))
        if not metrics:
            raise ConfigError(f"{where}: missing required key 'metrics' (task type {spec.type!r} has no default"
                              " metrics)")
    primary = spec.primary_metric
    if primary is None:
        primary = getattr(task_type, "default_primary_metric", None)
        if primary is None or primary not in metrics:
            default = f"its default {primary!r} is not among metrics {metrics}" if primary else "it has no default"
            raise ConfigError(f"{where}: missing key 'primary_metric' (task type {spec.type!r}: {default})")
    return dataclasses.replace(spec, metrics=metrics, primary_metric=primary)


@dataclass(frozen=True)
class SuiteSpec:
    """A named group of tasks with an aggregation rule (unweighted mean of the members' primary metrics)."""

    name: str
    members: list[str]
    description: str = ""
    aggregation: str = "mean_primary"
    expected_size: Optional[int] = None
    # member task -> the metric it contributes instead of its primary metric: a benchmark's own choice (DataComp
    # scores Flowers-102 by mean per-class recall, EVA by top-1), so the task stays one dataset and one result
    member_metrics: dict[str, str] = field(default_factory=dict)
    notes: str = ""
    file: str = ""


def load_named_spec(cls: type, path: Path, kind: str):
    """Read a YAML file into dataclass ``cls`` whose ``name`` must equal the file stem; returns (spec, data)."""
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a {kind} file must be a mapping of keys, got {type(data).__name__}")
    spec = from_mapping(cls, data, path, skip=("file",))
    if spec.name != path.stem:
        raise ConfigError(
            f"{path}:{data.line_of('name')}: {kind} name {spec.name!r} must equal the file name stem {path.stem!r}"
        )
    return dataclasses.replace(spec, file=str(path)), data


def load_task_spec(path: Path) -> TaskSpec:
    spec, data = load_named_spec(TaskSpec, path, "task")
    if spec.metrics is None or spec.primary_metric is None:  # the task type's defaults (only then is it imported)
        from .tasks import TASK_TYPES

        where = f"{path}:{data.line_of('type')}"
        try:
            task_type = TASK_TYPES.get(spec.type)
        except UserInputError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        spec = with_type_defaults(spec, task_type, str(path))
    if not spec.sources:
        raise ConfigError(f"{path}:{data.line_of('source')}: source must name at least one data source")
    if spec.version < 1:
        raise ConfigError(f"{path}:{data.line_of('version')}: version must be a positive integer")
    for key in ("expected_num_samples", "expected_num_texts"):
        value = getattr(spec, key)
        if value is not None and value < 1:
            raise ConfigError(f"{path}:{data.line_of(key)}: {key} must be a positive whole number (leave it out"
                              f" when the count is not known), got {value}")
    if spec.primary_metric not in spec.metrics:
        raise ConfigError(
            f"{path}:{data.line_of('primary_metric')}: primary_metric {spec.primary_metric!r}"
            f" is not among metrics {spec.metrics}"
        )
    return spec


def load_suite_spec(path: Path) -> SuiteSpec:
    spec, data = load_named_spec(SuiteSpec, path, "suite")
    if spec.aggregation != "mean_primary":
        raise ConfigError(
            f"{path}:{data.line_of('aggregation')}: unknown aggregation {spec.aggregation!r}; known: mean_primary"
        )
    return spec


# --------------------------------------------------------------------------------------------------------------
# run configuration (from the CLI)


@dataclass
class RunConfig:
    model: str
    tasks: list[str]
    weights: Optional[str] = None  # local weights file overriding the card's sources
    arch: Optional[str] = None  # with a checkpoint path: card name or upstream-format config JSON
    data_root: Path = Path("data")
    output_dir: Path = Path("results")
    batch_size: int = 256
    workers: Optional[int] = None  # None: chosen from the CPU count
    device: str = "auto"
    precision: Optional[str] = None  # None: the model card's (CUDA); CPU always fp32
    limit: Optional[int] = None
    transform: Optional[str] = None  # shortest | squash | best-of-both; None: the model card's resize
    cache_features: bool = True  # image features and classifiers under $EVALSUITE_CACHE_DIR/features
    cache_pixels: bool = False  # preprocessed uint8 images under $EVALSUITE_CACHE_DIR/pixels (shared by models)
    decoder: str = "pil"  # pil (exact, default) | tensor | cuda: how images become uint8 pixels (data/pixels.py)
    verify_data: bool = False  # data identity from file contents (sha256) instead of size + mtime
    trust_remote_code: bool = False  # hf models: run code from folders/repos no model card pins (--trust-remote-code)
    bootstrap: int = 1000  # bootstrap resamples for the primary metric's 95% interval (seed 0); 0 turns it off
    include_paths: list[Path] = field(default_factory=list)
    resume: bool = True
    fail_fast: bool = False
    progress: Optional[bool] = None  # None: on when stderr is a TTY
