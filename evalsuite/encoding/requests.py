"""What a task asks the Encoder for, and what it gets back. Torch-free to build, so task types import it freely.

A task describes its inputs (``Task.inputs``): the images of its samples, the class prompts of a classifier, the
captions of a retrieval set. The Encoder turns them into features (from its caches or the model) and the task
scores those (``Task.score``). Nothing here knows about caches, loaders, ranks or the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

if TYPE_CHECKING:
    import torch

    from ..data.base import SampleDataset, Samples


@dataclass
class ImageRequest:
    """The images of ``samples`` (the ``indices`` among them; None: all), with what identifies them for the
    caches (``key_parts``: data identity, --limit, source, frame reader)."""

    name: str  # the task's name, for logs and progress
    samples: "Samples"
    key_parts: dict
    resize_mode: Optional[str] = None  # shortest | squash; None: the model's own
    indices: Optional[list[int]] = None
    partial: bool = False  # a --limit subset

    def dataset(self, transform: Callable) -> "SampleDataset":
        dataset = self.samples.dataset(transform)
        return dataset.subset(self.indices) if self.indices is not None else dataset

    @property
    def names(self) -> Sequence[str]:
        names = self.samples.names
        return names if self.indices is None else [names[i] for i in self.indices]

    @property
    def labels(self) -> Sequence[int]:
        labels = self.samples.labels
        return labels if self.indices is None else [labels[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.samples.items) if self.indices is None else len(self.indices)


@dataclass
class ClassifierRequest:
    """A zero-shot classifier: per class the prompts (templates filled in); ``digest`` identifies them."""

    prompts: list[list[str]]
    digest: str


@dataclass
class TextRequest:
    """Texts to encode one by one (retrieval captions), in order."""

    texts: list[str]
    name: str = ""


@dataclass
class TaskInputs:
    images: ImageRequest
    classifier: Optional[ClassifierRequest] = None
    texts: Optional[TextRequest] = None
    extra: dict[str, Any] = field(default_factory=dict)  # what ``score`` needs beyond features (e.g. captions)


@dataclass
class EncodedImages:
    features: "torch.Tensor"  # (kept, D) float32 on the CPU, L2-normalised
    labels: "torch.Tensor"  # (kept,) from the listing, never from a cache
    kept: list[int]  # dataset indices of the readable samples, in order
    failures: list[str]  # one message per unreadable sample
    seconds: float  # decoding + encoding time (0 when read from the cache)
    from_cache: bool = False
    resize_mode: str = ""  # the resize the pixels were made with (shortest | squash)


@dataclass
class Encoded:
    images: EncodedImages
    classifier: Optional["torch.Tensor"] = None  # (C, D) on the CPU
    texts: Optional["torch.Tensor"] = None  # (T, D) on the CPU
