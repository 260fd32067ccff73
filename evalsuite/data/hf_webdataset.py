"""CLIP_benchmark's webdataset copies on the Hugging Face hub (``clip-benchmark/wds_<name>``).

``evalsuite prepare`` downloads one split's tar shards with huggingface_hub and unpacks them once into
``<data-root>/<dir>/``: the image files exactly as stored (no re-encoding), a ``labels.csv`` (path,label index)
and ``source.json`` (repo, requested revision, resolved commit). Runs then read that folder like a file list.
The shards are read with the standard library's tarfile: the conversion is one sequential pass, which needs
nothing from the ``webdataset`` package.
"""

from __future__ import annotations

import csv
import json
import logging
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import ConfigError, DatasetUnavailableError
from .base import DownloadingSource, Samples, SourceContext
from .file_list import read_file_list

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = ("webp", "jpg", "jpeg", "png")
MANIFEST, PROVENANCE = "labels.csv", "source.json"


@dataclass(frozen=True)
class HFWebdatasetArgs:
    repo: str  # e.g. clip-benchmark/wds_cars
    revision: str = "main"  # a commit sha pins it; the resolved commit is recorded in source.json either way
    split: str = "test"
    dir: str = ""  # folder under --data-root; default: the task name
    instructions: str = ""


def convert_shards(snapshot: Path, split: str, out: Path, num_classes: int) -> int:
    """Unpack ``snapshot/<split>/*.tar`` into ``out/images`` + ``out/labels.csv``; returns the sample count.

    A sample is the group of tar members sharing a key (the name up to the first dot): one image and one ``.cls``
    label. Incomplete samples or labels outside the class range are errors, never skipped.
    """
    shards = sorted((snapshot / split).glob("*.tar"), key=lambda p: (len(p.stem), p.stem))
    if not shards:
        raise DatasetUnavailableError(f"{snapshot / split}: no .tar shards found")
    classnames = snapshot / "classnames.txt"
    if classnames.is_file():
        count = len([line for line in classnames.read_text(encoding="utf-8").splitlines() if line.strip()])
        if count != num_classes:
            raise DatasetUnavailableError(f"{classnames} lists {count} classes, the task expects {num_classes}")
    images = out / "images"
    images.mkdir(parents=True)
    rows: list[tuple[str, int]] = []
    for shard in shards:
        samples: dict[str, dict[str, bytes]] = {}
        with tarfile.open(shard) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = PurePosixPath(member.name).name
                key, _, suffix = name.partition(".")
                samples.setdefault(key, {})[suffix.lower()] = tar.extractfile(member).read()
        for key, parts in samples.items():
            image_suffix = next((s for s in IMAGE_SUFFIXES if s in parts), None)
            if image_suffix is None or "cls" not in parts:
                raise DatasetUnavailableError(f"{shard}: sample {key!r} lacks an image or a .cls label: {sorted(parts)}")
            label = int(parts["cls"].decode().strip())
            if not 0 <= label < num_classes:
                raise DatasetUnavailableError(f"{shard}: sample {key!r} has label {label}, outside 0..{num_classes - 1}")
            file_name = f"{shard.stem}_{key}.{image_suffix}"
            (images / file_name).write_bytes(parts[image_suffix])
            rows.append((f"images/{file_name}", label))
    with (out / MANIFEST).open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows(rows)
    return len(rows)


class HFWebdatasetSource(DownloadingSource):
    Args = HFWebdatasetArgs

    def __init__(self, spec, source) -> None:
        super().__init__(spec, source)
        if "/" not in self.args.repo:
            raise ConfigError(f"{spec.file}: source hf_webdataset 'repo' must be owner/name, got {self.args.repo!r}")

    def samples(self, ctx: SourceContext) -> Samples:
        manifest = self.root(ctx.data_root) / MANIFEST
        if not manifest.is_file():
            extra = f" {self.args.instructions}" if self.args.instructions else ""
            raise DatasetUnavailableError(
                f"task {self.spec.name!r}: {manifest} not found. Run `evalsuite prepare {self.spec.name}` to"
                f" download {self.args.repo} ({self.args.split} split) from the Hugging Face hub.{extra}"
            )
        return read_file_list(manifest, ctx.label_keys, self.spec.name)

    def download(self, stage: Path) -> tuple[Path, str]:
        """The split's shards and classnames.txt in a local snapshot; returns (folder, resolved commit)."""
        from huggingface_hub import HfApi, snapshot_download

        try:
            commit = HfApi().dataset_info(self.args.repo, revision=self.args.revision).sha
            folder = snapshot_download(self.args.repo, repo_type="dataset", revision=commit,
                                       allow_patterns=[f"{self.args.split}/*.tar", "classnames.txt"],
                                       cache_dir=str(stage / "hub"))
        except Exception as exc:  # noqa: BLE001 - offline, unknown repo, auth: all mean "not downloadable now"
            raise DatasetUnavailableError(
                f"task {self.spec.name!r}: could not download {self.args.repo}@{self.args.revision} from the"
                f" Hugging Face hub: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from None
        return Path(folder), commit

    def download_into(self, target: Path, ctx: SourceContext, stage: Path) -> None:
        snapshot, commit = self.download(stage)
        count = convert_shards(snapshot, self.args.split, target, len(ctx.label_keys))
        provenance = {"repo": self.args.repo, "revision": self.args.revision, "commit": commit,
                      "split": self.args.split, "samples": count}
        (target / PROVENANCE).write_text(json.dumps(provenance, indent=2) + "\n")
        log.info("task %s: %d samples from %s@%s", self.spec.name, count, self.args.repo, commit)
