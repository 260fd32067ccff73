"""Progress people can follow: on a terminal a tqdm bar per task counting images (or clips, captions, prompts)
with total, percent, rate and ETA, kept when it ends; elsewhere (Slurm, CI logs) a timestamped log line at most
every 30 s with done/total and rate, plus one at the end; ``off`` prints nothing.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Callable, Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")
MODES = ("bar", "lines", "off")
LINE_INTERVAL_S = 30.0

log = logging.getLogger("evalsuite")


def progress_mode(flag: Optional[bool]) -> str:
    """--progress: bar; --no-progress: off; neither: a bar on a terminal, timestamped lines otherwise."""
    if flag is None:
        return "bar" if sys.stderr.isatty() else "lines"
    return "bar" if flag else "off"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return (f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600
            else f"{seconds // 60}m{seconds % 60:02d}s")


class Progress:
    """Counts done items of one step (``desc``) out of ``total``."""

    def __init__(self, desc: str, total: int, unit: str = "images", mode: str = "lines",
                 interval: float = LINE_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.desc, self.total, self.unit, self.mode = desc, total, unit, mode
        self.interval, self.clock = interval, clock
        self.done, self.start = 0, clock()
        self.last_line = self.start
        self.bar = None
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit[:-1] if unit.endswith("s") else unit, leave=True,
                            dynamic_ncols=True, file=sys.stderr)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.mode == "lines" and self.clock() - self.last_line >= self.interval:
            self.last_line = self.clock()
            log.info("%s", self.line())

    def line(self) -> str:
        elapsed = max(self.clock() - self.start, 1e-9)
        rate = self.done / elapsed
        text = f"{self.desc}: {self.done}/{self.total} {self.unit}"
        if self.total:
            text += f" ({100 * self.done / self.total:.0f}%)"
        text += f", {rate:.1f} {self.unit}/s"
        if 0 < self.done < self.total and rate > 0:
            text += f", ETA {_duration((self.total - self.done) / rate)}"
        return text

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "lines" and self.done:
            log.info("%s in %s", self.line(), _duration(self.clock() - self.start))


def track(items: Iterable[T], desc: str, total: int, mode: str, unit: str = "images",
          count: Callable[[T], int] = lambda item: 1) -> Iterator[T]:
    """Yield ``items``, counting ``count(item)`` units after each (e.g. the samples of a batch)."""
    progress = Progress(desc, total, unit, mode)
    try:
        for item in items:
            yield item
            progress.update(count(item))
    finally:
        progress.close()
