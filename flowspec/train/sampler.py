"""Data order and noise seeds that make a run reproducible step by step.

Each epoch's order is a permutation seeded by ``seed + epoch`` (as ``DistributedSampler``), and each
step reseeds torch from ``(seed, step)`` before the dequantization noise is drawn, so a run resumed
from a checkpoint takes exactly the batches and noise of an uninterrupted run. Under DDP on the CPU
each rank skips the noise of the ranks before it, so a W-process run draws the noise of the
single-process run on the same global batch.
"""

from __future__ import annotations

import torch
from torch.utils.data.distributed import DistributedSampler


class BlockSampler(DistributedSampler):
    """The data order of one rank: each epoch a permutation seeded by ``seed + epoch`` (as
    ``DistributedSampler``), cut into global batches of ``batch_size``; rank ``r`` takes the
    ``r``-th contiguous block of ``batch_size / W`` of each, so the W ranks together see exactly the
    single-process batch, in the same order (the incomplete last batch is dropped)."""

    def __init__(self, n: int, batch_size: int, num_replicas: int, rank: int, seed: int):
        super().__init__(range(n), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.global_batch = batch_size
        self.local_batch = batch_size // num_replicas

    def __len__(self) -> int:
        return (len(self.dataset) // self.global_batch) * self.local_batch

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.dataset), generator=generator).tolist()
        indices: list[int] = []
        for start in range(0, len(order) - self.global_batch + 1, self.global_batch):
            first = start + self.rank * self.local_batch
            indices.extend(order[first:first + self.local_batch])
        return iter(indices)


def seed_step(seed: int, step: int, rank_offset: int, device: torch.device) -> None:
    """Reseed torch for ``step``; on the CPU skip ``rank_offset`` uniforms (the noise of the ranks
    before this one), so W ranks draw the single-process noise of the global batch."""
    torch.manual_seed((seed * 1_000_003 + step + 7) % (2 ** 63))
    if rank_offset and device.type == "cpu":
        torch.rand(rank_offset)
    elif rank_offset:
        torch.cuda.manual_seed((seed * 1_000_003 + step + 7) * 8191 + rank_offset)
