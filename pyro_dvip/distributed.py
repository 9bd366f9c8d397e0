"""Multi-process training under ``torchrun``: one process per device, DDP around the ELBO.

``torchrun`` sets RANK, WORLD_SIZE and LOCAL_RANK; :func:`setup` joins the process group
(NCCL on CUDA, gloo on CPU). DistributedDataParallel wraps :class:`NegELBO` (an ``nn.Module``
whose forward runs Pyro's ELBO): gradients are averaged over ranks, so each rank's loss (the
mean over its share of the global batch) gives the gradient of the global batch mean.
``nn.DataParallel`` is not used: it splits inputs along dim 0 inside one process and breaks
Pyro's plates.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import suppress
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def setup(device_name: str) -> tuple[Context, str]:
    """Join the process group when launched by torchrun; returns the context and the device
    this rank uses (``cuda:LOCAL_RANK`` on GPU machines)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Context(), device_name
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Context(rank, world_size), f"cuda:{local_rank}" if use_cuda else "cpu"


def teardown(context: Context) -> None:
    if context.active and dist.is_initialized():
        dist.destroy_process_group()


def is_worker() -> bool:
    """True in a process that torchrun started as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def exit_worker(status: int) -> None:
    """End a torchrun worker process now, without Python's interpreter shutdown.

    DistributedDataParallel keeps its gloo process group alive after
    ``destroy_process_group`` (torch 2.14: its two worker threads still run), so a worker
    thread can drop the last reference to a finished collective's tensors while the
    interpreter is shutting down. Taking the GIL then ends that thread inside C++, and the
    process aborts with "terminate called without an active exception" (a core dump's
    backtrace: ``ProcessGroupGloo::runLoop`` -> ``~AsyncAllreduceWork`` -> ``decref_pyobject``
    -> ``take_gil`` -> ``pthread_exit``). Call this after :func:`teardown`: it flushes the
    logs and streams, then exits with ``status``, skipping the shutdown that races.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)


def barrier(context: Context) -> None:
    if context.active:
        dist.barrier()


def any_rank(flag: bool, context: Context, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any rank (one tiny all-reduce)."""
    if not context.active:
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather(obj, context: Context):
    """What a checkpoint holds of ``obj`` (plain values and tensors): in a single process
    ``obj`` itself, in a distributed run every rank's, in rank order, on every rank."""
    if not context.active:
        return obj
    gathered = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered
