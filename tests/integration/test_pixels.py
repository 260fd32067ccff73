"""The uint8 pixel pipeline: the pil decoder reproduces open_clip's transform exactly, the tensor decoder stays
within 2/255 of it, the deferred (GPU) decode path equals the tensor path, and --cache-pixels lets a second model
with the same preprocessing run without decoding a single image."""

import csv
import io

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from evalsuite.cli import main
from evalsuite.data.base import SampleDataset, load_image_file
from evalsuite.data.loader import collate_samples, make_loader
from evalsuite.data.pixels import JpegBytes, PixelSpec, UInt8Pixels, normalize_on_device
from evalsuite.models.card import OPENAI_MEAN, OPENAI_STD
from helpers import shared, write_class_folders, write_include_task


def natural_image(width: int, height: int, seed: int, mode: str = "RGB") -> Image.Image:
    """Smooth gradients plus noise: resampling differences show up as they would on photos."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 / width), (y * 255 / height), ((x + y) * 127 / (width + height))], axis=-1)
    pixels = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).convert(mode)


@pytest.fixture
def image_files(tmp_path):
    files = []
    for i, (w, h, mode, fmt) in enumerate([(500, 375, "RGB", "JPEG"), (37, 90, "L", "JPEG"), (224, 224, "RGB", "JPEG"),
                                           (300, 200, "CMYK", "JPEG"), (64, 48, "RGBA", "PNG"),
                                           (640, 480, "P", "PNG")]):
        path = tmp_path / f"img{i}.{fmt.lower()}"
        natural_image(w, h, seed=i, mode=mode).save(path, fmt)
        files.append(str(path))
    return files


@pytest.mark.parametrize("resize_mode", ["shortest", "squash"])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_pil_decoder_then_device_normalisation_equals_open_clip_transform(image_files, resize_mode, interpolation):
    reference = open_clip.image_transform(224, is_train=False, mean=OPENAI_MEAN, std=OPENAI_STD,
                                          resize_mode=resize_mode, interpolation=interpolation)
    pixels = UInt8Pixels(PixelSpec(224, resize_mode, interpolation, "pil"))
    batch = normalize_on_device(torch.stack([pixels.from_file(p) for p in image_files]), OPENAI_MEAN, OPENAI_STD)
    for path, ours in zip(image_files, batch):  # a whole batch, as the encoder normalises it
        assert torch.equal(ours, reference(load_image_file(path))), path


@pytest.mark.slow
def test_default_run_feeds_clip_benchmarks_own_pixels_on_the_imagenet_sample(tiny_model_dir):
    """The default decoder is open_clip's PIL transform: every image of the ImageNet sample reaches the model as
    CLIP_benchmark's transform (open_clip.image_transform, what it calls) makes it, bit for bit."""
    from evalsuite.cli import build_parser
    from evalsuite.models.loading import load_model, resolve_card

    args = build_parser().parse_args(["run", "--model", "x", "--tasks", "cifar10"])
    assert args.decoder == "pil"
    model = load_model(resolve_card(f"local-dir:{tiny_model_dir}"), device="cpu")
    p = model.preprocess_description()
    reference = open_clip.image_transform(p["size"], is_train=False, mean=tuple(p["mean"]), std=tuple(p["std"]),
                                          resize_mode=p["resize_mode"], interpolation=p["interpolation"])
    transform = model.pixel_transform()  # the defaults a run uses
    files = sorted(str(p) for p in shared("imagenet-sample").glob("*.JPEG"))
    assert len(files) == 1000
    for path in files:
        ours = normalize_on_device(transform.from_file(path)[None], p["mean"], p["std"])[0]
        assert torch.equal(ours, reference(load_image_file(path))), path


def level_differences(files, size=224, resize_mode="shortest"):
    pil = UInt8Pixels(PixelSpec(size, resize_mode, "bicubic", "pil"))
    fast = UInt8Pixels(PixelSpec(size, resize_mode, "bicubic", "tensor"))
    diffs = [(pil.from_file(f).int() - fast.from_file(f).int()).abs() for f in files]
    return max(d.max().item() for d in diffs), float(np.mean([d.float().mean().item() for d in diffs]))


@pytest.mark.parametrize("resize_mode", ["shortest", "squash"])
def test_tensor_decoder_is_within_two_levels_of_pil(image_files, resize_mode):
    worst, mean = level_differences(image_files, resize_mode=resize_mode)
    assert worst <= 2 and mean < 0.05


def test_tensor_decoder_on_real_imagenet_jpegs():
    files = sorted(str(p) for p in shared("imagenet-sample").glob("*.JPEG"))[:60]
    worst, mean = level_differences(files)
    assert worst <= 2 and mean < 0.02


def test_tensor_decoder_reads_other_formats_through_pil(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray((np.random.default_rng(0).random((40, 50)) * 65535).astype(np.uint16)).save(path)
    fast = UInt8Pixels(PixelSpec(32, "shortest", "bicubic", "tensor"))
    assert torch.equal(fast.from_file(str(path)), fast(load_image_file(str(path))))  # PIL's 16-bit handling


def test_truncated_jpeg_is_a_reported_failure(tmp_path, image_files):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(open(image_files[0], "rb").read()[:5000])
    dataset = SampleDataset([image_files[0], str(broken)], [0, 1], load_image_file,
                            UInt8Pixels(PixelSpec(32, "shortest", "bicubic", "tensor")))
    assert dataset[0][3] is None
    pixels, label, index, message = dataset[1]
    assert pixels is None and index == 1 and "broken.jpg" in message


def test_deferred_jpeg_decoding_equals_the_tensor_path(image_files):
    """The --decoder cuda path (bytes from the workers, batch decode and resize on the model's device), run on the
    CPU here: the same pixels as decoding in the workers."""
    deferred = UInt8Pixels(PixelSpec(64, "shortest", "bicubic", "cuda"))
    tensor = UInt8Pixels(PixelSpec(64, "shortest", "bicubic", "tensor"))
    dataset = SampleDataset(image_files, list(range(len(image_files))), load_image_file, deferred)
    pixels, labels, indices, failures = collate_samples([dataset[i] for i in range(len(dataset))])
    assert isinstance(pixels, list) and sum(isinstance(p, JpegBytes) for p in pixels) == 4  # the PNGs are decoded
    finished = deferred.finish(pixels, torch.device("cpu"))
    assert torch.equal(finished, torch.stack([tensor.from_file(f) for f in image_files]))


def primary_metrics(out_dir, task="pets"):
    rows = csv.DictReader((next(out_dir.iterdir()) / f"{task}.csv").open())
    return {r["metric"]: r["value"] for r in rows}


@pytest.fixture
def pets_task(tmp_path):
    write_class_folders(tmp_path / "data" / "pets", ["cat", "dog"], per_class=6, size=(50, 40))
    inc = tmp_path / "inc"
    write_include_task(inc, "pets", ["cat", "dog"])
    return ["--tasks", "pets", "--data-root", str(tmp_path / "data"), "--include-path", str(inc), "--workers", "0",
            "--no-cache-features"]


def count_decodes(monkeypatch) -> list:
    """Image files read (every file-based sample goes through ``UInt8Pixels.from_file``)."""
    decoded = []
    real = UInt8Pixels.from_file
    monkeypatch.setattr(UInt8Pixels, "from_file", lambda self, p: decoded.append(p) or real(self, p))
    return decoded


def test_second_model_with_same_preprocessing_reads_cached_pixels(tiny_model_dir, pets_task, tmp_path, monkeypatch,
                                                                  isolated_cache_dir):
    from evalsuite.models.tiny import write_tiny_clip

    other_model = write_tiny_clip(tmp_path / "other-model", seed=1)
    decoded = count_decodes(monkeypatch)
    first = ["run", "--model", f"local-dir:{tiny_model_dir}", "--output-dir", str(tmp_path / "a"), *pets_task]
    assert main(first + ["--cache-pixels"]) == 0 and len(decoded) == 12
    assert list((isolated_cache_dir / "pixels").glob("*.npy")) and list((isolated_cache_dir / "pixels").glob("*.json"))
    decoded.clear()
    second = ["run", "--model", f"local-dir:{other_model}", *pets_task]
    assert main(second + ["--output-dir", str(tmp_path / "b"), "--cache-pixels"]) == 0
    assert decoded == []  # another model, same preprocessing: no image decoded
    assert main(second + ["--output-dir", str(tmp_path / "c")]) == 0 and len(decoded) == 12  # reference run
    assert primary_metrics(tmp_path / "b") == primary_metrics(tmp_path / "c")


def test_pixel_cache_keeps_unreadable_samples_counted(tiny_model_dir, pets_task, tmp_path):
    (tmp_path / "data" / "pets" / "dog" / "9999.png").write_bytes(b"not a png")
    argv = ["run", "--model", f"local-dir:{tiny_model_dir}", *pets_task, "--cache-pixels"]
    for out in ("a", "b"):  # the second run reads the pixel cache, failures included
        assert main(argv + ["--output-dir", str(tmp_path / out)]) == 3
        row = next(csv.DictReader((next((tmp_path / out).iterdir()) / "pets.csv").open()))
        assert (row["num_samples"], row["num_failed"]) == ("12", "1")
        assert "9999.png" in (next((tmp_path / out).iterdir()) / "pets.errors.txt").read_text()


def test_decoder_is_part_of_the_task_fingerprint(pets_task, tmp_path, tiny_model_dir, capsys):
    argv = ["run", "--model", f"local-dir:{tiny_model_dir}", *pets_task, "--output-dir", str(tmp_path / "out")]
    assert main(argv) == 0
    assert main(argv + ["--decoder", "tensor"]) == 0  # not taken as done: other pixels
    assert "already done" not in capsys.readouterr().err


def test_cuda_decoder_without_cuda_is_a_clear_error(pets_task, tmp_path, tiny_model_dir, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    argv = ["run", "--model", f"local-dir:{tiny_model_dir}", *pets_task, "--output-dir", str(tmp_path / "out"),
            "--decoder", "cuda", "--device", "cpu"]
    assert main(argv) == 2
    assert "--decoder cuda needs a CUDA device" in capsys.readouterr().err


def test_jpeg_sniffing_uses_magic_bytes_not_extensions(tmp_path):
    from evalsuite.data.pixels import is_jpeg

    buffer = io.BytesIO()
    natural_image(20, 20, 0).save(buffer, "JPEG")
    assert is_jpeg(buffer.getvalue()) and is_jpeg(torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8))
    buffer = io.BytesIO()
    natural_image(20, 20, 0).save(buffer, "PNG")
    assert not is_jpeg(buffer.getvalue())


def test_channels_last_only_for_convolutional_towers_and_numbers_unchanged(tiny_model_dir):
    """channels_last is switched on for CUDA models with convolution stages; the layout must not move features."""
    from evalsuite.models.base import _has_conv_stages
    from evalsuite.models.loading import load_model, resolve_card

    model = load_model(resolve_card(f"local-dir:{tiny_model_dir}"), device="cpu")
    assert not _has_conv_stages(model.module) and not model.channels_last  # a ViT: one patch-embedding conv
    resnet = open_clip.model.ModifiedResNet(layers=(1, 1, 1, 1), output_dim=16, heads=2, image_size=64, width=8)
    assert _has_conv_stages(resnet)
    pixels = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    plain = model.encode_image(pixels)
    model.channels_last = True
    model.module.to(memory_format=torch.channels_last)
    assert torch.allclose(model.encode_image(pixels), plain, atol=1e-5)


def test_a_bad_decoder_setting_is_one_error_not_every_samples_failure(tmp_path):
    """The pil steps are built lazily (a cached re-run needs no open_clip); a loader builds them first, so a bad
    interpolation raises once instead of turning into an 'unreadable' failure for every sample."""
    path = tmp_path / "a.png"
    Image.new("RGB", (12, 10), (10, 20, 30)).save(path)
    for decoder in ("pil", "tensor"):
        transform = UInt8Pixels(PixelSpec(8, "shortest", "not-an-interpolation", decoder))
        dataset = SampleDataset([str(path)], [0], load_image_file, transform, ["a.png"])
        with pytest.raises(ValueError, match="not-an-interpolation"):
            make_loader(dataset, batch_size=1, workers=0, device=torch.device("cpu"))
