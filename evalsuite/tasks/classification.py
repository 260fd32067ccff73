"""Zero-shot classification with a prompt-ensemble classifier — one class for every dataset."""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING

from ..data.base import SourceContext
from ..errors import ConfigError, DatasetUnavailableError

from ..prompts import load_prompt_bank
from ..results import COUNT_MISMATCHES, count_status
from .base import ImageInput, RunContext, Task, TaskResult

if TYPE_CHECKING:
    import torch

    from ..models.base import ModelAdapter

CLASSIFICATION_METRICS = ("acc1", "acc5", "mean_per_class_recall")
TEXT_BATCH = 1024  # prompts per text forward pass; classes x templates are batched together


def build_classifier(model: "ModelAdapter", prompts: list[list[str]], batch_size: int = TEXT_BATCH) -> "torch.Tensor":
    """(C, D) class embeddings on the CPU: per class the mean of the L2-normalised template embeddings,
    re-normalised.

    The prompts of all classes not yet known are encoded together in large batches (not one class at a time).
    Class embeddings are kept on the model for the rest of the run, keyed by the class's exact prompts, so tasks
    sharing classes and templates (ImageNet-1K, -V2, -Sketch and the -A/-R subsets) encode them once.
    """
    import torch
    import torch.nn.functional as F

    known: dict = model.class_embeddings
    missing = list(dict.fromkeys(tuple(p) for p in prompts if tuple(p) not in known))
    if missing:
        flat = [p for per_class in missing for p in per_class]
        start_time = time.perf_counter()
        logging.getLogger("evalsuite").info("text classifier: %d classes x %d templates, %d prompts to encode (%d"
                                            " classes known from earlier tasks)", len(prompts), len(prompts[0]),
                                            len(flat), len(prompts) - len(missing))
        features = torch.cat([model.encode_text(model.tokenize(flat[i:i + batch_size])).cpu()
                              for i in range(0, len(flat), batch_size)])
        logging.getLogger("evalsuite").info("text classifier: %d prompts in %.1fs", len(flat),
                                            time.perf_counter() - start_time)
        start = 0
        for per_class in missing:  # classes may have different template counts only across tasks
            known[per_class] = F.normalize(features[start:start + len(per_class)].mean(dim=0), dim=-1)
            start += len(per_class)
    return torch.stack([known[tuple(p)] for p in prompts])


def subset_indices(n: int, limit: int) -> list[int]:
    """A fixed, seeded sample of ``limit`` indices (spread over the classes, unlike the first ``limit``)."""
    if limit >= n:
        return list(range(n))
    return sorted(random.Random(0).sample(range(n), limit))


class ClassificationTask(Task):
    allowed_metrics = CLASSIFICATION_METRICS

    def __init__(self, spec, include_paths=()) -> None:
        super().__init__(spec, include_paths)
        self.bank = load_prompt_bank(spec, include_paths)
        if spec.num_classes is None:
            raise ConfigError(f"{spec.file}: classification tasks must state num_classes")

    def fingerprint_payload(self) -> dict:
        return dict(super().fingerprint_payload(), prompts=self.bank.digest)

    def protocol_facts(self) -> dict[str, str]:
        return {"prompts": "include-path"} if self.bank.shadowed else {}

    def source_context(self, data_root) -> SourceContext:
        return SourceContext(data_root, self.bank.keys)

    def prepare(self, ctx: RunContext) -> None:
        self._samples = self.find_samples(self.source_context(ctx.data_root))
        self.set_listing(self._samples, ctx)
        empty = sorted(set(range(len(self.bank.classnames))) - set(self._samples.labels))
        self.listing_warnings = [] if not empty else [
            f"{len(empty)} of {len(self.bank.classnames)} classes have no sample: "
            + ", ".join(f"{i} {self.bank.keys[i]!r}" for i in empty[:20]) + (" ..." if len(empty) > 20 else "")]

    def dataset(self, transform, ctx: RunContext):
        if getattr(self, "_samples", None) is None:
            self.prepare(ctx)
        dataset = self._samples.dataset(transform)
        partial = ctx.limit is not None and ctx.limit < len(dataset)
        if partial:
            dataset = dataset.subset(subset_indices(len(dataset), ctx.limit))
        return dataset, partial

    def image_input(self, model: "ModelAdapter", ctx: RunContext) -> ImageInput:
        dataset, partial = self.dataset(model.pixel_transform(ctx.resize_mode, ctx.decoder), ctx)
        return ImageInput(dataset, {"data": self.data_identity, "limit": ctx.limit,
                                    "source": self.spec.as_dict()["source"], **self.reader_identity()}, partial)

    def classifier(self, model: "ModelAdapter", ctx: RunContext) -> "torch.Tensor":
        """The class embeddings, from the feature cache (keyed by model and prompts; verified) when present."""
        from ..cache import FeatureCache, cache_key
        from ..distributed import is_writer

        cache = FeatureCache(ctx.cache_dir) if ctx.cache_dir is not None and ctx.model_fingerprint else None
        key = cache_key(model=ctx.model_fingerprint, prompts=self.bank.digest, fill="str.format")
        count = len(self.bank.classnames)
        identity = {"count": count, "prompts": self.bank.digest}

        def wrong_shape(entry: dict) -> "str | None":
            held = entry.get("classifier")
            fits = getattr(held, "ndim", 0) == 2 and held.shape[0] == count
            return None if fits else f"holds no ({count}, D) classifier"

        hit = cache.load("classifiers", key, identity, wrong_shape) if cache else None
        if hit is not None:
            return hit["classifier"]
        classifier = build_classifier(model, self.bank.prompts())
        if cache is not None and is_writer():
            cache.save("classifiers", key, {"classifier": classifier}, identity)
        return classifier

    def evaluate(self, model: "ModelAdapter", ctx: RunContext) -> TaskResult:
        import torch

        from ..bootstrap import BootstrapConfig, classification_interval, classification_predictions_csv
        from ..cache import cached_image_features
        from ..metrics import classification_metrics, topk_indices

        start = time.perf_counter()
        images = self.image_input(model, ctx)
        dataset, partial = images.dataset, images.partial
        classifier = self.classifier(model, ctx)
        resize = dataset.transform.spec.resize_mode
        encoded = cached_image_features(model, dataset, ctx, images.key_parts, self.name)
        failures = encoded.failures
        if not encoded.kept:
            raise DatasetUnavailableError(f"task {self.name!r}: none of the {len(dataset)} images could be read:"
                                          f" {failures[:3]}")
        k = min(5, len(self.bank.classnames))
        topk = torch.cat([topk_indices(block @ classifier.T, k) for block in encoded.features.split(4096)])
        target, kept = encoded.labels, encoded.kept
        metrics = classification_metrics(topk, target, len(self.bank.classnames), self.spec.metrics)
        primary = self.spec.primary_metric
        interval = classification_interval(primary, topk, target, len(self.bank.classnames),
                                           BootstrapConfig(ctx.bootstrap_iterations, ctx.bootstrap_seed))
        image_seconds = encoded.seconds
        expected = self.spec.expected_num_samples
        status = count_status(len(target), expected, partial)
        warnings = list(self.listing_warnings)
        if status in COUNT_MISMATCHES:
            warnings.append(f"scored {len(target)} samples ({len(dataset)} listed, {len(failures)} unreadable),"
                            f" the task expects {expected}: count_status={status}")
        return TaskResult(
            metrics=metrics,
            num_samples=len(target),
            num_failed=len(failures),
            failures=failures,
            seconds=time.perf_counter() - start,
            images_per_second=len(target) / image_seconds if image_seconds > 0 else float("nan"),
            partial=partial,
            warnings=warnings,
            transform=resize,
            intervals={primary: interval} if interval and primary in metrics else {},
            predictions_csv=classification_predictions_csv([dataset.names[i] for i in kept], target, topk),
            expected_num_samples=expected, count_status=status,
        )
