"""What every data source shares: argument parsing, locating data under --data-root, the dataset wrapper.

Importing this module does not import torch (``evalsuite validate`` uses it).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Optional, Sequence, Union

from PIL import Image

from ..config import SourceSpec, TaskSpec, from_mapping
from ..errors import DataNotFoundError, DatasetUnavailableError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


@dataclass(frozen=True)
class SourceContext:
    data_root: Path
    label_keys: list[str]  # label key -> class index is the position in this list (from the classnames file)
    classnames: tuple[str, ...] = ()  # the task's class names in label order, where they differ from the keys


ImageItem = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image]
"""What a source hands the pixel pipeline for one sample, one of three kinds: an image file's path, an encoded
image's bytes (a tar member, a video frame's JPEG), or a decoded PIL image. ``UInt8Pixels.from_item`` takes
each its own way (paths and bytes keep the tensor/cuda decoders' ``decode_jpeg`` path; the ``pil`` decoder gives
the same pixels for a file and for its bytes); anything else is an ``ImageItemError``, never a silent slow path.
"""


class ImageItemError(TypeError):
    """A source handed over something that is not an ``ImageItem``: a bug in the source, raised, not counted as
    an unreadable sample."""


def check_image_item(item: Any) -> None:
    if not isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image)):
        raise ImageItemError(f"a source handed the pixel pipeline a {type(item).__module__}.{type(item).__qualname__};"
                             " an image item is a file path, encoded bytes or a PIL image (data/base.py ImageItem)")


def open_image_bytes(data: Union[bytes, bytearray, memoryview]) -> Image.Image:
    """Encoded image bytes fully decoded to RGB, exactly as ``load_image_file`` decodes a file with those bytes."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.convert("RGB")


def open_image_item(item: ImageItem) -> Image.Image:
    """Any image item as an RGB PIL image (for transforms that take PIL images)."""
    check_image_item(item)
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, (str, os.PathLike)):
        return load_image_file(item)
    return open_image_bytes(item)


class ItemReader(ABC):
    """A ``Samples.load`` that hands the pixel pipeline an undecoded image item (``read``); called, it returns
    the item decoded to an RGB PIL image, as every ``load`` does. Sources whose items are files or bytes (image
    files, tar members, cached video frames) use one, so the fast decoders see the encoded image; a plain
    callable ``load`` is taken to return the item itself (usually a PIL image: torchvision datasets, drawings).
    Instances must pickle (DataLoader workers get a copy)."""

    @abstractmethod
    def read(self, item: Any) -> ImageItem:
        """The sample's image item, without decoding it."""

    def __call__(self, item: Any) -> Image.Image:
        return open_image_item(self.read(item))


class ImageFileReader(ItemReader):
    """Items are image file paths: the item is the path itself."""

    def read(self, item: Any) -> ImageItem:
        return item

    def __call__(self, path: Any) -> Image.Image:
        """Open and fully decode an image; corrupt or truncated files raise (never LOAD_TRUNCATED_IMAGES)."""
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")

    def __reduce__(self):
        return "load_image_file"  # the module's one instance, also in DataLoader workers


load_image_file = ImageFileReader()  # the ``load`` of sources whose items are image files


def image_item(load: Callable[[Any], Any], item: Any) -> ImageItem:
    """What ``load`` hands the pixel pipeline for ``item`` (see ``ItemReader``); checked to be an ImageItem."""
    got = load.read(item) if isinstance(load, ItemReader) else load(item)
    check_image_item(got)
    return got


class SampleDataset:
    """Map-style dataset: ``items[i]`` is read by ``load`` into an image item (``image_item``) and transformed.

    A transform with ``from_item`` (``UInt8Pixels``) gets the item itself: a path or bytes are decoded its own
    way (data/pixels.py); other transforms get the item as a PIL image. A sample that cannot be read is returned
    as ``(None, label, i, message)`` instead of raising, so one bad file never stops a task and every failure is
    counted and reported (see ``data.loader.collate_samples``); an ``ImageItemError`` (a source's bug) raises.
    """

    def __init__(self, items: Sequence[Any], labels: Sequence[int], load: Callable[[Any], Any],
                 transform: Callable, names: Optional[Sequence[str]] = None) -> None:
        if len(items) != len(labels):
            raise ValueError("items and labels differ in length")
        self.items, self.labels, self.load, self.transform = items, labels, load, transform
        self.names = names if names is not None else [str(x) for x in items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        try:
            item = image_item(self.load, self.items[i])
            from_item = getattr(self.transform, "from_item", None)
            pixels = from_item(item) if from_item is not None else self.transform(open_image_item(item))
        except ImageItemError:
            raise
        except Exception as exc:  # noqa: BLE001 - any decoder error is a per-sample failure, reported
            return None, self.labels[i], i, f"{self.names[i]}: {type(exc).__name__}: {exc}"
        return pixels, self.labels[i], i, None

    def subset(self, indices: Sequence[int]) -> "SampleDataset":
        return SampleDataset([self.items[i] for i in indices], [self.labels[i] for i in indices], self.load,
                             self.transform, [self.names[i] for i in indices])


class DataSource(ABC):
    """A registered source kind. ``Args`` is a dataclass: the YAML ``source.args`` are checked against it."""

    Args: ClassVar[type]

    def __init__(self, spec: TaskSpec, source: SourceSpec) -> None:
        self.spec, self.kind = spec, source.kind
        self.args = from_mapping(self.Args, source.args, f"{spec.file} (source {source.kind!r} args)")

    @abstractmethod
    def samples(self, ctx: SourceContext) -> "Samples":
        """List the samples (cheap: no decoding); raises DatasetUnavailableError with instructions."""

    def fetch(self, ctx: SourceContext) -> None:
        """Download / convert the data for ``evalsuite prepare``. Sources that cannot download raise
        DatasetUnavailableError with exact instructions; the default is such a source."""
        self.samples(ctx)  # raises with the source's instructions when the data is missing


class DownloadingSource(DataSource):
    """A source that ``evalsuite prepare`` can download: data lives in ``<data-root>/<args.dir or task name>``;
    ``fetch`` fills a staging folder through ``download_into`` and moves it into place only when that succeeds."""

    def root(self, data_root: Path) -> Path:
        return (data_root / (self.args.dir or self.spec.name)).resolve()

    @abstractmethod
    def download_into(self, target: Path, ctx: SourceContext, stage: Path) -> None:
        """Create the dataset at ``target`` (inside the scratch folder ``stage``); raise DatasetUnavailableError."""

    def fetch(self, ctx: SourceContext) -> None:
        root = self.root(ctx.data_root)
        if root.exists():
            self.samples(ctx)  # already there; raises if it is not readable
            return
        with staging_folder(ctx.data_root, self.spec.name) as stage:
            self.download_into(stage / "data", ctx, stage)
            staged = self.staged_count(stage / "data")
            expected = self.spec.expected_num_samples
            if staged is not None and expected is not None and staged < expected:
                raise DatasetUnavailableError(
                    f"task {self.spec.name!r}: the download holds {staged} of the {expected} samples (interrupted,"
                    f" or a download step failed); nothing was moved to {root}. Run `evalsuite prepare"
                    f" {self.spec.name}` again.")
            (stage / "data").rename(root)

    def staged_count(self, target: Path) -> Optional[int]:
        """The number of samples a finished ``download_into`` left at ``target``, read before it is moved into
        place (None: not checked here). A download whose shell steps fail silently must not become the data."""
        return None


@dataclass(frozen=True)
class Samples:
    """A source's listing: items, their labels, how to load one item (an ``ItemReader`` where the item is a file
    or bytes, else a callable returning a PIL image; see ``ImageItem``), and display names for error lists.

    ``root`` is the resolved dataset folder (recorded in run.json); ``data_files`` are files the listing reads
    besides the items (annotation files, pickled arrays, a manifest): their identity counts too.
    """

    items: list
    labels: list[int]
    load: Callable[[Any], Any]  # item -> RGB PIL image; an ItemReader also hands over the encoded item
    names: list[str]
    root: Optional[str] = field(default=None, kw_only=True)
    data_files: tuple[str, ...] = field(default=(), kw_only=True)

    def dataset(self, transform: Callable) -> SampleDataset:
        return SampleDataset(self.items, self.labels, self.load, transform, self.names)

    def files(self) -> list[str]:
        """Every file the samples are read from: path items, then the listing's own data files."""
        return [str(x) for x in self.items if isinstance(x, (str, os.PathLike))] + list(self.data_files)

    def identity(self, verify: bool = False) -> str:
        """Which samples, with which labels, read from which files: part of the task fingerprint and of every
        cache key, so results and cached features from other data (another folder with the same names, a file
        replaced in place, a relative --data-root seen from elsewhere) are never taken as this data's."""
        return identity_digest([self.names, self.labels], self.files(), self.root, verify)


def identity_digest(listing: list, files: Sequence[str], root: Optional[str], verify: bool) -> str:
    payload = json.dumps([listing, file_identities(files, root, verify)], ensure_ascii=False).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def file_identities(files: Sequence[str], root: Optional[str], verify: bool = False) -> list:
    """Per file: its path (relative to ``root`` when under it, else absolute), size and mtime_ns — what make and
    rsync decide on; with ``verify`` the sha256 of its contents instead of the time. One ``stat`` per file
    (about 10 us; see benchmarks/data_identity.py). A file that cannot be stat'ed (missing, dangling symlink,
    symlink loop) is recorded as such; its sample fails when read."""
    out = []
    prefix = root + os.sep if root else None
    for path in files:
        absolute = os.path.abspath(path)
        # under root: the rest of the path is os.path.relpath(absolute, root) (both normalised), 10x cheaper
        where = absolute[len(prefix):] if prefix and absolute.startswith(prefix) else absolute
        try:
            st = os.stat(absolute)
        except OSError as exc:
            out.append([where, "unreadable", exc.errno])
            continue
        if verify:
            try:
                with open(absolute, "rb") as f:
                    out.append([where, st.st_size, hashlib.file_digest(f, "sha256").hexdigest()])
            except OSError as exc:
                out.append([where, "unreadable", exc.errno])
        else:
            out.append([where, st.st_size, st.st_mtime_ns])
    return out


def read_data_text(path: Path, what: str) -> str:
    """A dataset's text file (a class index, a split list, a metadata file) as UTF-8; a file that cannot be read
    or decoded is a DatasetUnavailableError naming it and what it should be, not a traceback."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetUnavailableError(f"{path}: not UTF-8 text (byte {exc.start}); it should be {what}") from None
    except OSError as exc:
        raise DatasetUnavailableError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__}); it should"
                                      f" be {what}") from None


def data_files_under(root: Path) -> tuple[str, ...]:
    """Every regular file below ``root`` (sorted), for sources whose items are not files (torchvision pickles)."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        found += [os.path.join(folder, n) for n in sorted(names)]
    return tuple(found)


@dataclass(frozen=True)
class LocalArgs:
    """Arguments shared by sources that read a local copy under --data-root."""

    dirs: list[str] = field(default_factory=list)  # candidates under --data-root; default: [task name]
    instructions: str = ""  # how to obtain the data, shown when it is missing


def locate(spec: TaskSpec, args: LocalArgs, data_root: Path, looks_right: Callable[[Path], bool]) -> Path:
    """The dataset folder: the first ``<data_root>/<dir>`` that exists, else ``data_root`` itself when it already
    is the dataset folder (``--data-root path/to/cifar10-test``)."""
    candidates = [Path(d) if Path(d).is_absolute() else data_root / d for d in (args.dirs or [spec.name])]
    for path in candidates:
        if path.is_dir():
            return path.resolve()  # absolute: the same data reached another way keeps its identity
    if data_root.is_dir() and looks_right(data_root):
        if not _named_for(data_root.resolve(), [spec.name] + list(args.dirs)):
            log.warning("task %s: reading --data-root %s itself as its data, by its contents alone (no %s there);"
                        " datasets with the same classes look alike (ImageNet val, -Sketch and -V2 share the"
                        " wnids): if it is another dataset's folder, this number is that dataset's. Name the"
                        " folder for the task, or put it at %s", spec.name, data_root,
                        " or ".join(str(c.relative_to(data_root)) for c in candidates), candidates[0])
        return data_root.resolve()
    how = f" {args.instructions}" if args.instructions else ""
    raise DataNotFoundError(
        f"task {spec.name!r}: data not found; looked in {', '.join(str(c) for c in candidates)} and {data_root}."
        f" Point --data-root at the folder that holds it (see README, 'Data layout').{how}"
    )


def _named_for(folder: Path, names: list[str]) -> bool:
    """``folder`` is named after one of ``names`` (a task name, a ``dirs`` entry such as ``imagenet/val``):
    compared without case and punctuation, the folder's name (with its parent's for a two-part entry) contains
    it, as ``cifar10-test`` does ``cifar10``."""
    def plain(text: str) -> str:
        return re.sub(r"[^0-9a-z]", "", text.lower())

    for name in names:
        parts = Path(name).parts
        tail = "".join(folder.parts[-len(parts):]) if len(parts) <= len(folder.parts) else ""
        if plain("".join(parts)) and plain("".join(parts)) in plain(tail):
            return True
    return False


@contextlib.contextmanager
def staging_folder(data_root: Path, task: str) -> Iterator[Path]:
    """A scratch folder for a download, removed afterwards whatever happens (and ``data_root`` with it if this
    created it and nothing else landed there): a failed ``prepare`` leaves the data root as it found it."""
    created_data_root = not data_root.exists()
    stage = data_root / f".evalsuite-prepare-{task}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        yield stage.resolve()
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if created_data_root and data_root.is_dir() and not any(data_root.iterdir()):
            data_root.rmdir()
