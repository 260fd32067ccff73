"""``evalsuite run --nproc-per-node N``: torchrun's launcher, run in-process, so the documented exit code reaches the
shell. torchrun itself turns any worker's non-zero code (2 bad input, 3 flagged, 4 regression) into 1 and prints a
launcher traceback; here rank 0's code (else the first failing rank's) is the process's, with one line of report.
"""

from __future__ import annotations

import logging
import sys
import uuid


def strip_launch_flag(argv: list[str]) -> list[str]:
    """The run's arguments for the workers: without --nproc-per-node (a worker never launches again)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc-per-node":
            skip = True
        elif not arg.startswith("--nproc-per-node="):
            out.append(arg)
    return out


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``python -m evalsuite <argv>`` on ``nproc`` local ranks (gloo on CPUs, NCCL on GPUs) and return the code
    the run would have had in one process."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1)
    # the agent's own lines ("closing signal", failure tables) repeat what rank 0 already said
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        elastic_launch(config, sys.executable)("-m", "evalsuite", *strip_launch_flag(argv))
    except ChildFailedError as exc:
        failures = exc.failures  # global rank -> ProcessFailure; a negative code: stopped by a signal
        codes = [failures[r].exitcode for r in ([0] if 0 in failures else []) + sorted(failures)]
        return next((c for c in codes if c > 0), 1)
    return 0
