"""What --cache-pixels saves the second model: the time to evaluate model B on a task after model A filled the
pixel cache, vs model B decoding the JPEGs itself. Both models share the preprocessing (224 px, shortest side +
centre crop, bicubic) and differ in weights, like two EVA-CLIP checkpoints. The models are small random-init ViTs
(4 layers, width 256), where decoding rather than the encoder dominates, as it does for EVA02-CLIP-B/L on a GPU.
Also printed: that both ways give the same metrics, and the cache's size on disk.

    python benchmarks/pixel_cache.py [--images 600] [--workers N]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

from throughput import write_images, write_task

SMALL_CFG = {
    "embed_dim": 256,
    "vision_cfg": {"image_size": 224, "layers": 4, "width": 256, "head_width": 64, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 192, "heads": 4, "layers": 4},
}


def write_small_model(folder: Path, seed: int) -> Path:
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = open_clip.CLIP(**SMALL_CFG)
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": SMALL_CFG}))
    return folder


def main() -> None:
    from evalsuite.cli import main as evalsuite_main

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["EVALSUITE_CACHE_DIR"] = str(tmp / "cache")
        write_images(tmp / "data", args.images)
        write_task(tmp / "inc")
        model_a, model_b = write_small_model(tmp / "a", 0), write_small_model(tmp / "b", 1)

        def run(model: Path, out: str, *extra: str) -> tuple[float, dict]:
            argv = ["run", "--model", f"local-dir:{model}", "--tasks", "things", "--data-root", str(tmp / "data"),
                    "--include-path", str(tmp / "inc"), "--output-dir", str(tmp / out), "--no-cache-features",
                    "--bootstrap", "0", *extra]
            if args.workers is not None:
                argv += ["--workers", str(args.workers)]
            start = time.perf_counter()
            if evalsuite_main(argv) != 0:
                raise SystemExit(f"evalsuite run failed: {argv}")
            seconds = time.perf_counter() - start
            rows = csv.DictReader(next((tmp / out).iterdir()).joinpath("things.csv").open())
            return seconds, {r["metric"]: r["value"] for r in rows}

        fill, _ = run(model_a, "out-a", "--cache-pixels")
        decoding, metrics_decoded = run(model_b, "out-b-decode")
        cached, metrics_cached = run(model_b, "out-b-cached", "--cache-pixels")
        size = sum(p.stat().st_size for p in (tmp / "cache" / "pixels").glob("*.npy"))
    print(f"{args.images} generated 500x375 JPEGs; small ViT (4 layers, width 256) at 224 px; CPU fp32")
    print(f"model A, decoding and filling the pixel cache: {fill:.1f} s")
    print(f"model B, decoding:                             {decoding:.1f} s")
    print(f"model B, from the pixel cache:                 {cached:.1f} s")
    print(f"speed-up for the second model: {decoding / cached:.2f}x; cache {size / 2**20:.0f} MiB"
          f" ({size / args.images / 1024:.0f} KiB per image)")
    print(f"metrics equal: {metrics_decoded == metrics_cached}")


if __name__ == "__main__":
    main()
