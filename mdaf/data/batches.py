"""Batches for training: whole-array slicing, a seeded permutation per epoch, rank sharding.

Each batch gathers only its own rows (sorted, for sequential reads when the arrays are memmaps
of the cache), so a split larger than RAM streams from disk. The order of an epoch is a pure
function of ``(seed, epoch)``, which makes resuming at any batch exact.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import torch

from mdaf.schema import FEATURE_KEYS, LABEL_KEY

BATCH_KEYS = (*FEATURE_KEYS, LABEL_KEY, "timestamp")
_DTYPES = {LABEL_KEY: np.float32}


class BatchIterator:
    """Batches of the batch contract (:mod:`mdaf.schema`) as dicts of torch tensors.

    With ``world_size > 1`` every rank gets the same number of batches: the epoch's permutation
    is padded by repeating its first indices (as ``DistributedSampler`` does) or, with
    ``drop_last``, cut to a multiple of ``world_size``; rank ``r`` takes every ``world_size``-th
    index starting at ``r``. ``drop_last`` also drops each rank's last incomplete batch.
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        keys: tuple[str, ...] = BATCH_KEYS,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        missing = [k for k in keys if k not in arrays]
        if missing:
            raise KeyError(f"arrays lack the keys {missing}; expected {list(keys)}")
        sizes = {k: len(arrays[k]) for k in keys}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"arrays must have the same number of rows, got {sizes}")
        self.arrays = {k: arrays[k] for k in keys}
        self.num_samples = next(iter(sizes.values()))
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.rank, self.world_size = rank, world_size
        if drop_last:
            self.per_rank = self.num_samples // world_size
        else:
            self.per_rank = -(-self.num_samples // world_size)
        if self.num_samples == 0:
            self.per_rank = 0

    def __len__(self) -> int:
        if self.drop_last:
            return self.per_rank // self.batch_size
        return -(-self.per_rank // self.batch_size)

    def indices(self, epoch: int) -> np.ndarray:
        """This rank's sample indices for ``epoch``, in batch order."""
        n = self.num_samples
        order = (
            np.random.default_rng([self.seed, epoch]).permutation(n)
            if self.shuffle
            else np.arange(n, dtype=np.int64)
        )
        total = self.per_rank * self.world_size
        if total > n:
            order = np.resize(order, total)  # repeats from the start
        return order[:total][self.rank :: self.world_size]

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """The batches of ``epoch`` from batch index ``start`` on."""
        index = self.indices(epoch)
        for b in range(start, len(self)):
            rows = np.sort(index[b * self.batch_size : (b + 1) * self.batch_size])
            yield {
                k: torch.from_numpy(np.ascontiguousarray(a[rows], dtype=_DTYPES.get(k, np.int64)))
                for k, a in self.arrays.items()
            }

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self.batches(0)
