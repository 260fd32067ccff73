"""Memory of blocked retrieval scoring on a synthetic 20k images x 100k captions problem.

evalsuite ranks queries in blocks (metrics.retrieval_metrics), so its score memory is block x gallery instead of
images x captions. The figure printed is peak RSS growth during the two-way ranking divided by the size of the
full float32 score matrix that an unblocked computation (one images @ texts.T) has to hold; target <= 0.25.
The same ranking with a block of 4,096 rows runs in a second process beside it, to show memory scales with the
block, not the problem (an unblocked 20k x 100k run needs the 8 GB matrix plus as much again in masks and was
killed by the OOM killer on this 24 GB machine). Each run is a fresh process so peaks do not mix.

    python benchmarks/bench_retrieval_memory.py [--images 20000 --texts 100000 --dim 64]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, sys, time, torch
from evalsuite.metrics import retrieval_metrics

images_n, texts_n, dim, block = map(int, sys.argv[1:5])

def rss_kb(field):
    for line in open('/proc/self/status'):
        if line.startswith(field + ':'):
            return int(line.split()[1])

g = torch.Generator().manual_seed(0)
images = torch.nn.functional.normalize(torch.randn(images_n, dim, generator=g), dim=-1)
text_to_image = [i % images_n for i in range(texts_n)]
texts = torch.nn.functional.normalize(images[text_to_image] + torch.randn(texts_n, dim, generator=g), dim=-1)
before = rss_kb('VmRSS')
start = time.perf_counter()
metrics, _, _ = retrieval_metrics(images, texts, text_to_image, [1, 5, 10], block=block)
seconds = time.perf_counter() - start
print(json.dumps({"peak_growth_kb": rss_kb('VmHWM') - before, "seconds": seconds,
                  "mean_recall": metrics["mean_recall"]}))
"""


def run(images: int, texts: int, dim: int, block: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(images), str(texts), str(dim), str(block)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--texts", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64)
    args = parser.parse_args()
    full_matrix_gb = args.images * args.texts * 4 / 1e9
    blocked = run(args.images, args.texts, args.dim, 512)
    big = run(args.images, args.texts, args.dim, 4096)
    assert abs(blocked["mean_recall"] - big["mean_recall"]) < 1e-12, "block size changed the result"
    for name, r in (("block 512", blocked), ("block 4096", big)):
        growth = r["peak_growth_kb"] * 1024 / 1e9
        print(f"{name:<12} peak RSS growth {growth:6.2f} GB = {growth / full_matrix_gb:5.2f} x the full"
              f" {args.images}x{args.texts} fp32 score matrix ({full_matrix_gb:.1f} GB); {r['seconds']:.1f} s")
    ratio = blocked["peak_growth_kb"] * 1024 / 1e9 / full_matrix_gb
    print(f"evalsuite (block 512) / full matrix: {ratio:.3f} (target <= 0.25); identical mean_recall"
          f" {blocked['mean_recall']:.6f}")


if __name__ == "__main__":
    main()
