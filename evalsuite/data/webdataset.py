"""Webdataset tar shards read in place: CLIP_benchmark's ``clip-benchmark/wds_<name>`` copies (hub or local).

Layout (CLIP_benchmark's converter, ``clip_benchmark/webdataset_builder.py``): ``<root>/<split>/{0..N-1}.tar``
with ``<split>/nshards.txt`` = N, and ``classnames.txt``, ``zeroshot_classification_templates.txt``,
``dataset_type.txt`` in ``<root>``. A sample is the run of members sharing a key (name up to the first dot of the
base name, as webdataset groups them): one image (``webp``, ``png``, ``jpg``, ``jpeg``, first found in that order)
and a ``.cls`` label (classification) or a ``.txt`` of captions, one per line (retrieval).

Why not the ``webdataset`` package: its datasets are iterable streams (no length, no random access), split by
shard, while the suite needs a map-style listing (names, labels and file identities before the model loads;
ranks strided over sample indices; resumable subsets). So each shard is indexed once per listing with
``tarfile`` (headers only, plus the tiny label/caption members) and a worker reads an image by seeking to its
offset and hands its bytes to the pixel pipeline (an image item, ``data/base.py``: every decoder decodes them as
it would the file): no conversion, no copy, nothing written. Class names and templates are never taken from the
shards; ``classnames.txt`` is only checked against the task's own names.
"""

from __future__ import annotations

import logging
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import ConfigError, DamagedDataError, DataNotFoundError, DatasetUnavailableError
from .base import DataSource, ItemReader, Samples, SourceContext, read_data_text
from .captions import CaptionedSamples

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = ("webp", "png", "jpg", "jpeg")  # CLIP_benchmark's order of preference
TEXT_SUFFIXES = ("cls", "txt")  # read while indexing: a label or the captions
CLASSNAMES = "classnames.txt"
METADATA = (CLASSNAMES, "zeroshot_classification_templates.txt", "dataset_type.txt")
CLASSNAMES_CHECKS = ("exact", "off")


@dataclass(frozen=True)
class TarMember:
    """Where one member's bytes lie: a plain (uncompressed) tar read by offset, in any process."""

    shard: str  # path as listed (not resolved: a hub-cache snapshot's links keep their relative names)
    offset: int
    size: int

    def read(self) -> bytes:
        with open(self.shard, "rb") as f:
            f.seek(self.offset)
            data = f.read(self.size)
        if len(data) != self.size:
            raise OSError(f"{self.shard}: truncated ({len(data)} of {self.size} bytes at offset {self.offset})")
        return data


class MemberReader(ItemReader):
    """The listings' ``load``: a member's image item is its bytes (so the tensor/cuda decoders decode them as
    they would the file); called, it decodes them fully to RGB like ``load_image_file`` (truncated images raise)."""

    def read(self, member: TarMember) -> bytes:
        return member.read()


load_member_image = MemberReader()


@dataclass
class ShardSample:
    key: str
    members: dict[str, TarMember] = field(default_factory=dict)  # suffix (lower case) -> member
    texts: dict[str, bytes] = field(default_factory=dict)  # the TEXT_SUFFIXES members' contents


_INDEXED: dict[tuple[str, int, int], list[ShardSample]] = {}  # (path, size, mtime_ns) -> samples, this process


def index_shard(shard: Path) -> list[ShardSample]:
    """``read_shard``, once per process for an unchanged file: ``prepare`` plans and then lists, a run lists
    every task before the model loads (0.3 s for a shard of 10,000 samples written by webdataset, on this 2-core
    machine)."""
    try:
        st = os.stat(shard)
    except OSError as exc:
        raise DatasetUnavailableError(f"{shard}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    key = (str(shard), st.st_size, st.st_mtime_ns)
    if key not in _INDEXED:
        _INDEXED[key] = read_shard(shard, st.st_size)
    return _INDEXED[key]


def read_shard(shard: Path, file_size: int) -> list[ShardSample]:
    """The samples of one shard in member order. Non-files and ``__meta__`` names are skipped, as webdataset
    does; a key seen again after another key, a repeated suffix or a member running past the end of the file
    (a truncated download) is an error naming the shard and key."""
    samples: dict[str, ShardSample] = {}
    last: Optional[ShardSample] = None
    try:
        with open(shard, "rb") as f:
            members = scan_plain_tar(f, shard, file_size)
            if members is None:  # a header only tarfile understands (pax, GNU long names, ...)
                members = scan_with_tarfile(shard, file_size)
            for name, offset, size in members:
                folder, _, base = name.rpartition("/")
                if not folder and base.startswith("__") and base.endswith("__"):
                    continue
                stem, dot, suffix = base.partition(".")
                if not stem or not dot:
                    continue  # no key or no extension: webdataset skips these too
                key = f"{folder}/{stem}" if folder else stem
                if last is None or last.key != key:
                    if key in samples:
                        raise DatasetUnavailableError(f"{shard}: sample {key!r} is split (its members are not"
                                                      " adjacent in the tar)")
                    last = samples[key] = ShardSample(key)
                suffix = suffix.lower()
                if suffix in last.members:
                    raise DatasetUnavailableError(f"{shard}: sample {key!r} has two .{suffix} members")
                if offset + size > file_size:
                    raise DamagedDataError(f"{shard}: truncated inside sample {key!r} (.{suffix});"
                                           " download it again")
                last.members[suffix] = TarMember(str(shard), offset, size)
                if suffix in TEXT_SUFFIXES:
                    f.seek(offset)
                    last.texts[suffix] = f.read(size)
    except (tarfile.TarError, OSError) as exc:
        raise DatasetUnavailableError(f"{shard}: not a readable tar shard ({type(exc).__name__}: {exc})") from None
    return list(samples.values())


_USTAR, _GNU = b"ustar\x0000", b"ustar  \x00"


def scan_plain_tar(f, shard: Path, file_size: int) -> Optional[list[tuple[str, int, int]]]:
    """(name, data offset, size) of each regular file, read straight from the 512-byte headers and pax
    records (webdataset's writer adds one per member): 0.3 s for a 10,000-sample shard where tarfile takes
    1.2 s. None as soon as a header needs more (GNU long names, global pax headers, binary names): tarfile then
    reads the shard."""
    out, position, pax = [], 0, {}
    while True:
        f.seek(position)
        header = f.read(512)
        if header == bytes(512):
            return out
        if len(header) < 512:
            raise DamagedDataError(f"{shard}: truncated after {len(out)} members (no end-of-archive"
                                   " marker); download it again")
        magic, kind = header[257:265], header[156:157]
        if magic not in (_USTAR, _GNU) or kind not in (b"0", b"\0", b"5", b"x") or header[124] & 0x80:
            return None
        try:
            checksum = int(header[148:156].split(b"\0", 1)[0].strip() or b"0", 8)
            size = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        except ValueError:
            return None
        if checksum != sum(header[:148]) + 256 + sum(header[156:]):
            return None
        if kind == b"x":  # a pax header for the next member (webdataset's writer adds one to each: mtime)
            f.seek(position + 512)
            pax = pax_records(f.read(size))
            if pax is None or b"hdrcharset" in pax:  # binary names: tarfile's rules
                return None
            position += 512 + -(-size // 512) * 512
            continue
        name = header[:100].split(b"\0", 1)[0]
        prefix = header[345:500].split(b"\0", 1)[0] if magic == _USTAR else b""
        name = pax.get(b"path") or (prefix + b"/" + name if prefix else name)
        if b"size" in pax:
            if not pax[b"size"].isdigit():
                return None
            size = int(pax[b"size"])
        pax = {}
        if kind != b"5":
            out.append((name.decode("utf-8", "surrogateescape"), position + 512, size))
        if position + 512 + size > file_size:
            return out  # cut inside this member: read_shard names its sample
        position += 512 + -(-size // 512) * 512


def pax_records(data: bytes) -> Optional[dict[bytes, bytes]]:
    """``LEN key=value\\n`` records (LEN counts the whole record); None when malformed."""
    records, i = {}, 0
    try:
        while i < len(data) and data[i:i + 1] != b"\0":
            space = data.index(b" ", i)
            length = int(data[i:space])
            key, _, value = data[space + 1:i + length - 1].partition(b"=")
            records[key] = value
            i += length
    except ValueError:
        return None
    return records


def scan_with_tarfile(shard: Path, file_size: int) -> list[tuple[str, int, int]]:
    with tarfile.open(shard, "r:") as tar:
        members = [(info.name, info.offset_data, info.size) for info in tar if info.isreg()]
        # tarfile ends quietly at a cut-off header, so a shard cut at a member boundary would just list fewer
        # samples: a complete tar ends with zero blocks
        tar.fileobj.seek(tar.offset)
        if tar.fileobj.read(512) != bytes(512):
            raise DamagedDataError(f"{shard}: truncated after {len(members)} members (no end-of-archive"
                                   " marker); download it again")
    return members


@dataclass(frozen=True)
class ShardSet:
    root: Path  # the dataset folder: classnames.txt, dataset_type.txt; file identities are relative to it
    shards: list[Path]

    def name(self, shard: Path, key: str) -> str:
        """A sample's display and matching name, the same wherever the copy lives: ``test/0.tar:s0000000``."""
        return f"{os.path.relpath(shard, self.root)}:{key}"


def _shard_order(path: Path) -> tuple:
    return (not path.stem.isdigit(), int(path.stem) if path.stem.isdigit() else 0, path.name)


def find_shards(folder: Path, split: str) -> Optional[ShardSet]:
    """The shards under ``folder``: ``folder/<split>/`` (the CLIP_benchmark and DataComp layouts) or ``folder``
    itself when it is the split folder; None when there are none. With ``nshards.txt`` exactly shards 0..N-1 are
    read, as CLIP_benchmark does, and a missing one is an error (never fewer samples without a word)."""
    if _has_shards(folder / split):
        split_dir, root = folder / split, folder
    elif _has_shards(folder):  # the split folder itself: its parent holds the metadata when it is named so
        split_dir, root = folder, folder.parent if folder.name == split else folder
    else:
        return None
    count_file = split_dir / "nshards.txt"
    if count_file.is_file():
        try:
            count = int(count_file.read_text(encoding="utf-8").strip())
        except (ValueError, UnicodeDecodeError):
            raise DatasetUnavailableError(f"{count_file}: expected the number of shards") from None
        shards = [split_dir / f"{i}.tar" for i in range(count)]
        missing = [s.name for s in shards if not s.is_file()]
        if missing:
            raise DamagedDataError(f"{split_dir}: {len(missing)} of the {count} shards named by nshards.txt"
                                   f" are missing ({', '.join(missing[:5])}); download them again")
    else:
        shards = sorted(split_dir.glob("*.tar"), key=_shard_order)
    return ShardSet(root, shards)


def _has_shards(folder: Path) -> bool:
    return folder.is_dir() and ((folder / "nshards.txt").is_file() or any(folder.glob("*.tar")))


def read_classnames(path: Path) -> list[str]:
    """classnames.txt as CLIP_benchmark reads it: one name per line, each stripped (trailing blank lines
    dropped)."""
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    while names and not names[-1]:
        names.pop()
    return names


def check_classnames(path: Path, expected: list[str], task: str) -> None:
    """The shards' labels index classnames.txt; they must index the task's names, so the two lists must agree."""
    if not path.is_file():
        raise DatasetUnavailableError(f"task {task!r}: {path} not found, so the shards' labels cannot be checked"
                                      " against the task's class names (classnames_check: off skips the check)")
    try:
        found = read_classnames(path)
    except (UnicodeDecodeError, OSError) as exc:
        raise DatasetUnavailableError(f"{path}: not readable as UTF-8 text ({type(exc).__name__})") from None
    if found == expected:
        return
    i = next((i for i, (a, b) in enumerate(zip(found, expected)) if a != b), min(len(found), len(expected)))
    def show(names: list[str]) -> str:
        return repr(names[i][:100]) if i < len(names) else "nothing (the list ends)"
    raise DatasetUnavailableError(
        f"task {task!r}: {path} differs from the task's class names at index {i}: the file has {show(found)},"
        f" the task {show(expected)} ({len(found)} vs {len(expected)} names). The shards' labels follow that"
        " file, so they would be scored against the wrong classes."
    )


# ---------------------------------------------------------------------------------------------------------------
# sources


@dataclass(frozen=True)
class WebdatasetCaptionsArgs:
    repo: str = ""  # Hugging Face dataset repo, e.g. clip-benchmark/wds_flickr30k ("" with a local `path` only)
    revision: str = "main"  # a branch, or a 40-hex commit (pinned)
    split: str = "test"
    path: str = ""  # a local folder of shards (absolute, or relative to --data-root); then only that is read
    instructions: str = ""  # shown when the data is missing


@dataclass(frozen=True)
class WebdatasetArgs(WebdatasetCaptionsArgs):
    # exact: classnames.txt must equal the task's class names; off: for copies whose file is known to be wrong
    classnames_check: str = "exact"


class WebdatasetCaptionsSource(DataSource):
    """``kind: webdataset_captions``: images with their captions (``.txt``), e.g. clip-benchmark/wds_flickr30k."""

    Args = WebdatasetCaptionsArgs
    dataset_type = "retrieval"  # dataset_type.txt, where present, must say this (absent: classification)

    def __init__(self, spec, source) -> None:
        super().__init__(spec, source)
        where = f"{spec.file} (source {self.kind!r})"
        if not self.args.repo and not self.args.path:
            raise ConfigError(f"{where}: give 'repo' (a Hugging Face dataset) or 'path' (a local folder of shards)")
        if self.args.repo and (self.args.repo.count("/") != 1 or not all(self.args.repo.split("/"))):
            raise ConfigError(f"{where}: 'repo' must be owner/name, got {self.args.repo!r}")
        if not self.args.revision or not self.args.split:
            raise ConfigError(f"{where}: 'revision' and 'split' must not be empty")

    # -- where the shards are ------------------------------------------------------------------------------

    def local_candidates(self, data_root: Path) -> list[Path]:
        """``wds_<name>`` (CLIP_benchmark) and ``<name>`` (DataComp) for the repo's name without ``wds_`` and for
        the task name, then --data-root itself when it is such a folder (or its split folder): a --data-root at
        one copy must not serve every webdataset task of the run (CIFAR-10 and CIFAR-100 shards look alike)."""
        short = self.args.repo.split("/")[-1].removeprefix("wds_") if self.args.repo else ""
        names = [n for n in dict.fromkeys([short, self.spec.name]) if n]
        folders = [f"wds_{n}" for n in names] + names
        itself = data_root.parent if data_root.name == self.args.split else data_root
        named = itself.resolve().name in folders or itself.name in folders
        return [data_root / f for f in folders] + ([data_root] if named else [])

    def locate(self, data_root: Path) -> tuple[Optional[ShardSet], list[str]]:
        """The first place holding the split's shards (a ``path`` alone when given; else local folders, then
        the Hugging Face cache, offline) and, when none does, what was looked at."""
        if self.args.path:
            folder = Path(self.args.path) if Path(self.args.path).is_absolute() else data_root / self.args.path
            return find_shards(folder.resolve(), self.args.split), [str(folder)]
        for folder in self.local_candidates(data_root):
            found = find_shards(folder.resolve(), self.args.split) if folder.is_dir() else None
            if found is not None:
                return found, []
        looked = [str(c) for c in self.local_candidates(data_root)]
        snapshot, why = self.cached_snapshot()
        if snapshot is not None:
            found = find_shards(snapshot, self.args.split)
            if found is not None:
                return found, []
            why = f"{snapshot} has no {self.args.split}/ shards"
        return None, looked + [f"the Hugging Face cache ({why})"]

    def patterns(self) -> list[str]:
        return [f"{self.args.split}/*", *METADATA]

    def cached_snapshot(self) -> tuple[Optional[Path], str]:
        """The repo's snapshot in the Hugging Face cache (HF_HOME / HF_HUB_CACHE), found without the network."""
        if not self.args.repo:
            return None, "no repo"
        from huggingface_hub import snapshot_download

        try:
            folder = snapshot_download(self.args.repo, repo_type="dataset", revision=self.args.revision,
                                       allow_patterns=self.patterns(), local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - not cached, incomplete, unreadable: all mean "not here"
            if type(exc).__name__ == "LocalEntryNotFoundError":
                return None, f"{self.args.repo}@{self.args.revision} not downloaded"
            return None, _one_line(exc)
        return Path(folder), ""

    # -- DataSource ------------------------------------------------------------------------------------------

    def samples(self, ctx: SourceContext) -> Samples:
        found, looked = self.locate(ctx.data_root)
        if found is None:
            raise DataNotFoundError(self.missing_message(looked))
        if not found.shards:
            raise DatasetUnavailableError(f"task {self.spec.name!r}: {found.root} holds no .tar shard")
        self.check_metadata(found, ctx)
        return self.listing(found, ctx)

    def missing_message(self, looked: list[str]) -> str:
        split = self.args.split
        if self.args.path:
            msg = f"task {self.spec.name!r}: no {split}/*.tar shards in {looked[0]} (source 'path')."
        else:
            msg = (f"task {self.spec.name!r}: webdataset shards of split {split!r} not found; looked in"
                   f" {', '.join(looked)}. Run `evalsuite prepare {self.spec.name}` to download {self.args.repo}"
                   f"@{self.args.revision} into the Hugging Face cache, or point --data-root at a folder holding"
                   f" {split}/*.tar named like one of those folders.")
        return f"{msg} {self.args.instructions}".strip()

    def check_metadata(self, found: ShardSet, ctx: SourceContext) -> None:
        type_file = found.root / "dataset_type.txt"  # written by CLIP_benchmark's converter for retrieval sets
        kind = read_data_text(type_file, "CLIP_benchmark's dataset type").strip().lower() if type_file.is_file() \
            else ""
        if kind and kind != self.dataset_type:
            raise DatasetUnavailableError(f"task {self.spec.name!r}: {found.root} holds a {kind[:40]!r} dataset"
                                          f" (dataset_type.txt); source kind {self.kind!r} reads {self.dataset_type}")

    def listing(self, found: ShardSet, ctx: SourceContext) -> Samples:
        items, names, captions = [], [], []
        for shard in found.shards:
            for sample in index_shard(shard):
                items.append(image_member(shard, sample))
                names.append(found.name(shard, sample.key))
                # CLIP_benchmark's split into captions
                texts = [t.strip() for t in member_text(shard, sample, "txt", "captions").splitlines()]
                if not any(texts):
                    raise DatasetUnavailableError(f"{shard}: sample {sample.key!r} has no caption")
                captions.append(texts)
        log.info("task %s: %d images, %d captions in %d shards under %s", self.spec.name, len(items),
                 sum(map(len, captions)), len(found.shards), found.root)
        return CaptionedSamples(items, list(range(len(items))), load_member_image, names, captions,
                                root=str(found.root), data_files=tuple(str(s) for s in found.shards))

    def fetch(self, ctx: SourceContext) -> None:
        """``evalsuite prepare``: download the split (and the metadata files) into the Hugging Face cache unless
        a copy is already found; then runs read it there. Nothing is copied under --data-root."""
        found, _ = self.locate(ctx.data_root)
        if found is None and not self.args.path:
            self.download()  # prepare lists the samples next, from the cache
            return
        try:
            self.samples(ctx)  # found (checked here), or a `path` that holds nothing: its message
        except DamagedDataError as exc:
            if self.args.path or found is None or not _in_hub_cache(found.root):
                raise  # the user's own copy: theirs to replace
            # the hub cache trusts a file once it is there: a cut-off shard would be served again and again
            log.warning("task %s: the Hugging Face cache's copy is damaged (%s); downloading it again",
                        self.spec.name, _one_line(exc))
            self.download(force=True)

    def download(self, force: bool = False) -> Path:
        import huggingface_hub
        from huggingface_hub import snapshot_download

        try:
            folder = snapshot_download(self.args.repo, repo_type="dataset", revision=self.args.revision,
                                       allow_patterns=self.patterns(), force_download=force)
        except Exception as exc:  # noqa: BLE001 - offline, unknown repo or revision, auth, disk: one line each
            offline = getattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
            hint = (" HF_HUB_OFFLINE is set: unset it to download, or put the shards under --data-root."
                    if offline else "")
            raise DatasetUnavailableError(f"task {self.spec.name!r}: could not download {self.args.repo}"
                                          f"@{self.args.revision} from the Hugging Face hub: {_one_line(exc)}.{hint}"
                                          ) from None
        log.info("task %s: %s@%s in %s", self.spec.name, self.args.repo, self.args.revision, folder)
        return Path(folder)


def _in_hub_cache(folder: Path) -> bool:
    """``folder`` is a snapshot in the Hugging Face cache (downloaded by ``prepare``, not the user's copy)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE).resolve() in Path(folder).resolve().parents


class WebdatasetSource(WebdatasetCaptionsSource):
    """``kind: webdataset``: classification shards (image + ``.cls``), e.g. clip-benchmark/wds_cifar10."""

    Args = WebdatasetArgs
    dataset_type = "classification"

    def __init__(self, spec, source) -> None:
        super().__init__(spec, source)
        if self.args.classnames_check not in CLASSNAMES_CHECKS:
            raise ConfigError(f"{spec.file} (source {self.kind!r}): classnames_check must be one of"
                              f" {', '.join(CLASSNAMES_CHECKS)}, got {self.args.classnames_check!r}")

    def check_metadata(self, found: ShardSet, ctx: SourceContext) -> None:
        super().check_metadata(found, ctx)
        if self.args.classnames_check == "exact":
            expected = list(ctx.classnames or ctx.label_keys)  # no separate names: the keys are the names
            check_classnames(found.root / CLASSNAMES, expected, self.spec.name)

    def listing(self, found: ShardSet, ctx: SourceContext) -> Samples:
        num_classes = len(ctx.label_keys)
        items, labels, names = [], [], []
        for shard in found.shards:
            for sample in index_shard(shard):
                items.append(image_member(shard, sample))
                names.append(found.name(shard, sample.key))
                text = member_text(shard, sample, "cls", "label").strip()
                if not (text.isascii() and text.isdigit()) or int(text) >= num_classes:
                    raise DatasetUnavailableError(f"{shard}: sample {sample.key!r} has label {text[:20]!r}, not a"
                                                  f" class index 0..{num_classes - 1}")
                labels.append(int(text))
        log.info("task %s: %d samples in %d shards under %s", self.spec.name, len(items), len(found.shards),
                 found.root)
        return Samples(items, labels, load_member_image, names, root=str(found.root),
                       data_files=tuple(str(s) for s in found.shards))


def image_member(shard: Path, sample: ShardSample) -> TarMember:
    suffix = next((s for s in IMAGE_SUFFIXES if s in sample.members), None)
    if suffix is None:
        raise DatasetUnavailableError(f"{shard}: sample {sample.key!r} has no image ({'/'.join(IMAGE_SUFFIXES)};"
                                      f" members: {sorted(sample.members)})")
    return sample.members[suffix]


def member_text(shard: Path, sample: ShardSample, suffix: str, what: str) -> str:
    """The sample's ``.<suffix>`` member as text; a sample without it is an error naming shard and key."""
    if suffix not in sample.texts:
        raise DatasetUnavailableError(f"{shard}: sample {sample.key!r} has no .{suffix} {what}"
                                      f" (members: {sorted(sample.members)})")
    return decode_text(shard, sample, suffix)


def decode_text(shard: Path, sample: ShardSample, suffix: str) -> str:
    try:
        return sample.texts[suffix].decode("utf-8")
    except UnicodeDecodeError:
        raise DatasetUnavailableError(f"{shard}: sample {sample.key!r}: .{suffix} is not UTF-8 text") from None


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
