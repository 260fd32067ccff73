"""Zero-shot image-text retrieval (Flickr30k, COCO): recall@k both ways, CLIP-paper semantics, squash resize."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from ..encoding.requests import Encoded, ImageRequest, TaskInputs, TextRequest
from ..errors import ConfigError, DatasetUnavailableError
from ..metrics import METRICS, recall_ks
from ..results import COUNT_MISMATCHES, count_status
from .base import RunContext, Task, TaskResult
from .classification import subset_indices

if TYPE_CHECKING:
    from ..data.captions import CaptionedSamples

RETRIEVAL_METRICS = METRICS.select("image_retrieval_recall@K", "text_retrieval_recall@K", "mean_recall")
SCORE_BLOCK = 512  # queries scored at once: memory is a few SCORE_BLOCK x gallery-size buffers


@dataclass(frozen=True)
class RetrievalArgs:
    expected_num_texts: Optional[int] = None  # captions of the protocol's gallery (COCO 5k: 25,010)


class ZeroShotRetrievalTask(Task):
    fixed_resize = "squash"  # the EVA-CLIP protocol resizes retrieval images directly to the square size
    metric_set = RETRIEVAL_METRICS
    default_metrics = tuple(f"{d}_retrieval_recall@{k}" for d in ("image", "text") for k in (1, 5, 10)) + (
        "mean_recall",)
    default_primary_metric = "mean_recall"
    Args = RetrievalArgs

    def __init__(self, spec, include_paths=()) -> None:
        super().__init__(spec, include_paths)
        spec = self.spec
        self.ks = recall_ks(spec.metrics)
        if not self.ks:
            raise ConfigError(f"{spec.file}: name at least one recall@K metric")
        for direction in ("image", "text"):
            missing = [k for k in self.ks if f"{direction}_retrieval_recall@{k}" not in spec.metrics]
            if missing:
                raise ConfigError(f"{spec.file}: recall@{missing} must be listed for both directions")

    def prepare(self, ctx: RunContext) -> None:
        from ..data.captions import caption_files_note

        try:
            self._samples: "CaptionedSamples" = self.find_samples(self.source_context(ctx.data_root))
        except DatasetUnavailableError as exc:
            note = caption_files_note(self.spec, ctx.data_root)  # COCO caption files are not the Karpathy split
            if not note:
                raise
            raise DatasetUnavailableError(f"{exc} {note}") from None
        if not hasattr(self._samples, "captions"):
            raise ConfigError(f"{self.spec.file}: source {self.source_used!r} gives no captions")
        self.set_listing(self._samples, ctx)

    def inputs(self, ctx: RunContext) -> TaskInputs:
        samples = self._samples
        partial = ctx.limit is not None and ctx.limit < len(samples.items)
        if partial:
            samples = samples.subset(subset_indices(len(samples.items), ctx.limit))
        images = ImageRequest(self.name, samples, {"data": self.data_identity, "limit": ctx.limit,
                                                   "source": self.spec.as_dict()["source"]},
                              self.fixed_resize, partial=partial)
        # every listed caption; those of unreadable images are left out when scoring
        return TaskInputs(images, texts=TextRequest([c for per_image in samples.captions for c in per_image],
                                                    self.name))

    def score(self, inputs: TaskInputs, encoded: Encoded, ctx: RunContext) -> TaskResult:
        from ..bootstrap import BootstrapConfig, retrieval_interval, retrieval_predictions_csv
        from ..metrics import retrieval_metrics

        request, images = inputs.images, encoded.images
        samples, kept, failures = request.samples, images.kept, images.failures
        if not kept:
            raise DatasetUnavailableError(f"task {self.name!r}: none of the {len(request)} images could be read:"
                                          f" {failures[:3]}")
        # an unreadable image leaves the gallery together with its captions (counted in num_failed)
        first_caption = [0]
        for per_image in samples.captions:
            first_caption.append(first_caption[-1] + len(per_image))
        rows, text_to_image = [], []
        for position, index in enumerate(kept):
            rows += range(first_caption[index], first_caption[index + 1])
            text_to_image += [position] * len(samples.captions[index])
        text_features = encoded.texts[rows]
        metrics, t2i, i2t = retrieval_metrics(images.features, text_features, text_to_image, self.ks,
                                              SCORE_BLOCK)
        primary = self.spec.primary_metric
        interval = retrieval_interval(t2i, text_to_image, i2t, self.ks,
                                      BootstrapConfig(ctx.bootstrap_iterations, ctx.bootstrap_seed), primary)
        expected, expected_texts = self.spec.expected_num_samples, self.args.expected_num_texts
        status = count_status(len(kept), expected, request.partial, len(rows), expected_texts)
        warnings = list(self.listing_warnings)
        if status in COUNT_MISMATCHES:
            warnings.append(f"scored {len(kept)} images ({len(request)} listed, {len(failures)} unreadable) and"
                            f" {len(rows)} captions, the task expects {expected} images and"
                            f" {expected_texts or '?'} captions: count_status={status}")
        return TaskResult(
            metrics={m: metrics[m] for m in self.spec.metrics},
            num_samples=len(kept), num_texts=len(rows), num_failed=len(failures), failures=failures,
            seconds=0.0,  # set by Task.evaluate
            images_per_second=len(kept) / images.seconds if images.seconds > 0 else float("nan"),
            partial=request.partial, warnings=warnings, transform=self.fixed_resize,
            intervals={primary: interval} if interval else {},
            predictions_csv=retrieval_predictions_csv([samples.names[i] for i in kept], text_to_image, t2i, i2t),
            expected_num_samples=expected, expected_num_texts=expected_texts, count_status=status,
        )
