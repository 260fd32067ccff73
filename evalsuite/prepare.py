"""``evalsuite prepare``: get each task's data in place (download and convert where a source can), then verify
the sample count. One outcome per task; a task that fails never stops the others.

Before anything is fetched the plan is printed, one line per task: the source that already holds the data, else
the first source in YAML order that can download it, else the manual steps. ``--dry-run`` stops there. Without
a network (one probe of the Hugging Face endpoint, not a timeout per task) nothing is fetched or created: each task
that needs a download fails with one line, and the command exits 2.
"""

from __future__ import annotations

import os
import socket
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit

from .config import TaskSpec
from .data.base import DataSource, Samples
from .errors import DataNotFoundError, DatasetUnavailableError, TasksFailedError
from .tasks import build_task

PRESENT, DOWNLOAD, MANUAL = "present", "download", "manual"


@dataclass(frozen=True)
class PrepareOutcome:
    task: str
    ok: bool
    message: str
    num_samples: Optional[int] = None

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.task}: {' '.join(self.message.split())}"


@dataclass(frozen=True)
class PlanStep:
    """What ``prepare`` would do for one task, decided without the network and without writing anything."""

    task: str
    action: str  # PRESENT | DOWNLOAD | MANUAL
    source: str  # describe_source() of the source that holds / would fetch the data
    kind: str
    detail: str  # where the data is, where it would go, or what the user must do
    num_samples: Optional[int] = None  # PRESENT: the listing's size
    # PRESENT: what is wrong with the listing besides its size (listing_problems); DOWNLOAD: why a copy that is
    # there was not used
    problems: tuple[str, ...] = ()

    def line(self) -> str:
        return f"plan {self.task}: {self.action} {self.source}: {' '.join(self.detail.split())}"


def describe_source(source: DataSource) -> str:
    """The kind and what it reads: ``webdataset clip-benchmark/wds_cars@main split=test``."""
    args = source.args
    name = getattr(args, "repo", "") or getattr(args, "dataset", "") or getattr(args, "path", "")
    revision = getattr(args, "revision", "")
    revision = revision[:12] if len(revision) == 40 else revision  # a pinned commit: its YAML has it in full
    split = getattr(args, "split", "")
    return " ".join(p for p in (source.kind, f"{name}@{revision}" if name and revision else name,
                                f"split={split}" if split else "") if p)


def can_download(source: DataSource) -> bool:
    """Sources that override ``fetch`` download; ``download: false`` (clip_benchmark) marks a known-dead one."""
    return type(source).fetch is not DataSource.fetch and getattr(source.args, "download", True) is not False


def destination(source: DataSource, data_root: Path) -> str:
    root = getattr(source, "root", None)
    if callable(root):
        return f"into {root(data_root)}"
    if getattr(source.args, "repo", ""):
        return "into the Hugging Face cache (HF_HOME), read there"
    return f"under {data_root}"


def plan_task(spec: TaskSpec, data_root: Path, include_paths=()) -> PlanStep:
    task = build_task(spec, include_paths)
    ctx = task.source_context(data_root)
    problems, present = [], []
    for source in task.sources:  # the order runs use: the first source whose data is present
        try:
            samples = source.samples(ctx)
        except DatasetUnavailableError as exc:
            problems.append(str(exc))
            if not isinstance(exc, DataNotFoundError):  # a copy is there but cannot be used: say so
                present.append(str(exc))
            continue
        if samples.items:
            return PlanStep(spec.name, PRESENT, describe_source(source), source.kind,
                            f"{len(samples.items)} samples at {samples.root or data_root}", len(samples.items),
                            listing_problems(spec, samples))
    downloader = next((s for s in task.sources if can_download(s)), None)
    if downloader is not None:  # a copy that is there but unusable (damaged, wrong class names) is named
        detail = destination(downloader, data_root)
        if present:
            detail += f" (a copy was found but not used: {present[0]})"
        return PlanStep(spec.name, DOWNLOAD, describe_source(downloader), downloader.kind, detail,
                        problems=tuple(present))
    return PlanStep(spec.name, MANUAL, describe_source(task.sources[0]), task.sources[0].kind,
                    problems[0] if problems else "no source found data")


def hub_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    """Whether the Hugging Face endpoint (HF_ENDPOINT; through the https proxy when one is set) accepts a TCP
    connection, and if not why. Every default download but a few torchvision hosts goes there."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False, "HF_HUB_OFFLINE is set"
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or 443
    proxy = urllib.request.getproxies().get(endpoint.scheme or "https")
    if proxy and not urllib.request.proxy_bypass(host):
        parsed = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = parsed.hostname or host, parsed.port or 80
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, ""
    except OSError as exc:
        return False, f"no connection to {host}:{port} ({exc.strerror or type(exc).__name__})"


def listing_problems(spec: TaskSpec, samples: Samples) -> tuple[str, ...]:
    """What a listing's size does not show: files it names that are not there (a Karpathy JSON or a UCF list
    without its images or clips), and a caption count other than the task's."""
    problems = []
    absent = [f for f in samples.files() if not os.path.exists(f)]
    if absent:
        problems.append(f"{len(absent)} of the files the listing names are missing (e.g. {absent[0]})")
    captions = getattr(samples, "captions", None)
    if captions is not None and spec.expected_num_texts is not None:
        texts = sum(len(c) for c in captions)
        if texts != spec.expected_num_texts:
            problems.append(f"{texts} captions, the task expects {spec.expected_num_texts}")
    return tuple(problems)


def _checked(spec: TaskSpec, n: int, action: str, kind: str, data_root: Path,
             problems: tuple[str, ...] = ()) -> PrepareOutcome:
    where = f"{n} samples {action} (source {kind}) under {data_root}"
    wrong = list(problems)
    if spec.expected_num_samples is not None and n != spec.expected_num_samples:
        wrong.insert(0, f"the task expects {spec.expected_num_samples} samples")
    if wrong:
        return PrepareOutcome(spec.name, False, f"{where}, but {'; '.join(wrong)}: incomplete or a different"
                                                " version of the dataset", n)
    return PrepareOutcome(spec.name, True, where, n)


def prepare_task(spec: TaskSpec, data_root: Path, include_paths=()) -> PrepareOutcome:
    task = build_task(spec, include_paths)
    ctx = task.source_context(data_root)
    action = "found"
    try:
        samples = task.find_samples(ctx)
    except DatasetUnavailableError:
        problems = []
        for source in task.sources:  # in YAML order: the first that can fetch the data wins
            try:
                source.fetch(ctx)
                break
            except DatasetUnavailableError as exc:
                problems.append(str(exc) if len(task.sources) == 1 else f"[{source.kind}] {exc}")
        else:
            return PrepareOutcome(spec.name, False, " | ".join(problems))
        action = "downloaded"
        try:
            samples = task.find_samples(ctx)
        except DatasetUnavailableError as exc:
            return PrepareOutcome(spec.name, False, f"downloaded, but then not readable: {exc}")
    return _checked(spec, len(samples.items), action, task.source_used, data_root, listing_problems(spec, samples))


def prepare_tasks(specs: list[TaskSpec], data_root: Path, include_paths=()) -> list[PrepareOutcome]:
    return [prepare_task(spec, data_root, include_paths) for spec in specs]


def _say(line: str) -> None:
    print(line, flush=True)


def run_prepare(specs: list[TaskSpec], data_root: Path, include_paths=(), *, dry_run: bool = False,
                online: Optional[bool] = None, out: Callable[[str], None] = _say) -> int:
    """The ``prepare`` command: the plan, then (unless ``dry_run``) one outcome line per task. Raises
    DatasetUnavailableError (exit 2) when downloads were needed and the network is unreachable (nothing is
    fetched or created then), TasksFailedError (exit 3) when other tasks are not ready. ``online``: skip the
    probe (tests)."""
    plans = [plan_task(spec, data_root, include_paths) for spec in specs]
    for plan in plans:
        out(plan.line())
    if dry_run:
        return 0
    why = ""
    if online is None and any(p.action == DOWNLOAD for p in plans):
        online, why = hub_reachable()
    offline, failed = [], []
    for spec, plan in zip(specs, plans):
        if plan.action == PRESENT:
            outcome = _checked(spec, plan.num_samples or 0, "found", plan.kind, data_root, plan.problems)
        elif plan.action == DOWNLOAD and online is False:
            offline.append(spec.name)
            found = f"; the copy found was not used: {plan.problems[0]}" if plan.problems else ""
            outcome = PrepareOutcome(spec.name, False, f"offline: needs a download ({plan.source}), nothing was"
                                                       " fetched; rerun with a network, or put a copy where the"
                                                       f" plan line says{found}")
        else:
            outcome = prepare_task(spec, data_root, include_paths)
        out(outcome.line())
        if not outcome.ok:
            failed.append(spec.name)
    if offline:
        raise DatasetUnavailableError(f"{len(failed)} of {len(plans)} task(s) not ready; {len(offline)} need a"
                                      f" download and the network is unreachable ({why or 'offline'})")
    if failed:
        raise TasksFailedError(f"{len(failed)} of {len(plans)} task(s) not ready: {', '.join(failed)}")
    return 0
