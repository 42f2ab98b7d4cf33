"""Data-parallel training on one machine: join a torchrun process group, or start one.

Used by NAS (`edgedet search` under torchrun) and by detector training (under torchrun or
`edgedet reproduce det-train --procs N`). On a CPU, N single-threaded processes usually
train faster than one N-threaded process: small convolutions and the matcher's Python
loop parallelise poorly across threads.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import torch


def dist_setup() -> tuple[int, int]:
    """Join the process group when launched by torchrun or `spawn` (gloo on CPU, nccl on
    GPU); returns (rank, world size), (0, 1) outside one."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, fn: Callable[..., Any], args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    try:
        fn(*args)
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def spawn(fn: Callable[..., Any], world: int, args: tuple = ()) -> None:
    """Run `fn(*args)` in `world` fresh processes forming one process group (what torchrun
    does, without a separate launcher); `fn` calls dist_setup. Returns when all finished;
    a failing rank raises here. Results travel through files (rank 0 writes them)."""
    if world == 1:
        fn(*args)
        return
    import torch.multiprocessing as mp

    from edgedet.errors import EdgedetError

    try:
        mp.start_processes(_worker, args=(world, _free_port(), fn, args), nprocs=world, join=True,
                           start_method="spawn")
    except mp.ProcessRaisedException as e:  # the child's traceback: keep its last line
        last = [line for line in str(e).splitlines() if line.strip()][-1]
        raise EdgedetError(f"process {e.error_index} of {world} failed: {last}") from None
    except mp.ProcessExitedException as e:
        raise EdgedetError(f"process {e.error_index} of {world} exited with code {e.exit_code}") from None
