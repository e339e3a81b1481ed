"""A shuffling sampler whose order depends only on (seed, epoch): resumed runs see the same data order.

Under DDP each rank takes every ``world_size``-th index of the same permutation (padded by wrapping so all
ranks see equally many), so the ranks' batches together are the single-process batch. Lightning's own
sampler wrapping is switched off (``trainer.use_distributed_sampler: false``) and it calls ``set_epoch``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochSeededSampler(Sampler[int]):
    """Random permutation of ``range(num_samples)`` drawn from ``seed + epoch``, sharded across DDP ranks."""

    def __init__(self, num_samples: int, seed: int = 0):
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.num_samples, generator=g).tolist()
        rank, world = _rank_and_world()
        if world == 1:
            return iter(order)
        per_rank = math.ceil(self.num_samples / world)
        order = (order * world)[: per_rank * world]
        return iter(order[rank::world])

    def __len__(self) -> int:
        rank, world = _rank_and_world()
        return math.ceil(self.num_samples / world)
