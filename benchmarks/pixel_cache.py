"""What --cache-pixels saves the second model: the time to evaluate model B on a task after model A filled the
pixel cache, vs model B decoding the JPEGs itself. Both models share the preprocessing (224 px, shortest side +
centre crop, bicubic) and differ in weights, like two EVA-CLIP checkpoints. The models are small random-init ViTs
(4 layers, width 256), to make decoding as large a share of the work as a CPU allows (on a GPU it dominates for
EVA02-CLIP-B/L).
Printed for each run: wall time and CPU seconds (this process and its loader workers), because on this 2-core
machine the encoder competes with decoding for the same cores, so the wall-time gain understates what the cache
frees on a GPU machine, where decoding is the limit. Also printed: that both ways give the same metrics, and the
cache's size on disk.

    python benchmarks/pixel_cache.py [--images 600] [--workers N]
"""

from __future__ import annotations

import argparse
import csv
import resource
import tempfile
import time
from pathlib import Path

from throughput import prepare_workspace
from vs_clip_benchmark import write_model as write_small_model


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the DataLoader workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    from evalsuite.cli import main as evalsuite_main

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepare_workspace(tmp, args.images)
        model_a, model_b = write_small_model(tmp / "a", 0), write_small_model(tmp / "b", 1)

        rates: dict[str, float] = {}  # images/s of the image side (read or decode + encode), from the CSV

        def run(model: Path, out: str, *extra: str) -> tuple[float, float, dict]:
            argv = ["run", "--model", f"local-dir:{model}", "--tasks", "things", "--data-root", str(tmp / "data"),
                    "--include-path", str(tmp / "inc"), "--output-dir", str(tmp / out), "--no-cache-features",
                    "--bootstrap", "0", *extra]
            if args.workers is not None:
                argv += ["--workers", str(args.workers)]
            start, cpu_start = time.perf_counter(), cpu_seconds()
            if evalsuite_main(argv) != 0:
                raise SystemExit(f"evalsuite run failed: {argv}")
            seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
            rows = list(csv.DictReader(next((tmp / out).iterdir()).joinpath("things.csv").open()))
            rates[out] = float(rows[0]["images_per_second"])
            return seconds, cpu, {r["metric"]: r["value"] for r in rows}

        fill, fill_cpu, _ = run(model_a, "out-a", "--cache-pixels")
        decoding, decoding_cpu, metrics_decoded = run(model_b, "out-b-decode")
        cached, cached_cpu, metrics_cached = run(model_b, "out-b-cached", "--cache-pixels")
        size = sum(p.stat().st_size for p in (tmp / "cache" / "pixels").glob("*.npy"))
    print(f"{args.images} generated 500x375 JPEGs; small ViT (4 layers, width 256) at 224 px; CPU fp32")
    for label, out, wall, cpu in [("model A, decoding and filling the pixel cache", "out-a", fill, fill_cpu),
                                  ("model B, decoding", "out-b-decode", decoding, decoding_cpu),
                                  ("model B, from the pixel cache", "out-b-cached", cached, cached_cpu)]:
        print(f"{label + ':':<47}{wall:5.1f} s wall, {cpu:5.1f} s CPU, image side {rates[out]:6.1f} images/s")
    print(f"second model: image side {rates['out-b-cached'] / rates['out-b-decode']:.2f}x faster,"
          f" {decoding / cached:.2f}x less wall time, {decoding_cpu / cached_cpu:.2f}x less CPU time;"
          f" cache {size / 2**20:.0f} MiB ({size / args.images / 1024:.0f} KiB per image)")
    print(f"metrics equal: {metrics_decoded == metrics_cached}")


if __name__ == "__main__":
    main()
