"""The demo's video clips: shapes-world clips (real H.264 files) in which only the protocol's frame shows the
labelled shape; every other frame shows a distractor pair. A wrong frame index therefore gets the wrong class.

Clips are written once under the cache dir (deterministic from the arguments) and read back through the same
frame reader and frame cache as real videos.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_path
from ..demo.shapes import CANVAS, COLOURS, SHAPES, draw
from ..errors import ConfigError, DatasetUnavailableError
from ..resources import default_cache_dir
from .base import DataSource, Samples, SourceContext
from .video import FRAME_RULES, CachedFrameLoader, frame_index

CLIP_VERSION = 1  # bump when the clips' content changes (part of their folder name)


@dataclass(frozen=True)
class SyntheticClipsArgs:
    per_class: int
    frames: int = 9
    seed: int = 0
    frame_rule: str = "vissl"  # the rule used to READ the clips; they are always made for the vissl rule


def write_clip(path: Path, frames: list, fps: int = 10) -> None:
    """Encode RGB PIL frames as near-lossless H.264 (yuv444p, CRF 0 keeps the colours), atomically."""
    import av

    with atomic_path(path) as tmp:  # .<name>.<random>.tmp: never listed as a clip, swept by housekeeping
        with av.open(tmp, "w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height = frames[0].size
            stream.pix_fmt = "yuv444p"
            stream.options = {"crf": "0", "preset": "ultrafast"}
            for image in frames:
                container.mux(stream.encode(av.VideoFrame.from_image(image)))
            container.mux(stream.encode(None))


def clip_frames(colour: str, shape: str, num_frames: int, seed: int) -> list:
    """The labelled pair at the vissl frame, other pairs (sharing neither colour nor shape) elsewhere."""
    rng = random.Random(seed)
    target = frame_index(num_frames, "vissl")
    others = [(c, s) for c in COLOURS for s in SHAPES if c != colour and s != shape]
    frames = []
    for i in range(num_frames):
        c, s = (colour, shape) if i == target else rng.choice(others)
        frames.append(draw(c, s, seed * 100 + i, CANVAS))
    return frames


class SyntheticClipsSource(DataSource):
    Args = SyntheticClipsArgs

    def __init__(self, spec, source) -> None:
        super().__init__(spec, source)
        if self.args.frame_rule not in FRAME_RULES:
            raise ConfigError(f"{spec.file}: source.args.frame_rule must be one of {FRAME_RULES}")
        if self.args.frames < 3:
            raise ConfigError(f"{spec.file}: source.args.frames must be at least 3 (the vissl rule needs it)")

    def _folder(self, keys: list[str]) -> Path:
        recipe = {"keys": keys, "per_class": self.args.per_class, "frames": self.args.frames,
                  "seed": self.args.seed, "version": CLIP_VERSION}
        digest = hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:16]
        return default_cache_dir() / "demo-clips" / digest

    def samples(self, ctx: SourceContext) -> Samples:
        folder = self._folder(ctx.label_keys)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # the demo writes its clips into the cache: the place is the user's to fix
            raise DatasetUnavailableError(
                f"task {self.spec.name!r}: the demo clips are generated into {folder}, which cannot be created"
                f" ({exc.strerror or exc}); set EVALSUITE_CACHE_DIR to a writable folder") from None
        paths, labels = [], []
        for label, key in enumerate(ctx.label_keys):
            words = key.split()
            if len(words) != 2 or words[0] not in COLOURS or words[1] not in SHAPES:
                raise ConfigError(f"{self.spec.file}: class key {key!r} is not '<colour> <shape>'")
            for k in range(self.args.per_class):
                seed = self.args.seed * 10_000 + label * 100 + k
                path = folder / f"{words[0]}_{words[1]}_{k:03d}.mp4"
                if not path.is_file():
                    write_clip(path, clip_frames(words[0], words[1], self.args.frames, seed))
                paths.append(str(path))
                labels.append(label)
        return Samples(paths, labels, CachedFrameLoader(self.args.frame_rule, default_cache_dir()),
                       [Path(p).name for p in paths])
