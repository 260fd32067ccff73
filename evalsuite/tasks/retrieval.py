"""Zero-shot image-text retrieval (Flickr30k, COCO): recall@k both ways, CLIP-paper semantics, squash resize."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from ..errors import ConfigError, DatasetUnavailableError
from ..results import COUNT_MISMATCHES, count_status
from .base import ImageInput, RunContext, Task, TaskResult
from .classification import subset_indices

if TYPE_CHECKING:
    from ..data.captions import CaptionedSamples
    from ..models.base import ModelAdapter

RECALL = re.compile(r"^(image|text)_retrieval_recall@(\d+)$")
TEXT_BATCH = 1024
SCORE_BLOCK = 512  # queries scored at once: memory is a few SCORE_BLOCK x gallery-size buffers


class ZeroShotRetrievalTask(Task):
    fixed_resize = "squash"  # the EVA-CLIP protocol resizes retrieval images directly to the square size

    def __init__(self, spec, include_paths=()) -> None:
        bad = [m for m in spec.metrics if m != "mean_recall" and not RECALL.match(m)]
        if bad:
            raise ConfigError(f"{spec.file}: retrieval metrics are image_retrieval_recall@K,"
                              f" text_retrieval_recall@K and mean_recall; got {bad}")
        self.allowed_metrics = tuple(spec.metrics)
        super().__init__(spec, include_paths)
        self.ks = sorted({int(RECALL.match(m).group(2)) for m in spec.metrics if RECALL.match(m)})
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

    def image_input(self, model: "ModelAdapter", ctx: RunContext) -> ImageInput:
        if getattr(self, "_samples", None) is None:
            self.prepare(ctx)
        samples = self._samples
        partial = ctx.limit is not None and ctx.limit < len(samples.items)
        if partial:
            samples = samples.subset(subset_indices(len(samples.items), ctx.limit))
        dataset = samples.dataset(model.pixel_transform(self.fixed_resize, ctx.decoder))
        return ImageInput(dataset, {"data": self.data_identity, "limit": ctx.limit,
                                    "source": self.spec.as_dict()["source"]}, partial, samples)

    def evaluate(self, model: "ModelAdapter", ctx: RunContext) -> TaskResult:
        import torch

        from ..bootstrap import BootstrapConfig, retrieval_interval, retrieval_predictions_csv
        from ..cache import cached_image_features
        from ..metrics import retrieval_metrics

        start = time.perf_counter()
        images = self.image_input(model, ctx)
        dataset, samples, partial = images.dataset, images.samples, images.partial
        encoded = cached_image_features(model, dataset, ctx, images.key_parts, self.name)
        kept, failures, image_seconds = encoded.kept, encoded.failures, encoded.seconds
        if not kept:
            raise DatasetUnavailableError(f"task {self.name!r}: none of the {len(dataset)} images could be read:"
                                          f" {failures[:3]}")
        # an unreadable image leaves the gallery together with its captions (counted in num_failed)
        texts, text_to_image = [], []
        for position, index in enumerate(kept):
            texts += samples.captions[index]
            text_to_image += [position] * len(samples.captions[index])
        text_features = torch.cat([model.encode_text(model.tokenize(texts[i:i + TEXT_BATCH])).float().cpu()
                                   for i in range(0, len(texts), TEXT_BATCH)])
        metrics, t2i, i2t = retrieval_metrics(encoded.features, text_features, text_to_image, self.ks,
                                              SCORE_BLOCK)
        interval = retrieval_interval(t2i, text_to_image, i2t, self.ks,
                                      BootstrapConfig(ctx.bootstrap_iterations, ctx.bootstrap_seed))
        primary = self.spec.primary_metric
        expected, expected_texts = self.spec.expected_num_samples, self.spec.expected_num_texts
        status = count_status(len(kept), expected, partial, len(texts), expected_texts)
        warnings = list(self.listing_warnings)
        if status in COUNT_MISMATCHES:
            warnings.append(f"scored {len(kept)} images ({len(dataset)} listed, {len(failures)} unreadable) and"
                            f" {len(texts)} captions, the task expects {expected} images and"
                            f" {expected_texts or '?'} captions: count_status={status}")
        return TaskResult(
            metrics={m: metrics[m] for m in self.spec.metrics},
            num_samples=len(kept), num_texts=len(texts), num_failed=len(failures), failures=failures,
            seconds=time.perf_counter() - start,
            images_per_second=len(kept) / image_seconds if image_seconds > 0 else float("nan"),
            partial=partial, warnings=warnings, transform=self.fixed_resize,
            intervals={primary: interval} if interval and primary == "mean_recall" else {},
            predictions_csv=retrieval_predictions_csv([samples.names[i] for i in kept], text_to_image, t2i, i2t),
            expected_num_samples=expected, expected_num_texts=expected_texts, count_status=status,
        )
