"""CPU cost per image of the three ways evalsuite can turn a JPEG into encoder input, and how far apart their
pixels and features are.

- ``open_clip``: PIL decode + open_clip's float transform (resize, crop, ToTensor, Normalize) — what CLIP_benchmark
  and the papers ran;
- ``pil``: the same PIL steps stopped at uint8 (evalsuite --decoder pil; normalisation moves to the device);
- ``tensor``: torchvision.io.decode_jpeg + uint8 antialiased resize + crop (opt-in: ``--decoder tensor``; the default
  is ``pil``, exact).

All timed in one process on one thread (a loader worker's view). Equivalence: the largest and mean difference of
the uint8 pixels (levels of 255) of ``tensor`` against ``pil``, and the smallest cosine similarity between the
image features a random-init ViT-B-32 gives the two (``pil`` + device normalisation is bit-identical to
``open_clip``; tests/integration/test_pixels.py checks that). With CUDA present it also measures the nvJPEG path
(--decoder cuda) against ``pil``. Images: the ImageNet sample of ../shared/data when present, else generated
500x375 JPEGs.

    python benchmarks/decode_speed.py [--images 300] [--size 224]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SHARED_IMAGENET = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"


def image_files(n: int, scratch: Path) -> tuple[list[str], str]:
    if SHARED_IMAGENET.is_dir():
        return sorted(str(p) for p in SHARED_IMAGENET.glob("*.JPEG"))[:n], f"ImageNet sample ({SHARED_IMAGENET})"
    from PIL import Image

    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        y, x = np.mgrid[0:375, 0:500]
        base = np.stack([x * 255 / 500, y * 255 / 375, (x + y) * 127 / 875], axis=-1)
        pixels = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
        path = scratch / f"{i:04d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        files.append(str(path))
    return files, "generated 500x375 JPEGs"


def ms_per_image(fn, files: list[str]) -> float:
    for f in files[:5]:
        fn(f)  # warm-up
    start = time.perf_counter()
    for f in files:
        fn(f)
    return (time.perf_counter() - start) / len(files) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    torch.set_num_threads(1)

    import open_clip

    from evalsuite.data.base import load_image_file
    from evalsuite.data.pixels import PixelSpec, UInt8Pixels, normalize_on_device
    from evalsuite.models.card import OPENAI_MEAN, OPENAI_STD

    with tempfile.TemporaryDirectory() as scratch:
        files, what = image_files(args.images, Path(scratch))
        reference = open_clip.image_transform(args.size, is_train=False, mean=OPENAI_MEAN, std=OPENAI_STD,
                                              resize_mode="shortest", interpolation="bicubic")
        pil = UInt8Pixels(PixelSpec(args.size, "shortest", "bicubic", "pil"))
        tensor = UInt8Pixels(PixelSpec(args.size, "shortest", "bicubic", "tensor"))
        print(f"{len(files)} images: {what}; size {args.size}, shortest side + centre crop, bicubic; 1 thread")
        timings = {
            "open_clip": ms_per_image(lambda f: reference(load_image_file(f)), files),
            "pil": ms_per_image(pil.from_file, files),
            "tensor": ms_per_image(tensor.from_file, files),
        }
        for name, ms in timings.items():
            print(f"  {name:10s} {ms:6.2f} ms/image  ({1000 / ms:5.0f} images/s per core)")
        speed_up = timings["open_clip"] / timings["tensor"]
        print(f"speed-up of the opt-in tensor decoder over open_clip's transform (= the default pil): {speed_up:.2f}x")

        pil_pixels = torch.stack([pil.from_file(f) for f in files])
        tensor_pixels = torch.stack([tensor.from_file(f) for f in files])
        diff = (pil_pixels.int() - tensor_pixels.int()).abs()
        print(f"tensor vs pil pixels: max {diff.max().item()} levels, mean {diff.float().mean().item():.4f} levels,"
              f" {100 * (diff > 0).float().mean().item():.2f}% of values differ")

        model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
        with torch.inference_mode():
            def features(pixels):
                x = normalize_on_device(pixels, OPENAI_MEAN, OPENAI_STD)
                return torch.nn.functional.normalize(torch.cat([model.encode_image(b) for b in x.split(32)]), dim=-1)

            subset = slice(0, min(100, len(files)))
            a, b = features(pil_pixels[subset]), features(tensor_pixels[subset])
        cosine = (a * b).sum(-1)
        print(f"ViT-B-32 (random init) image features, tensor vs pil: max 1-cosine {(1 - cosine).max().item():.2e},"
              f" max |diff| {(a - b).abs().max().item():.2e}")

        if torch.cuda.is_available():
            gpu = UInt8Pixels(PixelSpec(args.size, "shortest", "bicubic", "cuda"))
            device = torch.device("cuda")
            start = time.perf_counter()
            gpu_pixels = torch.cat([gpu.finish([gpu.from_file(f) for f in files[i:i + 64]], device).cpu()
                                    for i in range(0, len(files), 64)])
            seconds = time.perf_counter() - start
            gdiff = (pil_pixels.int() - gpu_pixels.int()).abs()
            print(f"cuda (nvJPEG) vs pil pixels: max {gdiff.max().item()} levels, mean"
                  f" {gdiff.float().mean().item():.4f}; {seconds / len(files) * 1000:.2f} ms/image incl. file reads")
        else:
            print("cuda decoder: not measured (no CUDA device)")


if __name__ == "__main__":
    main()
