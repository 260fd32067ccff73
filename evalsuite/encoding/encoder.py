"""The Encoder: everything between a task's inputs and its features, for one model and one run.

It owns the feature cache (image features, classifiers, captions, the model's preprocessing), the pixel cache,
the loaders started ahead of their task (the Runner hands it the run's image sets up front), CUDA OOM back-off,
sharding and gathering across ranks and class embeddings shared by the run's tasks. The model itself is loaded
lazily, on the first thing that is not in the caches: a re-run whose features and classifiers are all cached
loads no weights at all.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import torch
import torch.nn.functional as F

from ..distributed import all_agree, is_writer
from .feature_cache import FeatureCache, cache_key, image_entry_problem, json_digest, sample_identity
from .images import BatchLimit, encode_with_backoff, from_loader, from_pixel_cache, shard_of
from .loaders import LoaderPool
from .requests import ClassifierRequest, Encoded, EncodedImages, ImageRequest, TaskInputs, TextRequest
from .texts import encode_texts

if TYPE_CHECKING:
    from ..data.pixels import UInt8Pixels
    from ..models.base import ModelAdapter
    from .pixel_cache import PixelCache

log = logging.getLogger("evalsuite")

class ModelLoadFailed(Exception):
    """The model could not be loaded (``error``): that stops the run, it is not one task's failure."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class EncoderSettings:
    batch_size: int = 256
    workers: Optional[int] = None  # DataLoader workers (None: data.loader.default_workers)
    progress: str = "off"  # bar | lines | off (evalsuite/progress.py)
    decoder: str = "pil"  # pil (open_clip's transform exactly; the default) | tensor | cuda (data/pixels.py)
    cache_dir: Optional[Path] = None  # feature cache root (None: no feature cache)
    pixel_cache_dir: Optional[Path] = None  # --cache-pixels root (None: off)


class Encoder:
    def __init__(self, settings: EncoderSettings, model_fingerprint: str, device: torch.device,
                 load_model: Callable[[], "ModelAdapter"], model: Optional["ModelAdapter"] = None) -> None:
        """``load_model`` is called on the first cache miss; ``model``: one already loaded (nothing to load)."""
        self.settings = settings
        self.model_fingerprint = model_fingerprint
        self.device = device
        self._load_model = load_model
        self._model = model
        self._load_error: Optional[ModelLoadFailed] = None
        self.cache = FeatureCache(settings.cache_dir) if settings.cache_dir is not None and model_fingerprint else None
        self.pixel_cache: Optional["PixelCache"] = None
        if settings.pixel_cache_dir is not None:
            from .pixel_cache import PixelCache

            self.pixel_cache = PixelCache(settings.pixel_cache_dir)
        self.loaders = LoaderPool(settings.batch_size, settings.workers, device)
        self.batch_limit = BatchLimit()
        self.class_embeddings: dict[tuple[str, ...], torch.Tensor] = {}  # class prompts -> embedding, run-wide
        self._plan: list[ImageRequest] = []
        self._preprocess: Optional[dict] = None
        self._transforms: dict[Optional[str], "UInt8Pixels"] = {}

    @classmethod
    def for_model(cls, model: "ModelAdapter", settings: EncoderSettings = EncoderSettings()) -> "Encoder":
        """An Encoder around a model already loaded (library use, tests)."""
        return cls(settings, model.fingerprint(), model.device, lambda: model, model)

    # --- the model, loaded on first need ---------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> "ModelAdapter":
        if self._model is None:
            if self._load_error is not None:  # never a second attempt (minutes for a large model)
                raise self._load_error
            try:
                self._model = self._load_model()
            except Exception as exc:
                self._load_error = ModelLoadFailed(exc)
                raise self._load_error from exc
            if self.cache is not None and is_writer():  # lets a later, fully cached run skip loading
                self.cache.save("models", self.model_fingerprint,
                                {"preprocess": self._model.preprocess_description()}, self._model_identity())
        return self._model

    def _model_identity(self) -> dict:
        return {"model": self.model_fingerprint}

    def preprocess(self) -> dict:
        """The model's preprocessing description; from the cache (written when it last loaded) if it is not
        loaded, so pixel specs and cache keys need no weights."""
        if self._model is not None:
            return self._model.preprocess_description()
        if self._preprocess is None:
            entry = self.cache.load("models", self.model_fingerprint, self._model_identity()) if self.cache else None
            self._preprocess = entry["preprocess"] if entry is not None else self.model.preprocess_description()
        return self._preprocess

    def known_preprocess(self) -> Optional[dict]:
        """The preprocessing description if known without loading the model (for run.json), else None."""
        return self._model.preprocess_description() if self._model is not None else self._preprocess

    def pixel_transform(self, resize_mode: Optional[str] = None) -> "UInt8Pixels":
        if resize_mode not in self._transforms:
            from ..data.pixels import PixelSpec, UInt8Pixels

            spec = PixelSpec.from_preprocess(self.preprocess(), resize_mode, self.settings.decoder)
            self._transforms[resize_mode] = UInt8Pixels(spec)
        return self._transforms[resize_mode]

    # --- the run's plan: loaders started ahead ---------------------------------------------------------------
    def plan(self, requests: list[ImageRequest]) -> None:
        """The image sets the run will ask for, in order: the first starts decoding now, each next one when its
        predecessor's last batch is read."""
        self._plan = list(requests)
        if self._plan:
            self._start(self._plan[0])

    def _after(self, request: ImageRequest) -> Optional[Callable[[], None]]:
        position = next((i for i, r in enumerate(self._plan) if r is request), None)
        if position is None or position + 1 >= len(self._plan):
            return None
        following = self._plan[position + 1]
        return lambda: self._start(following)

    def _start(self, request: ImageRequest) -> None:
        """Start decoding ``request``'s images unless its features or pixels are cached."""
        try:
            dataset = request.dataset(self.pixel_transform(request.resize_mode))
            if self.cache is not None and self.cache.has("images", self._feature_key(dataset, request)):
                return
            entry = self._pixel_entry(dataset, request)
            if entry is not None and entry[0].has(entry[1]):
                return
            self.loaders.start(self._pixels_key(dataset, request), shard_of(dataset)[0])
        except ModelLoadFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - only a head start: the task reports its own error when it runs
            log.debug("%s: not started ahead (%s: %s)", request.name, type(exc).__name__, exc)

    def close(self) -> None:
        self.loaders.close()

    # --- encoding ---------------------------------------------------------------------------------------------
    def encode(self, inputs: TaskInputs) -> Encoded:
        """The classifier first (the task's images decode meanwhile), then the images, then the texts."""
        classifier = self.classifier(inputs.classifier) if inputs.classifier is not None else None
        images = self.images(inputs.images)
        texts = self.texts(inputs.texts) if inputs.texts is not None else None
        return Encoded(images, classifier, texts)

    def _feature_key(self, dataset, request: ImageRequest) -> str:
        return cache_key(model=self.model_fingerprint, pixels=self._pixels_key(dataset, request))

    @staticmethod
    def _pixels_key(dataset, request: ImageRequest) -> str:
        from .pixel_cache import pixels_key

        return pixels_key(dataset.transform.spec.as_dict(), request.key_parts)

    def _pixel_entry(self, dataset, request: ImageRequest) -> Optional[tuple["PixelCache", str]]:
        if self.pixel_cache is None:
            return None
        return self.pixel_cache, self._pixels_key(dataset, request)

    def _encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        model = self.model  # loaded (if it must be) before the loaders are held
        with self.loaders.encoding():
            return encode_with_backoff(model.encode_image, pixels, self.batch_limit)

    def images(self, request: ImageRequest) -> EncodedImages:
        """Image features of the request's readable samples: from the feature cache when it holds them (verified;
        ranks agree), else decoded (or read from the pixel cache), encoded and stored."""
        dataset = request.dataset(self.pixel_transform(request.resize_mode))
        resize = dataset.transform.spec.resize_mode
        key, identity = self._feature_key(dataset, request), sample_identity(dataset)
        on_read = self._after(request)
        if self.cache is not None:
            hit = self.cache.load("images", key, identity, lambda entry: image_entry_problem(entry, identity))
            if all_agree(hit is not None):  # ranks take the same path: encoding gathers across them
                log.info("%s: image features from the cache (%d samples, no decoding)", request.name,
                         len(hit["kept"]))
                if on_read is not None:
                    on_read()
                return EncodedImages(hit["features"], labels_of(request, hit["kept"]), hit["kept"], hit["failures"],
                                     0.0, True, resize)
        start = time.perf_counter()
        pixels = self._pixel_entry(dataset, request)
        s = self.settings
        merged = (from_pixel_cache(self._encode_pixels, dataset, s.batch_size, request.name, s.progress, pixels,
                                   on_read) if pixels else None)
        if merged is None:
            merged = from_loader(self._encode_pixels, self.device, dataset, request.name, s.progress, pixels,
                                 self.loaders, self._pixels_key(dataset, request), on_read)
        kept, features, failures = merged
        encoded = EncodedImages(features, labels_of(request, kept), kept, failures, time.perf_counter() - start,
                                False, resize)
        if self.cache is not None and is_writer():
            self.cache.save("images", key, {"features": features, "kept": kept, "failures": failures}, identity)
        return encoded

    def classifier(self, request: ClassifierRequest) -> torch.Tensor:
        """(C, D) class embeddings on the CPU, from the feature cache (keyed by model and prompts; verified) when
        present."""
        key = cache_key(model=self.model_fingerprint, prompts=request.digest, fill="str.format")
        count = len(request.prompts)
        identity = {"count": count, "prompts": request.digest}

        def wrong_shape(entry: dict) -> Optional[str]:
            held = entry.get("classifier")
            fits = getattr(held, "ndim", 0) == 2 and held.shape[0] == count
            return None if fits else f"holds no ({count}, D) classifier"

        hit = self.cache.load("classifiers", key, identity, wrong_shape) if self.cache else None
        if hit is not None:
            return hit["classifier"]
        classifier = self._build_classifier(request.prompts)
        if self.cache is not None and is_writer():
            self.cache.save("classifiers", key, {"classifier": classifier}, identity)
        return classifier

    def _build_classifier(self, prompts: list[list[str]]) -> torch.Tensor:
        """Per class the mean of the L2-normalised template embeddings, re-normalised. The prompts of all classes
        not yet known are encoded together in large batches; class embeddings are kept for the run, keyed by the
        class's exact prompts, so tasks sharing classes and templates (the ImageNet variants) encode them once."""
        known = self.class_embeddings
        missing = list(dict.fromkeys(tuple(p) for p in prompts if tuple(p) not in known))
        if missing:
            flat = [p for per_class in missing for p in per_class]
            start_time = time.perf_counter()
            log.info("text classifier: %d classes x %d templates, %d prompts to encode (%d classes known from"
                     " earlier tasks)", len(prompts), len(prompts[0]), len(flat), len(prompts) - len(missing))
            features = self._encode_texts(flat)
            log.info("text classifier: %d prompts in %.1fs", len(flat), time.perf_counter() - start_time)
            start = 0
            for per_class in missing:  # classes may have different template counts only across tasks
                known[per_class] = F.normalize(features[start:start + len(per_class)].mean(dim=0), dim=-1)
                start += len(per_class)
        return torch.stack([known[tuple(p)] for p in prompts])

    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        # a classifier's classes x templates are batched together; loader workers pause for each forward pass
        return encode_texts(self.model, texts, forward_turn=self.loaders.encoding)

    def texts(self, request: TextRequest) -> torch.Tensor:
        """(T, D) features of the texts, in order, cached by model and text digest like classifiers."""
        digest = json_digest(request.texts)
        key = cache_key(model=self.model_fingerprint, texts=digest)
        identity = {"count": len(request.texts), "texts": digest}

        def wrong_shape(entry: dict) -> Optional[str]:
            held = entry.get("features")
            fits = getattr(held, "ndim", 0) == 2 and held.shape[0] == len(request.texts)
            return None if fits else f"holds no ({len(request.texts)}, D) text features"

        hit = self.cache.load("texts", key, identity, wrong_shape) if self.cache else None
        if hit is not None:
            log.info("%s: %d text features from the cache", request.name, len(request.texts))
            return hit["features"]
        features = self._encode_texts(request.texts) if request.texts else torch.empty(0, 0)
        if self.cache is not None and is_writer():
            self.cache.save("texts", key, {"features": features}, identity)
        return features

    @property
    def image_batch_limit(self) -> int:
        """The image batch actually encoded at once (lower than --batch-size after a CUDA out-of-memory)."""
        return self.batch_limit.size or self.settings.batch_size


def labels_of(request: ImageRequest, kept: list[int]) -> torch.Tensor:
    """The labels of the kept samples, from the dataset listing (never from a cache entry)."""
    labels = request.labels
    return torch.tensor([int(labels[i]) for i in kept], dtype=torch.long)
