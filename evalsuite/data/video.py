"""Videos classified from one frame: the frame rules, exact frame readers, a frame cache, the source kind.

``vissl`` (the default, the papers' protocol) is vissl's own middle-frame extraction
(``extra_scripts/datasets/create_k700_data_files.py`` / ``create_ucf101_data_files.py``, which the EVA-CLIP README
cites), step for step: open the clip with PyAV, take ``nb_frames`` from the container header
(``streams.video[0].frames``, FFmpeg's nb_frames, 0 when the container does not declare it), decode sequentially
and keep the frame ``i`` with ``i - 1 == nb_frames // 2``, stopping there; then the frame goes through a JPEG
file saved with PIL's defaults (quality 75), since those JPEGs are what the models were scored on. What follows
from the header count (written down in docs/video_frames.md): a header that declares 0 frames (MKV, WebM)
gives frame 1; a header larger than the decodable frames (a truncated MP4) means the target is never reached:
the clip is an error, as in vissl (counted and listed, never dropped); an edit list makes the header count
differ from what is decoded, and vissl's frame is kept all the same. ``decoded_middle`` is evalsuite's
earlier rule: frames counted by decoding (never the header), the same ``count // 2 + 1`` index, the lossless
frame. ``center`` (``count // 2``) and ``first`` (0) are controls, lossless as well.

Decoding is sequential: seeking decoders can return a neighbouring frame on files with packed B-frames (XVID
AVI). decord is not used for that reason (vissl itself uses PyAV).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from PIL import Image

from ..atomic import atomic_path
from ..errors import ConfigError, DatasetUnavailableError
from ..resources import default_cache_dir
from .base import DataSource, ItemReader, LocalArgs, Samples, SourceContext, locate, read_data_text
from .file_list import read_file_list

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv")
FRAME_RULES = ("vissl", "decoded_middle", "center", "first")
READER_VERSION = 2  # part of the frame-cache key and the video task fingerprint: bump when a reader changes


def frame_format(rule: str) -> str:
    """How the chosen frame reaches the model: vissl's JPEG file (PIL defaults), or the decoded frame itself."""
    return "jpeg_pil_default" if rule == "vissl" else "lossless"


class VideoDecodeError(Exception):
    """A clip with no decodable frames, too few for the rule, or one the decoder rejects."""


def frame_index(num_frames: int, rule: str = "decoded_middle") -> int:
    """The 0-based index of the frame a decoded-count rule picks from a clip of ``num_frames`` decoded frames.

    ``decoded_middle``: ``num_frames // 2 + 1`` (vissl's index, with the count taken by decoding);
    ``center``: ``num_frames // 2``; ``first``: 0 (a control). (``vissl`` takes its count from the header and is
    read by ``vissl_frame``; the same index applies when the header is right.)
    """
    if rule not in FRAME_RULES:
        raise ValueError(f"unknown frame rule {rule!r}; known: {', '.join(FRAME_RULES)}")
    index = {"vissl": num_frames // 2 + 1, "decoded_middle": num_frames // 2 + 1, "center": num_frames // 2,
             "first": 0}[rule]
    if num_frames <= 0 or index >= num_frames:
        raise VideoDecodeError(f"{num_frames} decodable frame(s): too few for the {rule!r} rule")
    return index


def count_frames(path: str | os.PathLike) -> int:
    """Frames the decoder actually produces (never the container's header count)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def read_frame(path: str | os.PathLike, index: int) -> Image.Image:
    """Frame ``index`` (0-based, in decode/presentation order as ffmpeg numbers them) as an RGB image."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if i == index:
                return rgb_image(frame)
    raise VideoDecodeError(f"{path}: frame {index} not reached")


def rgb_image(frame) -> Image.Image:
    """A decoded frame as an RGB PIL image: ``frame.to_image()``'s conversion (same swscale settings, same
    pixels) through a reformatter of its own with one thread. ``to_image`` uses PyAV's per-thread swscale
    context, which keeps a thread pool; a DataLoader worker forked after its parent converted a frame (a --workers
    0 run, a notebook, a test) inherits that context without its threads and waits forever in its first frame."""
    from av.video.reformatter import VideoReformatter

    rgb = VideoReformatter().reformat(frame, format="rgb24", threads=1)
    return rgb.to_image()  # already rgb24: a no-op that leaves PyAV's shared context alone


def vissl_frame(path: str | os.PathLike) -> Image.Image:
    """The frame vissl's ``_extract_middle_frame`` returns: header count, one sequential decode stopped at frame
    ``i`` with ``i - 1 == nb_frames // 2``. vissl returns None when that frame is never reached (its Kinetics
    script lists the clip as an error; its UCF script crashes on it): here a VideoDecodeError."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise VideoDecodeError("no video stream")
        stream = container.streams.video[0]
        nb_frames = stream.frames
        decoded = 0
        for i, frame in enumerate(container.decode(stream)):
            decoded = i + 1
            if i - 1 == nb_frames // 2:
                return rgb_image(frame)
    raise VideoDecodeError(f"the container declares {nb_frames} frames, so vissl's rule wants frame"
                           f" {nb_frames // 2 + 1}, but only {decoded} decode")


def vissl_jpeg(image: Image.Image) -> bytes:
    """The bytes of the JPEG file vissl writes for a frame (``frame.save(<name>.jpg)``: PIL's defaults)."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG")
    return buf.getvalue()


def decode_jpeg_file(data: bytes) -> Image.Image:
    """A frame JPEG as the evaluation loaded it: PIL open + convert("RGB")."""
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")


def read_frame_bytes(path: str | os.PathLike, rule: str = "vissl") -> tuple[bytes, str]:
    """The chosen frame as stored in the frame cache: (JPEG bytes, "jpg") for vissl, (PNG bytes, "png") else.

    Raises VideoDecodeError for empty, corrupt or too-short clips (callers record them as failures)."""
    try:
        if rule == "vissl":
            return vissl_jpeg(vissl_frame(path)), "jpg"
        frame = read_frame(path, frame_index(count_frames(path), rule))
    except VideoDecodeError:
        raise
    except Exception as exc:  # av.error.* and IndexError (no video stream) alike
        raise VideoDecodeError(f"{type(exc).__name__}: {exc}") from None
    buf = io.BytesIO()
    frame.save(buf, format="PNG")
    return buf.getvalue(), "png"


def read_middle_frame(path: str | os.PathLike, rule: str = "vissl") -> Image.Image:
    """The frame the rule picks, as the model sees it (``vissl``: after vissl's JPEG file)."""
    data, _ = read_frame_bytes(path, rule)
    return decode_jpeg_file(data) if rule == "vissl" else Image.open(io.BytesIO(data)).convert("RGB")


def pyav_version() -> str:
    try:
        import av

        return av.__version__
    except ImportError:
        return "none"


def frame_cache_key(path: str | os.PathLike, rule: str) -> str:
    """File identity (resolved path, size, modification time) + rule + reader, PyAV and Pillow versions (Pillow
    writes the cached frame: vissl's JPEG, else a PNG)."""
    from PIL import __version__ as pillow_version

    p = Path(path).resolve()
    stat = p.stat()
    payload = (f"{p}\0{stat.st_size}\0{stat.st_mtime_ns}\0{rule}\0{READER_VERSION}\0{pyav_version()}"
               f"\0{pillow_version}")
    return hashlib.sha256(payload.encode()).hexdigest()


class CachedFrameLoader(ItemReader):
    """Picklable ``load`` for Samples: the rule's frame from the cache, else decoded and cached. The cache holds
    what the model is fed from: for ``vissl`` the JPEG file vissl would have written (25-60 KB), else a PNG. The
    image item (``read``) is those bytes, so the tensor/cuda decoders decode the JPEG as they would a file;
    called, it returns them decoded (PIL open + convert("RGB"), as the evaluation loaded the frame files).

    An entry is ``video-frames/<key[:2]>/<key>.<sha256 of its bytes, 16 hex>.<jpg|png>``: the key names the clip
    (frame_cache_key), the digest in the name is checked on every read, so a damaged entry (truncated, bit flip;
    decodable or not) logs one warning, is removed and the clip decoded again. Runs inside DataLoader workers, so
    decoding is parallel; writes are atomic (temp file + rename) and the name follows from the bytes, so workers
    and concurrent runs never see half-written or mixed frames. A cache that cannot be written is one warning per
    loader; the frames are still used.
    """

    def __init__(self, rule: str, cache_dir: Optional[Path]) -> None:
        self.rule, self.cache_dir = rule, cache_dir
        self.writable = True  # false after a failed write: warned once, not retried

    @property
    def suffix(self) -> str:
        return "jpg" if self.rule == "vissl" else "png"

    def entry_place(self, video: str) -> Optional[tuple[Path, str]]:
        """(folder, key) of the clip's entries; None without a cache."""
        if self.cache_dir is None:
            return None
        key = frame_cache_key(video, self.rule)
        return self.cache_dir / "video-frames" / key[:2], key

    def _cached(self, folder: Path, key: str, video: str) -> Optional[bytes]:
        for entry in folder.glob(f"{key}.*.{self.suffix}"):
            try:
                data = entry.read_bytes()
                if hashlib.sha256(data).hexdigest()[:16] != entry.name.split(".")[1]:
                    raise ValueError("its bytes do not match the checksum in its name")
                return data
            except Exception as exc:  # noqa: BLE001 - a damaged entry: decode the clip again
                log.warning("frame cache entry %s unreadable (%s: %s); decoding %s again", entry,
                            type(exc).__name__, exc, video)
                try:
                    entry.unlink(missing_ok=True)
                except OSError:
                    pass  # a read-only cache: the entry stays, and is checked (and skipped) again
        return None

    def _store(self, folder: Path, key: str, data: bytes) -> None:
        name = f"{key}.{hashlib.sha256(data).hexdigest()[:16]}.{self.suffix}"
        try:
            with atomic_path(folder / name) as tmp:
                Path(tmp).write_bytes(data)
            (folder / f"{key}.{self.suffix}").unlink(missing_ok=True)  # its entry in the earlier, unchecked naming
        except OSError as exc:
            self.writable = False
            log.warning("frame cache %s not written (%s); frames are decoded without it", folder.parent, exc)

    def read(self, video: str) -> bytes:
        """The frame's JPEG (vissl) or PNG bytes: from the cache, else decoded from the clip and cached."""
        place = self.entry_place(video)
        if place is not None:
            data = self._cached(*place, video)
            if data is not None:
                return data
        data, _ = read_frame_bytes(video, self.rule)
        if place is not None and self.writable:
            self._store(*place, data)
        return data


LIST_DIRS = ("", "ucfTrainTestlist")  # where UCF-101's list files are looked for, relative to the dataset folder
CLIP_DIRS = ("", "UCF-101")  # where the clips' <Class>/<clip> paths start (UCF101.rar unpacks to UCF-101/)


def folder_key(name: str) -> str:
    """A class folder name in one canonical spelling: Kinetics folders come as 'hurling (sport)',
    'hurling_(sport)' or, after vissl's clean_label, 'hurling_sport' — all the same class."""
    for c in "()":
        name = name.replace(c, "")
    return name.replace(" ", "_").strip("_")


@dataclass(frozen=True)
class VideoFolderArgs(LocalArgs):
    # <root>/<class key>/<video>; or a CSV manifest (path,label) in the dataset folder; or list files of
    # <Class>/<clip> lines (UCF-101's testlist0N.txt format; anything after a space is ignored), looked for in the
    # dataset folder or its ucfTrainTestlist/, the clips under the dataset folder or its UCF-101/
    manifest: str = ""
    list_files: list[str] = field(default_factory=list)
    # optional: a classInd.txt ("1 ApplyEyeMakeup" lines) checked against the classnames file's key order
    class_index_file: str = ""
    # vissl (vissl's extraction: header nb_frames // 2 + 1, then its JPEG; the papers' protocol) | decoded_middle
    # (decoded count // 2 + 1, lossless) | center (decoded count // 2) | first (0, a control)
    frame_rule: str = "vissl"
    extensions: Optional[list[str]] = None
    cache_frames: bool = True  # keep the chosen frames under $EVALSUITE_CACHE_DIR (default ~/.cache/evalsuite)


class VideoFolderSource(DataSource):
    """Each sample is one video, loaded as the single frame the rule picks."""

    Args = VideoFolderArgs

    def __init__(self, spec, source) -> None:
        super().__init__(spec, source)
        if self.args.frame_rule not in FRAME_RULES:
            raise ConfigError(f"{spec.file}: source.args.frame_rule must be one of {FRAME_RULES},"
                              f" got {self.args.frame_rule!r}")
        self.extensions = tuple(e.lower() for e in (self.args.extensions or VIDEO_EXTENSIONS))

    def _is_video(self, p: Path) -> bool:
        return p.suffix.lower() in self.extensions and (p.is_file() or p.is_symlink())  # as data/image_folder.py

    def _index(self, label_keys: list[str]) -> dict[str, int]:
        index = {}
        for i, key in enumerate(label_keys):
            canonical = folder_key(key)
            if canonical in index:
                raise ConfigError(f"{self.spec.file}: class keys {label_keys[index[canonical]]!r} and {key!r} name"
                                  " the same folder")
            index[canonical] = i
        return index

    def _class_of(self, folder_name: str, index: dict[str, int]) -> Optional[int]:
        return index.get(folder_key(folder_name))

    def _list_path(self, root: Path, name: str) -> Optional[Path]:
        return next((root / d / name for d in LIST_DIRS if (root / d / name).is_file()), None)

    def samples(self, ctx: SourceContext) -> Samples:
        index = self._index(ctx.label_keys)
        data_files: tuple[str, ...] = ()
        if self.args.manifest:
            root = locate(self.spec, self.args, ctx.data_root, lambda d: (d / self.args.manifest).is_file())
            listed = read_file_list(root / self.args.manifest, ctx.label_keys, self.spec.name)
            paths, labels = listed.items, listed.labels
        elif self.args.list_files:
            root = locate(self.spec, self.args, ctx.data_root,
                          lambda d: self._list_path(d, self.args.list_files[0]) is not None)
            self._check_class_index(root, ctx.label_keys)
            paths, labels, data_files = self._from_list_files(root, index)
        else:
            root = locate(self.spec, self.args, ctx.data_root,
                          lambda d: any(self._class_of(c.name, index) is not None for c in d.iterdir() if c.is_dir()))
            folders = sorted(d for d in root.iterdir() if d.is_dir())
            unknown = [d.name for d in folders if self._class_of(d.name, index) is None]
            if unknown:
                raise DatasetUnavailableError(f"{root}: folders {unknown[:5]} are not class keys of task"
                                              f" {self.spec.name!r} (classnames file {self.spec.classnames!r})")
            pairs = [(str(p), self._class_of(d.name, index)) for d in folders for p in sorted(d.iterdir())
                     if self._is_video(p)]
            paths, labels = [p for p, _ in pairs], [label for _, label in pairs]
        cache = default_cache_dir() if self.args.cache_frames else None
        log.info("task %s: %d videos under %s (frame rule %s)", self.spec.name, len(paths), root,
                 self.args.frame_rule)
        return Samples(list(paths), list(labels), CachedFrameLoader(self.args.frame_rule, cache), list(paths),
                       root=str(root), data_files=data_files)

    def _check_class_index(self, root: Path, label_keys: list[str]) -> None:
        """UCF-101's classInd.txt numbers the classes; the classnames file's key order must be that numbering."""
        if not self.args.class_index_file:
            return
        path = self._list_path(root, self.args.class_index_file)
        if path is None:
            return  # optional: the class folders still map by name
        text = read_data_text(path, "UCF-101's class index (lines '<number> <class>')")
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            number, _, name = line.strip().partition(" ")
            position = int(number) - 1 if number.isdigit() else -1
            if not 0 <= position < len(label_keys) or folder_key(label_keys[position]) != folder_key(name):
                raise DatasetUnavailableError(
                    f"{path}:{lineno}: class {number} is {name!r}, but the classnames file"
                    f" {self.spec.classnames!r} has {label_keys[position] if 0 <= position < len(label_keys) else 'no'}"
                    f" class at that position; labels would be shifted")

    def _from_list_files(self, root: Path, index: dict[str, int]) -> tuple[list[str], list[int], tuple[str, ...]]:
        clip_root = next((root / d for d in CLIP_DIRS if d and (root / d).is_dir()), root)
        paths, labels, seen, files = [], [], {}, []
        for name in self.args.list_files:
            list_path = self._list_path(root, name)
            if list_path is None:
                raise DatasetUnavailableError(
                    f"task {self.spec.name!r}: list file {name} not found in {root} or {root / 'ucfTrainTestlist'}"
                    f" (needs all of {', '.join(self.args.list_files)}). {self.args.instructions}")
            files.append(str(list_path))
            text = read_data_text(list_path, "a split list (one '<class>/<clip>' path per line)")
            for lineno, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                relative = line.split()[0]
                label = self._class_of(relative.split("/")[0], index)
                if label is None:
                    raise DatasetUnavailableError(f"{list_path}:{lineno}: {relative!r} is not under a class folder"
                                                  f" of task {self.spec.name!r}")
                if relative in seen:
                    raise DatasetUnavailableError(f"{list_path}:{lineno}: {relative!r} is listed twice (first in"
                                                  f" {seen[relative]}); the test lists must be disjoint")
                seen[relative] = f"{list_path.name}:{lineno}"
                paths.append(str(clip_root / relative))
                labels.append(label)
        return paths, labels, tuple(files)
