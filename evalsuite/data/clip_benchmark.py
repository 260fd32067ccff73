"""Datasets built by CLIP_benchmark (``clip_benchmark.datasets.builder.build_dataset``), mostly torchvision ones.

Only images and labels are taken from it; class names and templates always come from prompts/. Its failure modes
(asserts, ``sys.exit``, shell downloads that fail quietly, missing optional packages) become one typed
DatasetUnavailableError naming the task, the folder and what to do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from ..errors import ConfigError, DataNotFoundError, DatasetUnavailableError
from .base import DownloadingSource, LocalArgs, Samples, SourceContext, data_files_under, locate

log = logging.getLogger(__name__)

SPOT_CHECKS = 8  # labels read from dataset attributes are verified against __getitem__ on this many samples


@dataclass(frozen=True)
class ClipBenchmarkArgs:
    dataset: str  # CLIP_benchmark's dataset name (e.g. cifar100, cars, imagenet-a)
    split: str = "test"
    dir: str = ""  # folder under --data-root that `prepare` downloads into; default: the task name
    dirs: list[str] = field(default_factory=list)  # other folder names an existing copy may have
    download: bool = True  # false where the builder's download is known not to work: `prepare` never tries it
    instructions: str = ""  # extra advice shown when the data is missing or cannot be downloaded


class ImageAt:
    """Picklable loader: item ``i`` -> the dataset's PIL image ``i`` (DataLoader workers get a copy)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __call__(self, index: int):
        return self.dataset[index][0].convert("RGB")


@contextlib.contextmanager
def working_directory(path: Path):
    """CLIP_benchmark downloads some datasets with shell commands into the current directory."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Everything written to standard output goes to standard error meanwhile: Python's prints and, through file
    descriptor 1, the shell commands CLIP_benchmark runs (``tar xvf`` lists every file)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _labels_from_attributes(ds: Any) -> list[int] | None:
    n = len(ds)
    if hasattr(ds, "label_map") and hasattr(ds, "samples"):  # ObjectNet: label from the folder of each path
        return [ds.label_map[os.path.basename(os.path.dirname(path))] for path, _ in ds.samples]
    if hasattr(ds, "fnames"):  # ImageNetV2: folders are class indices
        return [int(Path(f).parent.name) for f in ds.fnames]
    for attr in ("targets", "_labels", "labels", "y"):
        values = getattr(ds, attr, None)
        if values is not None and len(values) == n:
            return [int(v) for v in values]
    for attr, position in (("_samples", 1), ("samples", 1), ("bndboxes", -1)):
        values = getattr(ds, attr, None)
        if values is not None and len(values) == n:
            return [int(v[position]) for v in values]
    return None


def dataset_labels(ds: Any, where: str) -> list[int]:
    """Every sample's label without decoding every image: from the dataset's label attributes when they agree with
    ``ds[i]`` on a spread of samples, else by reading each sample (slow, logged)."""
    n = len(ds)
    labels = _labels_from_attributes(ds)
    target_transform = getattr(ds, "target_transform", None)
    if labels is not None and target_transform is not None:
        labels = [int(target_transform(v)) for v in labels]
    if labels is not None:
        checks = sorted({round(k * (n - 1) / max(1, SPOT_CHECKS - 1)) for k in range(SPOT_CHECKS)}) if n else []
        if all(int(ds[i][1]) == labels[i] for i in checks):
            return labels
        log.warning("%s: label attributes disagree with the samples; reading every sample's label", where)
    log.info("%s: reading the label of each of %d samples (no label attribute)", where, n)
    return [int(ds[i][1]) for i in range(n)]


class ClipBenchmarkSource(DownloadingSource):
    """Data under ``<data-root>/<dir>`` in the layout CLIP_benchmark (torchvision) downloads to."""

    Args = ClipBenchmarkArgs

    def __init__(self, spec, source) -> None:
        super().__init__(spec, source)
        if not self.args.dataset.strip():
            raise ConfigError(f"{spec.file}: source clip_benchmark needs a non-empty 'dataset'")

    def folder_names(self) -> list[str]:
        """Folder names a copy is found under: ours (``dir`` or the task name), CLIP_benchmark's own dataset name
        (``--dataset_root root/{dataset}`` gives ``pets``, ``flowers``, ``cars``, ``imagenet-a``...), then ``dirs``."""
        return list(dict.fromkeys([self.args.dir or self.spec.name, self.args.dataset, *self.args.dirs]))

    def root(self, data_root: Path) -> Path:
        """The first ``<data-root>/<name>`` that exists, else --data-root itself when it is named like one (it is
        the dataset folder), else where `prepare` downloads to."""
        names = self.folder_names()
        try:
            return locate(self.spec, LocalArgs(dirs=names), data_root, lambda d: d.resolve().name in names)
        except DatasetUnavailableError:
            return (data_root / names[0]).resolve()

    def fetch(self, ctx: SourceContext) -> None:
        if not self.args.download:
            self.samples(ctx)  # present, or the instructions
            return
        super().fetch(ctx)

    def _advice(self, download: bool = False) -> str:
        extra = f" {self.args.instructions}" if self.args.instructions else ""
        if download:
            return f"Check the network, or put a copy in torchvision's layout there (README, 'Data layout').{extra}"
        if not self.args.download:
            return f"Put a copy in CLIP_benchmark's (torchvision's) layout there.{extra}"
        return f"Run `evalsuite prepare {self.spec.name}` to download it through CLIP_benchmark.{extra}"

    def _build(self, root: Path, download: bool):
        from clip_benchmark.datasets.builder import build_dataset

        what = f"task {self.spec.name!r}: CLIP_benchmark dataset {self.args.dataset!r} (split {self.args.split!r})"
        try:
            with stdout_to_stderr():  # it prints progress, its shell steps their file lists; stdout is ours
                return build_dataset(self.args.dataset, root=str(root), transform=None, split=self.args.split,
                                     download=download)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - asserts, sys.exit, network and file errors alike
            raise DatasetUnavailableError(
                f"{what} could not be {'downloaded' if download else 'read'} at {root}: {type(exc).__name__}:"
                f" {exc}. {self._advice(download)}"
            ) from None

    def samples(self, ctx: SourceContext) -> Samples:
        root = self.root(ctx.data_root)
        if not root.is_dir():
            looked = ", ".join(str(ctx.data_root / n) for n in self.folder_names())
            raise DataNotFoundError(f"task {self.spec.name!r}: no CLIP_benchmark copy of {self.args.dataset!r}"
                                          f" in {looked} or {ctx.data_root}. {self._advice()}")
        ds = self._build(root, download=False)
        self._check_class_folders(ds, root, len(ctx.label_keys))
        labels = dataset_labels(ds, f"task {self.spec.name}")
        if labels and max(labels) >= len(ctx.label_keys):
            raise DatasetUnavailableError(
                f"task {self.spec.name!r}: CLIP_benchmark's {self.args.dataset!r} has label {max(labels)} but the"
                f" classnames file {self.spec.classnames!r} has {len(ctx.label_keys)} classes"
            )
        names = [f"{self.args.dataset}/{self.args.split}/{i}" for i in range(len(labels))]
        log.info("task %s: %d samples from CLIP_benchmark %s under %s", self.spec.name, len(labels),
                 self.args.dataset, root)
        # the items are indices into torchvision's reader: the files under root are what identifies the data
        return Samples(list(range(len(labels))), labels, ImageAt(ds), names, root=str(root),
                       data_files=data_files_under(root))

    def _check_class_folders(self, ds: Any, root: Path, num_classes: int) -> None:
        """torchvision's ImageFolder (EuroSAT, Country211, ImageNet-A/-R/-Sketch, FER2013 here) numbers the class
        folders it finds in sorted order: with one missing, every later class takes its neighbour's label."""
        from torchvision.datasets import DatasetFolder  # here: listing tasks must not import torch up front

        if not isinstance(ds, DatasetFolder) or len(ds.class_to_idx) == num_classes:
            return  # other readers take labels from annotation files, not from folder order
        folders = ds.class_to_idx
        raise DatasetUnavailableError(
            f"task {self.spec.name!r}: CLIP_benchmark's {self.args.dataset!r} copy at {root} has {len(folders)} class"
            f" folders, the task has {num_classes} classes: torchvision numbers the folders it finds, so every"
            f" class after a missing one would be scored as its neighbour. Found: {', '.join(sorted(folders)[:8])}"
            f"{' ...' if len(folders) > 8 else ''}. Complete the copy (an interrupted unpack?) or delete it and run"
            f" `evalsuite prepare {self.spec.name}`.")

    def staged_count(self, target: Path) -> Optional[int]:
        """CLIP_benchmark's shell downloads (wget, tar, unzip) go on when a step fails: count what arrived."""
        return len(self._build(target, download=False))

    def download_into(self, target: Path, ctx: SourceContext, stage: Path) -> None:
        with working_directory(stage):  # its shell downloads land in the scratch folder, not the user's cwd
            self._build(target, download=True)
