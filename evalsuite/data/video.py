"""Videos classified from one frame: the frame-index rule, an exact frame reader, a frame cache, the source kind.

Frames are decoded sequentially with PyAV (FFmpeg's decoders), counting every decoded frame: the container's frame
count can be 0 or wrong, and seeking decoders can return a neighbouring frame on files with packed B-frames (XVID
AVI). decord is not used for this reason; sequential decoding is what ffmpeg itself does, and the tests compare
the frames bit for bit with the ffmpeg binary.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from PIL import Image

from ..atomic import atomic_path
from ..errors import ConfigError, DatasetUnavailableError
from ..resources import default_cache_dir
from .base import DataSource, LocalArgs, Samples, SourceContext, locate
from .file_list import read_file_list

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv")
FRAME_RULES = ("vissl", "center", "first")
READER_VERSION = 1  # part of the frame-cache key: bump when the reader's output could change


class VideoDecodeError(Exception):
    """A clip with no decodable frames, too few for the rule, or one the decoder rejects."""


def frame_index(num_frames: int, rule: str = "vissl") -> int:
    """The 0-based index of the frame the rule picks from a clip of ``num_frames`` decoded frames.

    ``vissl``: vissl's extraction keeps the frame ``i`` (0-based) with ``i - 1 == num_frames // 2``, i.e.
    ``num_frames // 2 + 1`` (the EVA-CLIP protocol). ``center``: ``num_frames // 2``. ``first``: 0 (a control).
    """
    if rule not in FRAME_RULES:
        raise ValueError(f"unknown frame rule {rule!r}; known: {', '.join(FRAME_RULES)}")
    index = {"vissl": num_frames // 2 + 1, "center": num_frames // 2, "first": 0}[rule]
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
                return frame.to_image()
    raise VideoDecodeError(f"{path}: frame {index} not reached")


def read_middle_frame(path: str | os.PathLike, rule: str = "vissl") -> Image.Image:
    """The frame the rule picks (``vissl``: 0-based ``nb_frames // 2 + 1``), counting frames by decoding them.

    Raises VideoDecodeError for empty, corrupt or too-short clips (callers record them as failures).
    """
    try:
        return read_frame(path, frame_index(count_frames(path), rule))
    except VideoDecodeError:
        raise
    except Exception as exc:  # av.error.* and IndexError (no video stream) alike
        raise VideoDecodeError(f"{type(exc).__name__}: {exc}") from None


def frame_cache_key(path: str | os.PathLike, rule: str) -> str:
    """File identity (resolved path, size, modification time) + rule + reader version."""
    p = Path(path).resolve()
    stat = p.stat()
    payload = f"{p}\0{stat.st_size}\0{stat.st_mtime_ns}\0{rule}\0{READER_VERSION}"
    return hashlib.sha256(payload.encode()).hexdigest()


class CachedFrameLoader:
    """Picklable ``load`` for Samples: the rule's frame from the cache (PNG, lossless), else decoded and cached.

    Runs inside DataLoader workers, so decoding is parallel; writes are atomic (temp file + rename), so workers and
    concurrent runs never see half-written frames.
    """

    def __init__(self, rule: str, cache_dir: Optional[Path]) -> None:
        self.rule, self.cache_dir = rule, cache_dir

    def cached_path(self, video: str) -> Optional[Path]:
        if self.cache_dir is None:
            return None
        key = frame_cache_key(video, self.rule)
        return self.cache_dir / "video-frames" / key[:2] / f"{key}.png"

    def __call__(self, video: str) -> Image.Image:
        cached = self.cached_path(video)
        if cached is not None and cached.is_file():
            with Image.open(cached) as img:
                return img.convert("RGB")
        frame = read_middle_frame(video, self.rule)
        if cached is not None:
            with atomic_path(cached) as tmp:
                frame.save(tmp, format="PNG")
        return frame


@dataclass(frozen=True)
class VideoFolderArgs(LocalArgs):
    # <root>/<class key>/<video>; or a CSV manifest (path,label) in the dataset folder; or a list file of
    # <class key>/<video> lines (UCF-101's testlist01.txt format; anything after a space is ignored)
    manifest: str = ""
    list_file: str = ""
    # vissl (0-based nb_frames // 2 + 1, the paper's protocol) | center (nb_frames // 2) | first (0, a control)
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

    def _class_of(self, folder_name: str, index: dict[str, int]) -> Optional[int]:
        """A class folder is named by its key, or by the key with '_' written as ' ' (Kinetics downloads)."""
        return index.get(folder_name, index.get(folder_name.replace(" ", "_")))

    def samples(self, ctx: SourceContext) -> Samples:
        index = {k: i for i, k in enumerate(ctx.label_keys)}
        if self.args.manifest:
            root = locate(self.spec, self.args, ctx.data_root, lambda d: (d / self.args.manifest).is_file())
            listed = read_file_list(root / self.args.manifest, ctx.label_keys, self.spec.name)
            paths, labels = listed.items, listed.labels
        elif self.args.list_file:
            root = locate(self.spec, self.args, ctx.data_root, lambda d: (d / self.args.list_file).is_file())
            paths, labels = self._from_list_file(root, index)
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
                       root=str(root))

    def _from_list_file(self, root: Path, index: dict[str, int]) -> tuple[list[str], list[int]]:
        list_path = root / self.args.list_file
        paths, labels = [], []
        for lineno, line in enumerate(list_path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            relative = line.split()[0]
            label = self._class_of(relative.split("/")[0], index)
            if label is None:
                raise DatasetUnavailableError(f"{list_path}:{lineno}: {relative!r} is not under a class folder of"
                                              f" task {self.spec.name!r}")
            paths.append(str(root / relative))
            labels.append(label)
        return paths, labels
