"""Data-parallel evaluation under torchrun: every rank encodes a strided shard of each task's samples (exact
counts, no padding duplicates), the shards are gathered and put back in sample order, and every rank then holds
the same features and computes the same metrics; only rank 0 writes files.

NCCL on GPUs, gloo on CPUs. Multi-node works the same way (torchrun with a rendezvous endpoint, or Slurm's
``srun torchrun ...``); ranks must see the same data and results paths.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
from typing import Any, Callable, Iterator, Optional

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


_local_only = 0  # > 0 inside ``local_only()``: this process evaluates alone, whatever group it is in


def group_size() -> int:
    """Ranks of the initialized process group (a training job's, or torchrun's), 1 without one."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank_and_size() -> tuple[int, int]:
    if not _local_only and group_size() > 1:
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextlib.contextmanager
def local_only() -> Iterator[None]:
    """Evaluate in this process alone although it belongs to a process group (``evaluate(...,
    distributed=False)``: a training job that evaluates on rank 0 only; no collective waits for the others)."""
    global _local_only
    _local_only += 1
    try:
        yield
    finally:
        _local_only -= 1


def is_writer() -> bool:
    return rank_and_size()[0] == 0


def init_from_env(device: str) -> str:
    """Join the torchrun group when launched by torchrun (WORLD_SIZE > 1); returns the device this rank uses."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return device
    use_cuda = device != "cpu" and torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    rank, size = rank_and_size()
    if rank != 0:  # rank 0 alone reports (every rank holds the same results); internal errors still print
        logging.getLogger("evalsuite").setLevel(logging.CRITICAL)
    log.info("distributed: %d ranks (%s)", size, "nccl" if use_cuda else "gloo")
    return f"cuda:{local_rank}" if use_cuda else "cpu"


def shard(n: int) -> list[int]:
    rank, size = rank_and_size()
    return list(range(rank, n, size))


def all_ranks(value: Any) -> list:
    """Every rank's ``value``, in rank order (``[value]`` in one process)."""
    size = rank_and_size()[1]
    if size == 1:
        return [value]
    parts: list = [None] * size
    dist.all_gather_object(parts, value)
    return parts


def all_agree(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on every rank: a choice (use a cache entry) that ranks must make
    together, since one rank taking another path would leave the others waiting in a collective."""
    return all(all_ranks(bool(flag)))


def in_step(step: Callable[[], Any]) -> Any:
    """Run ``step`` (a write or check that only rank 0 makes) and keep the ranks in step: when it raises on any
    rank, every rank raises (that rank its own error, the others a copy). A rank-0 error alone would send it to
    the exit barrier while the others wait in the next task's collective, and the run would hang in silence."""
    if rank_and_size()[1] == 1:
        return step()
    try:
        result, error = step(), None
    except Exception as exc:  # noqa: BLE001 - handed to the other ranks, then raised here as well
        result, error = None, exc
    errors = [e for e in all_ranks(None if error is None else _portable(error)) if e is not None]
    if error is not None:
        raise error
    if errors:
        raise errors[0]
    return result


# one rank's shard: (dataset indices of its readable samples, their features, its failures as (index, message))
Shard = tuple[list[int], torch.Tensor, list[tuple[int, str]]]


def gather_shards(encode: Callable[[], Optional[Shard]]) -> Optional[tuple[list[int], torch.Tensor, list[str]]]:
    """Run this rank's ``encode`` and merge every rank's shard in global sample order: (indices, features,
    failure messages), the same on every rank.

    Ranks agree on the outcome, so they stay in step for the next task: when ``encode`` raises on any rank, every
    rank raises (that rank its own error, the others a copy, so a typed error fails the task everywhere alike);
    when it returns None on any rank (a damaged cache entry), every rank gets None."""
    try:
        local: Any = encode()
    except Exception as exc:  # noqa: BLE001 - handed to the other ranks, then raised here as well
        if rank_and_size()[1] > 1:
            all_ranks(_portable(exc))
        raise
    parts = all_ranks(local)
    errors = [p for p in parts if isinstance(p, BaseException)]
    if errors:
        raise errors[0]
    if any(p is None for p in parts):
        return None
    return _merge(parts)


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (the typed errors do), else a RuntimeError carrying its message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any unpicklable exception
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _merge(parts: list) -> tuple[list[int], torch.Tensor, list[str]]:
    all_kept = [i for p in parts for i in p[0]]
    order = torch.tensor(sorted(range(len(all_kept)), key=all_kept.__getitem__), dtype=torch.long)
    non_empty = [p[1].cpu() for p in parts if len(p[0])]
    features = torch.cat(non_empty)[order] if non_empty else torch.empty(0, 0)
    failures = [msg for _, msg in sorted(f for p in parts for f in p[2])]
    return [all_kept[i] for i in order.tolist()], features, failures
