"""Image-caption data for retrieval: COCO caption JSON (pycocotools), the Karpathy split files, and the Hugging
Face copies (converted once into the Karpathy format by ``evalsuite prepare``).

A listing is ``CaptionedSamples``: the images (items, loaded as usual) plus each image's captions, in file order.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatasetUnavailableError
from .base import DataSource, DownloadingSource, LocalArgs, Samples, SourceContext, load_image_file, locate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptionedSamples(Samples):
    captions: list[list[str]] = field(default_factory=list)  # per image, in the dataset's order

    def identity(self) -> str:
        import hashlib

        payload = json.dumps([self.names, self.captions], ensure_ascii=False).encode()
        return hashlib.sha256(payload).hexdigest()[:16]

    def subset(self, indices: list[int]) -> "CaptionedSamples":
        return CaptionedSamples([self.items[i] for i in indices], [self.labels[i] for i in indices], self.load,
                                [self.names[i] for i in indices], [self.captions[i] for i in indices])


def captioned(paths: list[str], captions: list[list[str]], names: list[str], where: str) -> CaptionedSamples:
    empty = [n for n, c in zip(names, captions) if not c]
    if empty:
        raise DatasetUnavailableError(f"{where}: {len(empty)} images have no caption (e.g. {empty[:3]})")
    return CaptionedSamples(paths, list(range(len(paths))), load_image_file, names, captions)


# ---------------------------------------------------------------------------------------------------------------
# COCO caption annotation files


@dataclass(frozen=True)
class CocoCaptionsArgs(LocalArgs):
    # annotation files (glob patterns) relative to the dataset folder, read in this order
    annotations: list[str] = field(default_factory=lambda: ["annotations/captions_*.json", "captions_*.json"])
    # where the images' file_name are looked up, relative to the dataset folder
    image_dirs: list[str] = field(default_factory=lambda: ["images", "val2014", "val2017", "train2014", "train2017"])


class CocoCaptionsSource(DataSource):
    """Every image of the given COCO-format caption files (e.g. a local set, or a split file in that format)."""

    Args = CocoCaptionsArgs

    def _files(self, root: Path) -> list[Path]:
        files: list[Path] = []
        for pattern in self.args.annotations:
            files += [p for p in sorted(root.glob(pattern)) if p not in files]
        return files

    def samples(self, ctx: SourceContext) -> CaptionedSamples:
        root = locate(self.spec, self.args, ctx.data_root, lambda d: bool(self._files(d)))
        files = self._files(root)
        if not files:
            raise DatasetUnavailableError(f"task {self.spec.name!r}: no caption file matching"
                                          f" {self.args.annotations} in {root}")
        try:
            from pycocotools.coco import COCO
        except ImportError as exc:
            raise DatasetUnavailableError(f"task {self.spec.name!r}: reading COCO captions needs pycocotools:"
                                          f" pip install 'evalsuite[retrieval]' ({exc})") from None
        paths, captions, names = [], [], []
        for file in files:
            coco = COCO(str(file))
            for image_id in sorted(coco.imgs):
                file_name = coco.imgs[image_id]["file_name"]
                anns = sorted(coco.imgToAnns.get(image_id, []), key=lambda a: a["id"])
                folder = next((root / d for d in self.args.image_dirs if (root / d / file_name).is_file()),
                              root / self.args.image_dirs[0])
                paths.append(str(folder / file_name))  # a missing file is reported as a failed sample, not dropped
                captions.append([a["caption"].strip() for a in anns])
                names.append(f"{file.name}:{file_name}")
        log.info("task %s: %d images, %d captions from %s", self.spec.name, len(paths),
                 sum(map(len, captions)), ", ".join(f.name for f in files))
        return captioned(paths, captions, names, str(root))


# ---------------------------------------------------------------------------------------------------------------
# Karpathy split files (dataset_coco.json, dataset_flickr30k.json)


@dataclass(frozen=True)
class KarpathyArgs(LocalArgs):
    file: str = "dataset.json"  # relative to the dataset folder
    image_root: str = "."  # images at <image_root>/<filepath>/<filename> (filepath: COCO's val2014 etc.)
    split: str = "test"


def read_karpathy(path: Path, image_root: Path, split: str) -> tuple[list[str], list[list[str]], list[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        images = data["images"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetUnavailableError(f"{path}: not a Karpathy split file ({type(exc).__name__}: {exc})") from None
    paths, captions, names = [], [], []
    for image in images:
        if image.get("split") != split:
            continue
        relative = Path(image.get("filepath", "")) / image["filename"]
        paths.append(str(image_root / relative))
        captions.append([s["raw"].strip() for s in image.get("sentences", [])])
        names.append(str(relative))
    if not paths:
        raise DatasetUnavailableError(f"{path}: no image in split {split!r}")
    return paths, captions, names


class KarpathySource(DataSource):
    Args = KarpathyArgs

    def samples(self, ctx: SourceContext) -> CaptionedSamples:
        root = locate(self.spec, self.args, ctx.data_root, lambda d: (d / self.args.file).is_file())
        path = root / self.args.file
        if not path.is_file():
            raise DatasetUnavailableError(f"task {self.spec.name!r}: {path} not found. {self.args.instructions}")
        paths, captions, names = read_karpathy(path, root / self.args.image_root, self.args.split)
        return captioned(paths, captions, names, str(path))


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face copies (nlphuji/*_test_image_text_retrieval), converted once into the Karpathy format


CONVERTED = "karpathy_test.json"


@dataclass(frozen=True)
class HFCaptionsArgs:
    repo: str
    revision: str = "main"
    split: str = "test"
    dir: str = ""  # folder under --data-root; default: the task name


def convert_rows(rows, out: Path) -> int:
    """Rows with an ``image`` and a list of captions -> ``out/images/*`` + ``out/karpathy_test.json``. An image
    given as its encoded bytes (``{"bytes": ...}``) is written unchanged; a PIL image is saved as PNG (lossless)."""
    (out / "images").mkdir(parents=True)
    images = []
    for i, row in enumerate(rows):
        caption_key = next((k for k in ("caption", "captions", "sentences", "raw") if k in row), None)
        if caption_key is None or "image" not in row:
            raise DatasetUnavailableError(f"row {i}: expected an 'image' and a caption list, got {sorted(row)}")
        texts = row[caption_key]
        texts = json.loads(texts) if isinstance(texts, str) and texts.startswith("[") else texts
        texts = [texts] if isinstance(texts, str) else list(texts)
        image = row["image"]
        if isinstance(image, dict) and image.get("bytes"):
            name = Path(str(row.get("filename") or image.get("path") or f"{i:06d}.jpg")).name
            (out / "images" / name).write_bytes(image["bytes"])
        else:
            name = f"{Path(str(row.get('filename') or i)).stem}.png"
            image.save(out / "images" / name, format="PNG")
        images.append({"filename": name, "filepath": "images", "split": "test",
                       "sentences": [{"raw": t} for t in texts]})
    (out / CONVERTED).write_text(json.dumps({"images": images}, ensure_ascii=False))
    return len(images)


class HFCaptionsSource(DownloadingSource):
    Args = HFCaptionsArgs

    def samples(self, ctx: SourceContext) -> CaptionedSamples:
        path = self.root(ctx.data_root) / CONVERTED
        if not path.is_file():
            raise DatasetUnavailableError(f"task {self.spec.name!r}: {path} not found. Run `evalsuite prepare"
                                          f" {self.spec.name}` to download {self.args.repo} from the Hugging Face hub.")
        paths, captions, names = read_karpathy(path, path.parent, "test")
        return captioned(paths, captions, names, str(path))

    def load_rows(self, stage: Path):
        try:
            from datasets import load_dataset
        except ImportError as exc:
            raise DatasetUnavailableError(f"task {self.spec.name!r}: downloading {self.args.repo} needs the"
                                          f" `datasets` package: pip install 'evalsuite[data]' ({exc})") from None
        try:
            from datasets import Image as ImageFeature

            rows = load_dataset(self.args.repo, split=self.args.split, revision=self.args.revision,
                                cache_dir=str(stage / "hf"))
            return rows.cast_column("image", ImageFeature(decode=False))  # keep the original encoded bytes
        except Exception as exc:  # noqa: BLE001 - offline, unknown repo: not downloadable now
            raise DatasetUnavailableError(f"task {self.spec.name!r}: could not download {self.args.repo}:"
                                          f" {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                                          ) from None

    def download_into(self, target: Path, ctx: SourceContext, stage: Path) -> None:
        count = convert_rows(self.load_rows(stage), target)
        log.info("task %s: %d images from %s", self.spec.name, count, self.args.repo)
