"""Decode work and frame-cache size per clip of the frame rules, side by side on the same clips: the `vissl` rule
(header count, one decode stopped at the target, vissl's JPEG) against `decoded_middle` (evalsuite's earlier
reader: a counting pass over the whole clip, then a second pass to the frame, lossless PNG).

Work is counted in decoded frames, reported as full decodes of the clip (decoded frames / frames in the clip);
wall time per clip is printed beside it. Clips: ../shared/data/videos when present, else generated H.264 clips.

    python benchmarks/video_decode.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import av

from evalsuite.data import video

SHARED_VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"


def clips(scratch: Path) -> tuple[list[Path], str]:
    if SHARED_VIDEOS.is_dir():
        found = sorted(p for p in SHARED_VIDEOS.rglob("*") if p.suffix in (".mp4", ".avi"))
        return found, f"the {len(found)} shared real clips ({SHARED_VIDEOS})"
    from PIL import Image

    from evalsuite.data.synthetic_clips import write_clip

    made = []
    for k, n in enumerate((60, 150, 300)):
        frames = [Image.new("RGB", (320, 240), (i % 256, (i * 3) % 256, 90)) for i in range(n)]
        write_clip(scratch / f"clip{k}.mp4", frames)
        made.append(scratch / f"clip{k}.mp4")
    return made, f"{len(made)} generated H.264 clips"


class CountingOpen:
    """``av.open`` whose containers count the frames ``decode`` yields."""

    def __init__(self) -> None:
        self.frames = 0
        self.real = av.open

    def __call__(self, *args, **kwargs):
        counter, container = self, self.real(*args, **kwargs)

        class Counted:
            def __enter__(self):
                container.__enter__()
                return self

            def __exit__(self, *exc):
                return container.__exit__(*exc)

            def __getattr__(self, name):
                return getattr(container, name)

            def decode(self, *a, **k):
                for frame in container.decode(*a, **k):
                    counter.frames += 1
                    yield frame

        return Counted()


def measure(rule: str, clip: Path, counting: CountingOpen) -> tuple[int, float, int]:
    counting.frames = 0
    start = time.perf_counter()
    data, _ = video.read_frame_bytes(clip, rule)
    return counting.frames, time.perf_counter() - start, len(data)


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        found, what = clips(Path(scratch))
        totals = {p: video.count_frames(p) for p in found}
        counting = CountingOpen()
        av.open = counting
        try:
            results = {rule: [measure(rule, p, counting) for p in found] for rule in ("decoded_middle", "vissl")}
        finally:
            av.open = counting.real
    print(f"clips: {what}")
    for rule, rows in results.items():
        decodes = [frames / totals[p] for (frames, _, _), p in zip(rows, found)]
        print(f"{rule:>15}: {statistics.mean(decodes):.2f} full decodes per clip (max {max(decodes):.2f}),"
              f" {statistics.mean(t for _, t, _ in rows) * 1e3:.0f} ms per clip,"
              f" cache {statistics.mean(b for _, _, b in rows) / 1024:.0f} KiB per frame"
              f" ({min(b for *_, b in rows) / 1024:.0f}-{max(b for *_, b in rows) / 1024:.0f})")
    before, after = results["decoded_middle"], results["vissl"]
    print(f"ratios: decode work {sum(f for f, *_ in before) / sum(f for f, *_ in after):.2f}x less,"
          f" time {sum(t for _, t, _ in before) / sum(t for _, t, _ in after):.2f}x less,"
          f" cache {sum(b for *_, b in before) / sum(b for *_, b in after):.1f}x smaller (vissl vs decoded_middle)")


if __name__ == "__main__":
    main()
