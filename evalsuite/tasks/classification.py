"""Zero-shot classification with a prompt-ensemble classifier — one class for every dataset."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..data.base import SourceContext
from ..encoding.requests import ClassifierRequest, Encoded, ImageRequest, TaskInputs
from ..errors import DatasetUnavailableError
from ..metrics import METRICS
from ..prompts import load_prompt_bank
from ..results import COUNT_MISMATCHES, count_status
from .base import RunContext, Task, TaskResult

CLASSIFICATION_METRICS = METRICS.select("acc1", "acc5", "mean_per_class_recall")


def subset_indices(n: int, limit: int) -> list[int]:
    """A fixed, seeded sample of ``limit`` indices (spread over the classes, unlike the first ``limit``)."""
    if limit >= n:
        return list(range(n))
    return sorted(random.Random(0).sample(range(n), limit))


@dataclass(frozen=True)
class ClassificationArgs:
    classnames: str  # prompts/classnames/<name>.yaml
    templates: str  # prompts/templates/<name>.yaml
    num_classes: int  # checked against the classnames file


class ClassificationTask(Task):
    metric_set = CLASSIFICATION_METRICS
    default_metrics = ("acc1", "acc5", "mean_per_class_recall")
    default_primary_metric = "acc1"
    Args = ClassificationArgs

    def __init__(self, spec, include_paths=()) -> None:
        super().__init__(spec, include_paths)
        self.bank = load_prompt_bank(self.spec, include_paths)

    def fingerprint_payload(self) -> dict:
        return dict(super().fingerprint_payload(), prompts=self.bank.digest)

    def protocol_facts(self) -> dict[str, str]:
        return {"prompts": "include-path"} if self.bank.shadowed else {}

    def source_context(self, data_root) -> SourceContext:
        return SourceContext(data_root, self.bank.keys, tuple(self.bank.classnames))

    def prepare(self, ctx: RunContext) -> None:
        self._samples = self.find_samples(self.source_context(ctx.data_root))
        self.set_listing(self._samples, ctx)
        empty = sorted(set(range(len(self.bank.classnames))) - set(self._samples.labels))
        self.listing_warnings = [] if not empty else [
            f"{len(empty)} of {len(self.bank.classnames)} classes have no sample: "
            + ", ".join(f"{i} {self.bank.keys[i]!r}" for i in empty[:20]) + (" ..." if len(empty) > 20 else "")]

    def inputs(self, ctx: RunContext) -> TaskInputs:
        listed = len(self._samples.items)
        partial = ctx.limit is not None and ctx.limit < listed
        images = ImageRequest(self.name, self._samples, {"data": self.data_identity, "limit": ctx.limit,
                                                         "source": self.spec.as_dict()["source"],
                                                         **self.reader_identity()},
                              ctx.resize_mode, subset_indices(listed, ctx.limit) if partial else None, partial)
        return TaskInputs(images, ClassifierRequest(self.bank.prompts(), self.bank.digest))

    def score(self, inputs: TaskInputs, encoded: Encoded, ctx: RunContext) -> TaskResult:
        import torch

        from ..bootstrap import BootstrapConfig, classification_interval, classification_predictions_csv
        from ..metrics import classification_metrics, topk_indices

        request, images, classifier = inputs.images, encoded.images, encoded.classifier
        failures = images.failures
        if not images.kept:
            raise DatasetUnavailableError(f"task {self.name!r}: none of the {len(request)} images could be read:"
                                          f" {failures[:3]}")
        k = min(5, len(self.bank.classnames))
        topk = torch.cat([topk_indices(block @ classifier.T, k) for block in images.features.split(4096)])
        target, kept = images.labels, images.kept
        metrics = classification_metrics(topk, target, len(self.bank.classnames), self.spec.metrics)
        primary = self.spec.primary_metric
        interval = classification_interval(primary, topk, target, len(self.bank.classnames),
                                           BootstrapConfig(ctx.bootstrap_iterations, ctx.bootstrap_seed))
        expected = self.spec.expected_num_samples
        status = count_status(len(target), expected, request.partial)
        warnings = list(self.listing_warnings)
        if status in COUNT_MISMATCHES:
            warnings.append(f"scored {len(target)} samples ({len(request)} listed, {len(failures)} unreadable),"
                            f" the task expects {expected}: count_status={status}")
        names = request.names
        return TaskResult(
            metrics=metrics,
            num_samples=len(target),
            num_failed=len(failures),
            failures=failures,
            seconds=0.0,  # set by Task.evaluate
            images_per_second=len(target) / images.seconds if images.seconds > 0 else float("nan"),
            partial=request.partial,
            warnings=warnings,
            transform=images.resize_mode,
            intervals={primary: interval} if interval and primary in metrics else {},
            predictions_csv=classification_predictions_csv([names[i] for i in kept], target, topk),
            expected_num_samples=expected, count_status=status,
        )
