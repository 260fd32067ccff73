"""Task and its result. Task modules import torch only inside ``evaluate`` so validation stays light."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Optional

from ..config import TaskSpec, type_arguments, with_type_defaults
from ..data import SOURCES
from ..errors import ConfigError, DatasetUnavailableError
from ..metrics import MetricSet

if TYPE_CHECKING:
    from ..data.base import Samples, SourceContext
    from ..encoding import Encoded, Encoder, TaskInputs


@dataclass
class RunContext:
    """What a task needs to find and score its data (how features are made is the Encoder's business)."""

    data_root: Path
    limit: Optional[int] = None
    resize_mode: Optional[str] = None  # shortest | squash overrides the model's resize; None keeps it
    verify_data: bool = False  # --verify-data: the data identity hashes file contents instead of size + mtime
    bootstrap_iterations: int = 1000  # resamples for the primary metric's confidence interval (0: none)
    bootstrap_seed: int = 0
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("evalsuite"))


@dataclass(frozen=True)
class NoArgs:
    """A task type that takes no arguments beyond those every task file has."""


@dataclass
class TaskResult:
    metrics: dict[str, float]  # fractions
    num_samples: int  # samples evaluated (readable)
    num_failed: int  # samples that could not be read
    failures: list[str]  # one message per failed sample
    seconds: float
    images_per_second: float
    partial: bool = False
    warnings: list[str] = field(default_factory=list)
    transform: str = ""  # the resize actually used (shortest | squash)
    alternatives: dict[str, float] = field(default_factory=dict)  # best-of-both: primary value per transform
    num_texts: Optional[int] = None  # retrieval: captions scored (num_samples counts the images)
    # what a reference number must have been made under to be comparable (transform mode, video frame rule)
    protocol: dict[str, str] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # metric -> 95% bootstrap interval
    predictions_csv: Optional[str] = None  # per-sample predictions, saved as <task>.predictions.csv
    expected_num_samples: Optional[int] = None  # the task's count (YAML), for count_status
    expected_num_texts: Optional[int] = None
    count_status: str = "unchecked"  # results.count_status: ok | fewer | more | limit | unchecked

    @property
    def flagged(self) -> bool:
        return self.num_failed > 0


class Task(ABC):
    """One dataset evaluated one way. Constructed from its spec; validation happens in ``__init__``."""

    # the metrics this type computes: names and patterns of the metric registry (evalsuite/metrics.py), e.g.
    # METRICS.select("acc1", "acc5"); a task's YAML ``metrics`` must be among them
    metric_set: ClassVar[MetricSet] = MetricSet()
    # what a task file omitting ``metrics`` / ``primary_metric`` gets (config.with_type_defaults)
    default_metrics: ClassVar[tuple[str, ...]] = ()
    default_primary_metric: ClassVar[Optional[str]] = None
    # the type's YAML arguments (config.type_arguments): a dataclass, as a source kind's ``Args``; built as
    # ``self.args``. Built-in types' arguments are top-level TaskSpec fields, a new type's go under ``args:``
    Args: ClassVar[type] = NoArgs
    fixed_resize: Optional[str] = None  # a protocol that prescribes the resize (retrieval: squash) ignores --transform

    def __init__(self, spec: TaskSpec, include_paths=()) -> None:
        spec = with_type_defaults(spec, type(self))  # a spec built in code may leave them to the type
        self.spec = spec
        self.include_paths = include_paths
        unknown = self.metric_set.unknown(spec.metrics)
        if unknown:
            raise ConfigError(
                f"{spec.file}: metrics {unknown} are not computed by task type {spec.type!r};"
                f" allowed: {self.metric_set.allowed()}"
            )
        self.args = type_arguments(spec, self.Args)
        self.sources = [SOURCES.get(source.kind)(spec, source) for source in spec.sources]
        self.data_identity: Optional[str] = None  # set by prepare(): which samples, labels and files were found
        self.data_root: Optional[str] = None  # set by prepare(): the resolved dataset folder (run.json)
        self.source_used: Optional[str] = None  # kind of the source whose data was found
        self.listing_warnings: list[str] = []  # set by prepare(): e.g. classes without a sample

    @property
    def name(self) -> str:
        return self.spec.name

    def fingerprint_payload(self) -> dict:
        """What the numbers depend on. Prose (notes, description) and tags are left out on purpose."""
        spec = self.spec.as_dict()
        for key in ("notes", "description", "tags", "expected_num_samples", "expected_num_texts"):
            spec.pop(key)
        return {"spec": spec}

    def fingerprint(self, limit: Optional[int] = None, transform: Optional[str] = None,
                    decoder: str = "pil") -> str:
        """Identity of the numbers this task produces; needs ``prepare()`` first (the data is part of it)."""
        if self.data_identity is None:
            raise RuntimeError(f"task {self.name}: fingerprint() before prepare()")
        payload = dict(self.fingerprint_payload(), limit=limit, data=self.data_identity)
        if transform is not None:  # absent from the payload by default so earlier fingerprints stay valid
            payload["transform"] = transform
        if decoder != "pil":  # likewise: results made with open_clip's PIL transform keep their fingerprints
            payload["decoder"] = decoder
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def prepare(self, ctx: RunContext) -> None:  # noqa: B027 - a hook; a type with no data to find keeps it
        """Find the task's data (listing only) so a missing dataset is reported before any weights load."""

    def reader_identity(self) -> dict:
        """How samples become images beyond the source's YAML arguments (the video frame reader's version):
        part of the feature- and pixel-cache keys, so a changed reader never serves features of the old one."""
        return {}

    def protocol_facts(self) -> dict[str, str]:
        """Protocol choices fixed by the task's data source (e.g. the video frame rule), recorded with results."""
        return {}

    def source_context(self, data_root: Path) -> "SourceContext":
        from ..data.base import SourceContext

        return SourceContext(data_root, [])

    def find_samples(self, source_ctx: "SourceContext") -> "Samples":
        """The samples of the first source (in YAML order) whose data is present; if none is, one error that
        says what each source needs."""
        problems = []
        for source in self.sources:
            try:
                samples = source.samples(source_ctx)
            except DatasetUnavailableError as exc:
                problems.append(str(exc) if len(self.sources) == 1 else f"[{source.kind}] {exc}")
                continue
            if not samples.items:
                problems.append(f"[{source.kind}] the data source found no samples")
                continue
            self.source_used = source.kind
            if len(self.sources) > 1:
                logging.getLogger(__name__).info("task %s: data from source %r", self.name, source.kind)
            return samples
        raise DatasetUnavailableError(f"task {self.name!r}: " + " | ".join(problems) if len(problems) > 1
                                      else problems[0])

    def set_listing(self, samples: "Samples", ctx: RunContext) -> None:
        """Record what ``prepare`` found: the data identity (fingerprint, cache keys), the resolved dataset folder
        and warnings about the listing (classes without a sample)."""
        self.data_identity = samples.identity(ctx.verify_data)
        self.data_root = samples.root

    @abstractmethod
    def inputs(self, ctx: RunContext) -> "TaskInputs":
        """What to encode under ``ctx`` (images, a classifier's prompts, captions); needs ``prepare()``."""

    @abstractmethod
    def score(self, inputs: "TaskInputs", encoded: "Encoded", ctx: RunContext) -> TaskResult:
        """Metrics (and counts, intervals, predictions) from the features of ``inputs``."""

    def evaluate(self, encoder: "Encoder", ctx: RunContext, inputs: Optional["TaskInputs"] = None) -> TaskResult:
        """``inputs`` -> the Encoder's features -> ``score``; ``seconds`` covers all of it."""
        start = time.perf_counter()
        if self.data_identity is None:
            self.prepare(ctx)
        inputs = inputs if inputs is not None else self.inputs(ctx)
        result = self.score(inputs, encoder.encode(inputs), ctx)
        result.seconds = time.perf_counter() - start
        return result
