"""Image-caption data for retrieval: the Karpathy split files, CLIP_benchmark's split files, the Hugging Face
copies (converted once into the Karpathy format by ``evalsuite prepare``), and COCO caption JSON (pycocotools).

The canonical tasks (mscoco, flickr30k) read only sources that define the Karpathy test split: ``karpathy_json``,
``clip_benchmark_captions`` and ``hf_captions``. ``coco_captions`` scores every image of the caption files it is
given (a COCO-2014 download would give the 123k train+val gallery), so it is for user-defined tasks only.

A listing is ``CaptionedSamples``: the images (items, loaded as usual) plus each image's captions, in file order.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataNotFoundError, DatasetUnavailableError
from .base import (
    DataSource,
    DownloadingSource,
    LocalArgs,
    Samples,
    SourceContext,
    identity_digest,
    load_image_file,
    locate,
    read_data_text,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptionedSamples(Samples):
    captions: list[list[str]] = field(default_factory=list)  # per image, in the dataset's order

    def identity(self, verify: bool = False) -> str:
        return identity_digest([self.names, self.captions], self.files(), self.root, verify)

    def subset(self, indices: list[int]) -> "CaptionedSamples":
        return CaptionedSamples([self.items[i] for i in indices], [self.labels[i] for i in indices], self.load,
                                [self.names[i] for i in indices], [self.captions[i] for i in indices],
                                root=self.root, data_files=self.data_files)


def captioned(paths: list[str], captions: list[list[str]], names: list[str], where: str, root=None,
              data_files: tuple[str, ...] = ()) -> CaptionedSamples:
    empty = [n for n, c in zip(names, captions) if not c]
    if empty:
        raise DatasetUnavailableError(f"{where}: {len(empty)} images have no caption (e.g. {empty[:3]})")
    return CaptionedSamples(paths, list(range(len(paths))), load_image_file, names, captions,
                            root=str(root) if root is not None else None, data_files=tuple(data_files))


def find_folder(spec, args: LocalArgs, data_root: Path, file: str) -> Path:
    """The first ``<data_root>/<dir>`` (``args.dirs``, default the task name) that holds ``file``, else ``data_root``
    itself when it does; the error names the file and where it was looked for."""
    candidates = [Path(d) if Path(d).is_absolute() else data_root / d for d in (args.dirs or [spec.name])]
    for folder in candidates + [data_root]:
        if (folder / file).is_file():
            return folder.resolve()
    how = f" {args.instructions}" if args.instructions else ""
    raise DataNotFoundError(f"task {spec.name!r}: {file} not found in {', '.join(str(c) for c in candidates)}"
                                  f" or {data_root}.{how}")


COCO_CAPTION_FILES = ("captions_*.json", "annotations/captions_*.json")


def caption_files_note(spec, data_root: Path) -> str:
    """For a task without a ``coco_captions`` source whose data was not found: a note naming the COCO caption files
    that lie where the task looked (they are not the Karpathy split, so they are not used), or ''."""
    if any(s.kind == "coco_captions" for s in spec.sources):
        return ""
    dirs = [d for s in spec.sources for d in (s.args.get("dirs") or [])] or [spec.name]
    found: list[str] = []
    for folder in [data_root / d for d in dict.fromkeys(dirs)] + [data_root]:
        for pattern in COCO_CAPTION_FILES:
            found += [str(p) for p in sorted(folder.glob(pattern)) if str(p) not in found]
    if not found:
        return ""
    needs = [s.args["file"] for s in spec.sources if s.args.get("file")]
    if any(s.kind == "hf_captions" for s in spec.sources):
        needs.append(f"the copy made by `evalsuite prepare {spec.name}`")
    return (f"Found COCO caption files ({', '.join(found)}) but no Karpathy test split: {spec.name} needs"
            f" {' or '.join(needs)}. Caption files list every image of their COCO split (a 2014 download: the"
            " 123k train+val images), so they are not used; to score them, define a task of your own with a"
            " coco_captions source (README, 'Retrieval tasks').")


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
                                          f" pip install pycocotools (clip-benchmark depends on it) ({exc})") from None
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
        return captioned(paths, captions, names, str(root), root=root, data_files=tuple(str(f) for f in files))


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
    for number, image in enumerate(images):
        try:
            if image.get("split") != split:
                continue
            relative = Path(image.get("filepath", "")) / image["filename"]
            texts = [s["raw"].strip() for s in image.get("sentences", [])]
        except (KeyError, TypeError, AttributeError) as exc:
            raise DatasetUnavailableError(
                f"{path}: images[{number}] is not a Karpathy entry ({type(exc).__name__}: {exc}); each needs"
                " 'filename', 'split' and 'sentences' with a 'raw' text") from None
        paths.append(str(image_root / relative))
        captions.append(texts)
        names.append(str(relative))
    if not paths:
        raise DatasetUnavailableError(f"{path}: no image in split {split!r}")
    return paths, captions, names


class KarpathySource(DataSource):
    """Karpathy's split file (``dataset_coco.json``, ``dataset_flickr30k.json``): the images of one split."""

    Args = KarpathyArgs

    def samples(self, ctx: SourceContext) -> CaptionedSamples:
        root = find_folder(self.spec, self.args, ctx.data_root, self.args.file)
        path = root / self.args.file
        paths, captions, names = read_karpathy(path, root / self.args.image_root, self.args.split)
        return captioned(paths, captions, names, str(path), root=root, data_files=(str(path),))


# ---------------------------------------------------------------------------------------------------------------
# CLIP_benchmark's split files (mehdidc/retrieval_annotations: coco_test_karpathy.json, flickr30k_test_karpathy.txt)


@dataclass(frozen=True)
class ClipBenchmarkCaptionsArgs(LocalArgs):
    # coco_<split>_karpathy.json (COCO caption format) or flickr30k_<split>_karpathy.txt ("<image>.jpg,<caption>")
    file: str = ""
    # where the images are, relative to the folder of the file: the first that holds the first image (else the
    # first); CLIP_benchmark reads COCO from val2014/ and Flickr images from the folder itself
    image_dirs: list[str] = field(default_factory=lambda: ["."])


def read_coco_split(path: Path) -> list[tuple[str, list[str]]]:
    """A COCO-format caption file as torchvision's ``CocoCaptions`` (CLIP_benchmark's mscoco_captions) reads it:
    every image, sorted by id; its captions in the order of the file's annotations."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        images = {image["id"]: image["file_name"] for image in data["images"]}
        by_image: dict = {image_id: [] for image_id in images}
        for ann in data["annotations"]:
            by_image[ann["image_id"]].append(ann["caption"].strip())
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetUnavailableError(f"{path}: not a COCO caption file ({type(exc).__name__}: {exc})") from None
    return [(images[i], by_image[i]) for i in sorted(images)]


def read_flickr_split(path: Path) -> list[tuple[str, list[str]]]:
    """A Flickr split file as CLIP_benchmark's ``datasets.flickr.Flickr`` reads it: the first line is a header;
    each other non-empty line is ``<image>.jpg,<caption>`` (split at the first ``.jpg,``: captions may hold
    commas); images in order of first appearance."""
    data: dict[str, list[str]] = {}
    # lines as iterating the open file gives them (text mode: \r\n and \r read as \n), not str.splitlines,
    # which also splits at characters a caption may hold (\x0c, \u2028)
    lines = read_data_text(path, "CLIP_benchmark's Flickr split ('<image>.jpg,<caption>' lines)").split("\n")
    for number, line in enumerate(lines[1:], start=2):
        line = line.strip()
        if not line:
            continue
        image, sep, caption = line.partition(".jpg,")
        if not sep:
            raise DatasetUnavailableError(f"{path}:{number}: expected '<image>.jpg,<caption>', got {line[:80]!r}")
        data.setdefault(image + ".jpg", []).append(caption)
    return list(data.items())


class ClipBenchmarkCaptionsSource(DataSource):
    """CLIP_benchmark's own retrieval split files, read the way its builder does: ``coco_test_karpathy.json`` with
    the images in ``val2014/`` beside it (mscoco_captions), ``flickr30k_test_karpathy.txt`` with the images in its
    folder (flickr30k). Both list exactly the Karpathy test split."""

    Args = ClipBenchmarkCaptionsArgs

    def samples(self, ctx: SourceContext) -> CaptionedSamples:
        if not self.args.file.endswith((".json", ".txt")):
            raise DatasetUnavailableError(f"{self.spec.file}: clip_benchmark_captions reads a .json (COCO format) or"
                                          f" .txt (Flickr format) file; got {self.args.file!r}")
        root = find_folder(self.spec, self.args, ctx.data_root, self.args.file)
        path = root / self.args.file
        listing = read_coco_split(path) if path.suffix == ".json" else read_flickr_split(path)
        if not listing:
            raise DatasetUnavailableError(f"{path}: lists no image")
        image_dirs = self.args.image_dirs or ["."]
        folder = next((d for d in image_dirs if (root / d / listing[0][0]).is_file()), image_dirs[0])
        names = [str(Path(folder) / name) for name, _ in listing]
        paths = [str(root / name) for name in names]  # a missing image is a failed sample, not dropped
        captions = [c for _, c in listing]
        log.info("task %s: %d images, %d captions from %s (images in %s)", self.spec.name, len(paths),
                 sum(map(len, captions)), path, root / folder)
        return captioned(paths, captions, names, str(path), root=root, data_files=(str(path),))


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
            raise DataNotFoundError(f"task {self.spec.name!r}: {path} not found. Run `evalsuite prepare"
                                          f" {self.spec.name}` to download {self.args.repo} from the Hugging Face hub.")
        paths, captions, names = read_karpathy(path, path.parent, "test")
        return captioned(paths, captions, names, str(path), root=path.parent, data_files=(str(path),))

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
