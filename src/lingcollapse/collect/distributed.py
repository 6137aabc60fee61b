"""Data-parallel collection under ``torchrun``: each rank a disjoint block, merged on rank 0.

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) this is a single process.
Ranks send their finished statistics to rank 0 one after another, and rank 0 merges them
in rank order with Chan's formula, so the result does not depend on timing.
"""

from __future__ import annotations

import torch
import torch.distributed as tdist

from lingcollapse.device import Dist
from lingcollapse.stats.classes import ClassStats
from lingcollapse.stats.validation import VALIDATION_KEYS, ValidationStats


def _tensors(stats: ClassStats | ValidationStats) -> list[torch.Tensor]:
    if isinstance(stats, ClassStats):
        parts = [stats.counts, stats.means, stats.m2]
        return parts + ([stats.cov_m2] if stats.cov_m2 is not None else [])
    return [getattr(stats, key) for key in VALIDATION_KEYS]


def merge_to_rank0(results: dict, dist: Dist) -> dict:
    """Rank 0 gets the merge of every rank's ``{layer: stats}``; others keep theirs."""
    if dist.world == 1:
        return results
    for mine in results.values():
        if dist.rank == 0:
            for source in range(1, dist.world):
                other = _like(mine)
                for tensor in _tensors(other):
                    tdist.recv(tensor, src=source)
                mine.merge(other)
        else:
            for tensor in _tensors(mine):
                tdist.send(tensor.contiguous(), dst=0)
    return results


def _like(stats: ClassStats | ValidationStats) -> ClassStats | ValidationStats:
    if isinstance(stats, ClassStats):
        cov = None if stats.cov_m2 is None else torch.empty_like(stats.cov_m2)
        return ClassStats(
            torch.empty_like(stats.counts),
            torch.empty_like(stats.means),
            torch.empty_like(stats.m2),
            cov,
        )
    return ValidationStats(
        *(torch.empty_like(t) for t in _tensors(stats)), metadata=dict(stats.metadata)
    )
