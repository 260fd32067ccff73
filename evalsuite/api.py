"""The Python API: ``evaluate`` a model (a name as on the command line, or a model object in memory) on tasks, and
get the results back as rows or a pandas table. Importing this module imports neither torch nor pandas."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, Union, runtime_checkable

from .config import RunConfig
from .errors import EvalsuiteError, UserInputError

if TYPE_CHECKING:
    import pandas as pd
    import torch

# evaluate()'s own parameters; every other RunConfig field is a run option (the CLI's `run` flags by Python name)
_OWN = ("model", "tasks", "data_root", "output_dir")
_NAME_ONLY = ("weights", "arch", "trust_remote_code")  # options of a model given by name, not of a model object
_FLAG_OF = {"include_paths": "include_path"}  # RunConfig field -> the CLI flag's dest, where they differ


class UnknownOptionError(UserInputError, TypeError):
    """A keyword evaluate() does not know (a TypeError, as for any unknown keyword argument)."""


class InvalidOptionError(UserInputError, ValueError):
    """A run option with a value the CLI would refuse too (same ranges and choices)."""


@dataclass(frozen=True)
class Preprocessing:
    """How images become pixels for a model: resize the shorter side to ``size`` and centre-crop (``shortest``),
    or resize to ``size`` x ``size`` (``squash``); then normalise with ``mean``/``std`` (RGB, in [0, 1] units)."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"  # bicubic | bilinear | nearest
    resize_mode: str = "shortest"  # shortest | squash

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@runtime_checkable
class ClipModel(Protocol):
    """What evaluate() needs of a model object that is neither open_clip's nor transformers': a ``torch.nn.Module``
    (its state dict identifies it) with these two methods, each taking a batch and returning one feature row per
    input (normalisation is evalsuite's). Pass ``tokenizer=`` (list of str -> integer tensor of token ids, shape
    (N, context)) and ``preprocess=`` (a ``Preprocessing``) with it."""

    def encode_image(self, pixels: "torch.Tensor") -> "torch.Tensor": ...

    def encode_text(self, tokens: "torch.Tensor") -> "torch.Tensor": ...


Tokenizer = Callable[[list[str]], "torch.Tensor"]


@dataclass
class Results:
    """What one evaluate() call produced: per task its CSV rows (one per metric), the suites whose members all
    ran, and where the files are."""

    model: str
    model_fingerprint: str
    folder: Path  # output_dir/<model folder>
    tasks: dict[str, list[dict]]  # task -> rows of <task>.csv (results.TASK_COLUMNS, typed)
    suites: list[dict] = field(default_factory=list)  # rows of suites.csv: suite, value, num_tasks, tasks, ...
    done: list[str] = field(default_factory=list)  # evaluated now
    skipped: list[str] = field(default_factory=list)  # already done with these fingerprints (resume)
    failed: dict[str, str] = field(default_factory=dict)  # task -> reason
    flagged: dict[str, str] = field(default_factory=dict)  # task -> why its numbers need a look (counts, bad files)

    @property
    def paths(self) -> dict[str, Path]:
        return {task: self.folder / f"{task}.csv" for task in self.tasks}

    def value(self, task: str, metric: Optional[str] = None) -> float:
        """A task's metric (default: its primary metric), as a fraction."""
        rows = self.tasks[task]
        row = next((r for r in rows if (r["metric"] == metric if metric else r["is_primary"])), None)
        if row is None:
            raise KeyError(f"{task} has no metric {metric!r}; it has {', '.join(r['metric'] for r in rows)}")
        return row["value"]

    @property
    def primary(self) -> dict[str, float]:
        """task -> its primary metric."""
        return {task: self.value(task) for task in self.tasks}

    def to_pandas(self) -> "pd.DataFrame":
        """One row per task x metric, in ``evalsuite.load_results``'s schema."""
        from .tidy import tidy_frame

        return tidy_frame((self.paths[task], rows) for task, rows in self.tasks.items())


def evaluate(model: Union[str, Any], tasks: Union[str, list[str]] = "eva_cls27",
             data_root: Union[str, os.PathLike, None] = None, output_dir: Union[str, os.PathLike, None] = None, *,
             preprocess: Any = None, tokenizer: Optional[Tokenizer] = None, processor: Any = None,
             name: Optional[str] = None, distributed: Optional[bool] = None, **run_options: Any) -> Results:
    """Evaluate ``model`` on ``tasks`` and return its Results (also written to ``output_dir/<model>/`` as by
    ``evalsuite run``; a later call with the same model, data and options resumes from there).

    ``model``: a model name as ``evalsuite run --model`` takes it (card name, ``open_clip:ARCH/TAG``,
    ``local-dir:DIR``, ``hf:REPO``, checkpoint path with ``arch=``), or a model object:

    - an open_clip model with ``tokenizer=open_clip.get_tokenizer(NAME)``; preprocessing from ``preprocess=`` (the
      eval transform ``create_model_and_transforms`` returns) or else ``model.visual.preprocess_cfg``;
    - a transformers ``CLIPModel`` with ``processor=CLIPProcessor`` (or ``tokenizer=`` and ``preprocess=`` its
      image processor);
    - any ``torch.nn.Module`` following ``evalsuite.ClipModel`` with ``tokenizer=`` and
      ``preprocess=evalsuite.Preprocessing(...)``.

    A model object is evaluated where it is (its device) in its own dtype (``precision='amp_bf16'``/``'amp_fp16'``
    adds autocast over fp32 weights; nothing is ever cast), and its train/eval mode and ``requires_grad`` are as
    before when evaluate returns. Its identity is a digest of its state dict, so new weights are new results.
    Preprocessing that cannot be derived exactly is refused (pass ``preprocess=Preprocessing(...)``). The feature
    cache is off for model objects unless ``cache_features=True`` is given (every checkpoint is new weights).

    ``tasks``: names, suites, ``tag:TAG`` or globs, as a list or comma-separated. ``data_root``: default
    $EVALSUITE_DATA_ROOT or ~/.cache/evalsuite/data; ``output_dir``: default ``results``. ``name``: the model's
    name in results (model objects; default its class name). ``run_options``: ``evalsuite run``'s options by their
    Python names (batch_size, workers, device, precision, limit, transform, cache_features, cache_pixels, decoder,
    verify_data, bootstrap, include_paths, resume, fail_fast, progress; with a model name also weights, arch,
    trust_remote_code), checked as the CLI checks them.

    ``distributed``: in a job whose torch.distributed process group has several ranks (a DDP training loop),
    ``True`` when every rank calls evaluate (each encodes a shard of every task, rank 0 writes the files, every
    rank gets the Results) or ``False`` when this rank evaluates alone (say rank 0 only; the others are not
    waited for). Required there: guessing wrong would hang one way and write every file from every rank the other.

    Raises UserInputError (bad input: names, data, options) or TasksFailedError when a task failed, with the
    Results of the others as ``error.results``; flagged tasks (sample counts other than the protocol's, unreadable
    files) are returned with ``Results.flagged`` set.
    """
    from .runner import Runner

    in_memory = not isinstance(model, (str, os.PathLike))
    if isinstance(model, tuple):
        raise TypeError("evaluate: pass the model alone and its parts by keyword: evaluate(model,"
                        " preprocess=preprocess, tokenizer=tokenizer) (create_model_and_transforms returns"
                        " (model, train_transform, eval_transform): the eval transform is the one to pass)")
    if not in_memory and any(v is not None for v in (preprocess, tokenizer, processor, name)):
        raise TypeError("evaluate: preprocess=, tokenizer=, processor= and name= go with a model object; a model"
                        " name brings its own")
    options = _checked_options(run_options, in_memory)
    ranks = _ranks(distributed)
    if in_memory:  # each checkpoint of a training run is new weights: its cached features would never be read again
        options.setdefault("cache_features", False)
    from .cli import default_data_root

    config_args = dict(tasks=_tasks(tasks), data_root=Path(data_root) if data_root is not None else default_data_root(),
                       output_dir=Path(output_dir) if output_dir is not None else Path("results"), **options)
    adapter = None
    try:
        if in_memory:
            from .models.in_memory import wrap

            adapter = wrap(model, preprocess=preprocess, tokenizer=tokenizer, processor=processor, name=name,
                           precision=options.get("precision"), device=options.get("device"))
            config = RunConfig(model=adapter.card.name, **{**config_args, "device": str(adapter.device),
                                                          "precision": adapter.precision})
        else:
            config = RunConfig(model=os.fspath(model), **config_args)
        runner = Runner(config, model=adapter)
        started = _now_ns()
        with ranks:
            try:
                runner.run()
            except EvalsuiteError as exc:
                results = _collect_on_every_rank(runner.model_dir, started)
                if results is None:  # stopped before the run's record was written: nothing to report but the error
                    raise
                exc.results = results
                if results.failed:
                    raise
                return results
            results = _collect_on_every_rank(runner.model_dir, started)
        if results is None:  # a finished run always writes run.json: its absence is a bug, not bad input
            raise RuntimeError(f"evaluate: the run finished but wrote no {runner.model_dir / 'run.json'}")
        return results
    finally:
        if adapter is not None:
            adapter.restore()


def _now_ns() -> int:
    import time

    return time.time_ns() - 1_000_000  # file systems with coarse timestamps may round an mtime down


def _tasks(tasks: Union[str, list[str]]) -> list[str]:
    from .cli import _task_list

    if isinstance(tasks, str):
        return _task_list(tasks)
    if isinstance(tasks, (list, tuple)) and tasks and all(isinstance(t, str) for t in tasks):
        return [t for item in tasks for t in _task_list(item)]
    raise InvalidOptionError(f"evaluate: tasks must be a non-empty str or list of str, got {tasks!r}")


def known_options(in_memory: bool) -> list[str]:
    names = [f.name for f in dataclasses.fields(RunConfig) if f.name not in _OWN]
    return [n for n in names if not (in_memory and n in _NAME_ONLY)]


def _checked_options(options: dict, in_memory: bool) -> dict:
    """Run options as RunConfig wants them, checked by the CLI flags' own types and choices."""
    from .cli import build_parser
    from .registry import did_you_mean
    from .run_options import _run_actions

    known = known_options(in_memory)
    for key in options:
        if key not in known:
            what = ("is an option of a model given by name" if key in _NAME_ONLY else "is not an option of evaluate"
                    f".{did_you_mean(key, known)}")
            raise UnknownOptionError(f"evaluate: {key!r} {what}. Known: {', '.join(known)}")
    actions = _run_actions(build_parser())
    hints = typing.get_type_hints(RunConfig)
    return {key: _checked(key, value, hints[key], actions.get(_FLAG_OF.get(key, key))) for key, value in
            options.items()}


def _checked(key: str, value: Any, hint: Any, action) -> Any:
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if args and typing.get_origin(hint) is Union else hint
    if value is None and optional:
        return None
    bad = InvalidOptionError(f"evaluate: {key}={value!r}: expected {_describe(base, optional)}")
    if base is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if base is Path:
        if not isinstance(value, (str, os.PathLike)):
            raise bad
        return Path(value)
    if typing.get_origin(base) is list:  # include_paths: one folder or several
        items = [value] if isinstance(value, (str, os.PathLike)) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, (str, os.PathLike)) for i in items):
            raise bad
        return [Path(i) for i in items]
    if base is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise bad
    if base is str and not isinstance(value, str):
        raise bad
    if action is not None and action.type is not None:
        try:
            value = action.type(str(value))
        except Exception as exc:  # noqa: BLE001 - argparse types raise ArgumentTypeError/ValueError
            raise InvalidOptionError(f"evaluate: {key}={value!r}: {exc}") from None
    if action is not None and action.choices and value not in action.choices:
        raise InvalidOptionError(f"evaluate: {key}={value!r}: expected one of {', '.join(map(str, action.choices))}"
                                 + (" or None" if optional else ""))
    return value


def _describe(base: Any, optional: bool) -> str:
    name = {bool: "True or False", Path: "a path", int: "a whole number", str: "a str"}.get(base, "a list of paths")
    return name + (" or None" if optional else "")


def _ranks(distributed: Optional[bool]) -> contextlib.AbstractContextManager:
    """How this call runs in a process group: with every rank (sharded), or alone (``distributed.local_only``)."""
    from . import distributed as dist

    if distributed not in (None, True, False):
        raise InvalidOptionError(f"evaluate: distributed={distributed!r}: expected True, False or None")
    size = dist.group_size()
    if distributed is None and size > 1:
        raise InvalidOptionError(
            f"evaluate: this process is rank {dist.rank_and_size()[0]} of a {size}-rank torch.distributed group:"
            " pass distributed=True if every rank calls evaluate (each encodes a shard, every rank gets the"
            " Results), or distributed=False to evaluate on this rank alone (e.g. on rank 0 only)")
    if distributed and size == 1:
        raise InvalidOptionError("evaluate: distributed=True needs an initialized torch.distributed process group"
                                 " of several ranks (torch.distributed.init_process_group on every rank first)")
    return dist.local_only() if distributed is False else contextlib.nullcontext()


def _collect_on_every_rank(folder: Path, started_ns: int) -> Optional[Results]:
    """Rank 0's Results (it alone writes the files), handed to every rank, which need not share its disk."""
    from .distributed import all_ranks, is_writer

    return all_ranks(_collect(folder, started_ns) if is_writer() else None)[0]


def _collect(folder: Path, started_ns: int) -> Optional[Results]:
    """The Results of the run that wrote ``folder/run.json`` after ``started_ns``; None if none did."""
    from .results import read_task_csv

    manifest_path = folder / "run.json"
    if not manifest_path.is_file() or manifest_path.stat().st_mtime_ns < started_ns:
        return None
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    done, skipped = list(manifest.get("done", [])), list(manifest.get("skipped", []))
    tasks = {task: read_task_csv(folder / f"{task}.csv") for task in done + skipped}
    return Results(model=manifest["model_card"]["name"], model_fingerprint=manifest["model_fingerprint"],
                   folder=folder, tasks=tasks, suites=_suites(folder / "suites.csv"), done=done, skipped=skipped,
                   failed=dict(manifest.get("failed", {})), flagged=dict(manifest.get("flagged", {})))


def _suites(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [{**r, "value": float(r["value"]), "num_tasks": int(r["num_tasks"]), "tasks": r["tasks"].split(),
             "partial": r["partial"] == "true"} for r in rows]
