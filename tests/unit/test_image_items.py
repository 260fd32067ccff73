"""The image-item protocol (data/base.py ImageItem): a source hands the pixel pipeline a file path, encoded bytes
(a tar member, a video frame's JPEG) or a PIL image. Bytes give the pixels of the file holding them under every
decoder and keep the tensor/cuda decoders' decode_jpeg path; anything else is an error, never a slow path."""

import io
import pickle
import tarfile

import numpy as np
import open_clip
import pytest
import torch
import torchvision.io
from PIL import Image

from evalsuite.data.base import (
    ImageItemError,
    ItemReader,
    SampleDataset,
    Samples,
    image_item,
    load_image_file,
    open_image_item,
)
from evalsuite.data.loader import collate_samples
from evalsuite.data.pixels import JpegBytes, PixelSpec, UInt8Pixels
from evalsuite.data.webdataset import image_member, index_shard, load_member_image


def natural_image(width: int, height: int, seed: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 / width), (y * 255 / height), ((x + y) * 127 / (width + height))], axis=-1)
    return Image.fromarray(np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)).convert(mode)


FORMATS = [(120, 90, "RGB", "JPEG"), (37, 90, "L", "JPEG"), (60, 40, "CMYK", "JPEG"), (64, 48, "RGBA", "PNG"),
           (70, 50, "P", "PNG")]
NUM_JPEGS = sum(f == "JPEG" for *_, f in FORMATS)


@pytest.fixture
def image_files(tmp_path):
    files = []
    for i, (w, h, mode, fmt) in enumerate(FORMATS):
        path = tmp_path / f"img{i}.{'jpg' if fmt == 'JPEG' else 'png'}"
        natural_image(w, h, seed=i, mode=mode).save(path, fmt)
        files.append(str(path))
    return files


@pytest.fixture
def shard(tmp_path, image_files):
    """A webdataset shard of the same files: s<i>.<ext> + s<i>.cls."""
    path = tmp_path / "0.tar"
    with tarfile.open(path, "w") as tar:
        for i, file in enumerate(image_files):
            tar.add(file, arcname=f"s{i}.{file.rsplit('.', 1)[1]}")
            label = str(i).encode()
            info = tarfile.TarInfo(f"s{i}.cls")
            info.size = len(label)
            tar.addfile(info, io.BytesIO(label))
    return path


def member_samples(shard) -> Samples:
    members = [image_member(shard, s) for s in index_shard(shard)]
    return Samples(members, list(range(len(members))), load_member_image, [f"s{i}" for i in range(len(members))])


def count_jpeg_decodes(monkeypatch) -> list:
    calls = []
    real = torchvision.io.decode_jpeg
    monkeypatch.setattr(torchvision.io, "decode_jpeg", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


@pytest.mark.parametrize("decoder", ["pil", "tensor"])
def test_bytes_give_the_pixels_of_their_file(image_files, decoder):
    transform = UInt8Pixels(PixelSpec(32, "shortest", "bicubic", decoder))
    for file in image_files:
        data = open(file, "rb").read()
        for item in (data, bytearray(data), memoryview(data)):
            assert torch.equal(transform.from_item(item), transform.from_file(file)), (file, type(item))


def test_pil_decoder_on_bytes_is_open_clips_transform(image_files):
    """The pil path stays open_clip's own: bytes decoded by PIL, then open_clip's resize/crop, bit for bit."""
    from evalsuite.data.pixels import normalize_on_device
    from evalsuite.models.card import OPENAI_MEAN, OPENAI_STD

    reference = open_clip.image_transform(48, is_train=False, mean=OPENAI_MEAN, std=OPENAI_STD)
    transform = UInt8Pixels(PixelSpec(48, "shortest", "bicubic", "pil"))
    for file in image_files:
        ours = normalize_on_device(transform.from_item(open(file, "rb").read())[None], OPENAI_MEAN, OPENAI_STD)[0]
        assert torch.equal(ours, reference(load_image_file(file))), file


@pytest.mark.parametrize("decoder", ["pil", "tensor"])
def test_tar_members_give_the_pixels_of_their_files(shard, image_files, decoder):
    transform = UInt8Pixels(PixelSpec(32, "squash", "bilinear", decoder))
    dataset = member_samples(shard).dataset(transform)
    for i, file in enumerate(image_files):
        pixels, label, index, error = dataset[i]
        assert error is None and (label, index) == (i, i)
        assert torch.equal(pixels, transform.from_file(file)), file


def test_tar_members_take_the_jpeg_fast_path(shard, monkeypatch):
    """The tensor decoder decodes a member's JPEG bytes with decode_jpeg (no PIL decode, no temporary file)."""
    dataset = member_samples(shard).dataset(UInt8Pixels(PixelSpec(32, "shortest", "bicubic", "tensor")))
    calls = count_jpeg_decodes(monkeypatch)
    loaded = []  # images PIL decoded
    real_load = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda self: loaded.append(self.format) or real_load(self))
    assert all(dataset[i][3] is None for i in range(len(dataset)))
    assert len(calls) == NUM_JPEGS and "JPEG" not in loaded and "PNG" in loaded  # PNGs go through PIL, as files do


def test_tar_members_left_for_the_device_equal_the_tensor_path(shard, image_files):
    """decoder cuda: a member's JPEG bytes leave the worker undecoded and finish like those of a file."""
    deferred = UInt8Pixels(PixelSpec(32, "shortest", "bicubic", "cuda"))
    tensor = UInt8Pixels(PixelSpec(32, "shortest", "bicubic", "tensor"))
    dataset = member_samples(shard).dataset(deferred)
    pixels, labels, indices, failures = collate_samples([dataset[i] for i in range(len(dataset))])
    assert sum(isinstance(p, JpegBytes) for p in pixels) == NUM_JPEGS and not failures
    finished = deferred.finish(pixels, torch.device("cpu"))
    assert torch.equal(finished, torch.stack([tensor.from_file(f) for f in image_files]))


def test_video_frames_are_jpeg_bytes_on_the_fast_path(tmp_path, monkeypatch):
    """vissl frames reach the pixel pipeline as the cached JPEG's bytes: the tensor decoder decodes them with
    decode_jpeg, and both decoders give the pixels of that JPEG file and of the PIL frame as loaded before."""
    from evalsuite.data.synthetic_clips import write_clip
    from evalsuite.data.video import CachedFrameLoader

    clip = tmp_path / "clip.mp4"
    write_clip(clip, [natural_image(96, 64, seed=i) for i in range(9)])
    loader = CachedFrameLoader("vissl", tmp_path / "cache")
    data = loader.read(str(clip))
    (entry,) = (tmp_path / "cache").rglob("*.jpg")
    assert isinstance(data, bytes) and data == entry.read_bytes() and data[:3] == b"\xff\xd8\xff"
    assert loader(str(clip)).tobytes() == open_image_item(data).tobytes()  # called: the decoded frame, as before
    samples = Samples([str(clip)], [0], loader, ["clip"])
    for decoder in ("pil", "tensor"):
        transform = UInt8Pixels(PixelSpec(32, "shortest", "bicubic", decoder))
        calls = count_jpeg_decodes(monkeypatch)
        pixels, _, _, error = samples.dataset(transform)[0]
        assert error is None and len(calls) == (decoder == "tensor")
        assert torch.equal(pixels, transform.from_file(str(entry)))
        assert torch.equal(pixels, transform(loader(str(clip))))  # what the PIL frame gave


class Arrays(ItemReader):
    def read(self, item):
        return np.zeros((4, 4, 3), np.uint8)


@pytest.mark.parametrize("load", [Arrays(), lambda item: {"path": item}], ids=["reader", "callable"])
def test_an_unknown_item_type_is_an_error_not_a_slow_path(load):
    dataset = SampleDataset(["a"], [0], load, UInt8Pixels(PixelSpec(8, "squash", "bilinear", "tensor")))
    with pytest.raises(ImageItemError, match="file path, encoded bytes or a PIL image"):
        dataset[0]  # raised (a source's bug), not returned as an unreadable sample
    with pytest.raises(ImageItemError):
        UInt8Pixels(PixelSpec(8, "squash", "bilinear", "pil")).from_item(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ImageItemError):
        image_item(load, "a")


def test_a_broken_item_is_still_a_reported_failure(image_files):
    data = open(image_files[0], "rb").read()[:300]
    dataset = SampleDataset([data], [0], lambda item: item, UInt8Pixels(PixelSpec(8, "squash", "bilinear", "tensor")),
                            names=["cut"])
    pixels, _, _, message = dataset[0]
    assert pixels is None and message.startswith("cut: ")


def test_transforms_without_from_item_get_pil_images(shard, image_files):
    """Library users' float transform (open_clip's) still works on any source: items are opened as PIL images."""
    reference = open_clip.image_transform(24, is_train=False)
    dataset = member_samples(shard).dataset(reference)
    for i, file in enumerate(image_files):
        assert torch.equal(dataset[i][0], reference(load_image_file(file)))


def test_readers_pickle_for_dataloader_workers(tmp_path):
    from evalsuite.data.video import CachedFrameLoader

    assert pickle.loads(pickle.dumps(load_image_file)) is load_image_file
    assert isinstance(pickle.loads(pickle.dumps(load_member_image)), ItemReader)
    loader = pickle.loads(pickle.dumps(CachedFrameLoader("vissl", tmp_path)))
    assert loader.rule == "vissl" and loader.cache_dir == tmp_path
