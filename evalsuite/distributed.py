"""Data-parallel evaluation under torchrun: every rank encodes a strided shard of each task's samples (exact
counts, no padding duplicates), the shards are gathered and put back in sample order, and every rank then holds
the same features and computes the same metrics; only rank 0 writes files.

NCCL on GPUs, gloo on CPUs. Multi-node works the same way (torchrun with a rendezvous endpoint, or Slurm's
``srun torchrun ...``); ranks must see the same data and results paths.
"""

from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


def rank_and_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


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


def gather_shards(kept: list[int], features: torch.Tensor, labels: torch.Tensor,
                  failures: list[tuple[int, str]]) -> tuple[list[int], torch.Tensor, torch.Tensor, list[str]]:
    """All ranks' (global index, feature, label) and failures, merged in global sample order."""
    parts: list = [None] * rank_and_size()[1]
    dist.all_gather_object(parts, (kept, features.cpu(), labels.cpu(), failures))
    all_kept = [i for p in parts for i in p[0]]
    order = sorted(range(len(all_kept)), key=all_kept.__getitem__)
    non_empty = [p for p in parts if len(p[0])]
    feats = torch.cat([p[1] for p in non_empty]) if non_empty else features[:0]
    labs = torch.cat([p[2] for p in non_empty]) if non_empty else labels[:0]
    index = torch.tensor(order, dtype=torch.long)
    merged_failures = [msg for _, msg in sorted(f for p in parts for f in p[3])]
    return [all_kept[i] for i in order], feats[index], labs[index], merged_failures
