"""Distributed data parallel under ``torchrun``: one process per device, gradients averaged by
``torch.nn.parallel.DistributedDataParallel`` (gloo on the CPU, nccl on GPUs).

``torchrun`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`setup` reads them. With a global batch ``B`` over ``W`` processes each rank takes ``B / W``
examples; DDP averages the per-rank mean gradients, which equals the gradient of the global mean.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from flowspec.errors import FlowSpecError


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def environment() -> DistEnv:
    """The process's place in a ``torchrun`` launch (a single process when not launched so)."""
    try:
        return DistEnv(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
                       int(os.environ.get("WORLD_SIZE", 1)))
    except ValueError as error:
        raise FlowSpecError(f"bad torchrun environment: {error}") from None


def setup(device: torch.device) -> DistEnv:
    """Join the process group when launched by torchrun with more than one process."""
    env = environment()
    if env.distributed and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(env.local_rank)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return env


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def any_true(flag: bool, device: torch.device) -> bool:
    """``flag`` OR-ed over all ranks (so every rank stops together)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def step_summary(loss: torch.Tensor, stop: bool) -> tuple[torch.Tensor, bool]:
    """In one all-reduce: the mean of the scalar ``loss`` over all ranks (each rank's loss is the
    mean over an equal share of the global batch, so this is the single-process batch mean; it is
    non-finite when any rank's is) and whether any rank was asked to stop."""
    if not (dist.is_available() and dist.is_initialized()):
        return loss.detach(), stop
    packed = torch.stack([loss.detach().float().reshape(()), loss.new_tensor(1.0 if stop else 0.0).float()])
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    return packed[0] / dist.get_world_size(), bool(packed[1].item() > 0)
