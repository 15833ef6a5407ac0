"""Resumable, seeded data order and per-sample randomness, independent of workers and restarts.

A kill at any iteration followed by a re-run must replay the same batches with the same
augmentations. The order of epoch ``e`` is a permutation seeded by (seed, e); a resumed epoch
starts at the saved batch; each process takes a contiguous share of every global batch. Every
item's transform runs with torch's RNG seeded by (seed, epoch, index), so its draws do not depend
on how many loader workers there are or where the loader restarted.
"""
from __future__ import annotations

import hashlib
import math

import torch
from torch.utils.data import Dataset, Sampler


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts`` (stable across processes and Python runs, unlike ``hash``)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class SeededItems(Dataset):
    """``dataset`` indexed by ``(epoch, index)``: each item is built under torch's RNG seeded by (seed, epoch, index).

    The caller's RNG state is restored afterwards, so loading never moves the training RNG.
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, "item", epoch, index))
            return self.dataset[index]


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, "order", epoch)))


def smallest_share(batch: int, world: int) -> int:
    """Images the last process gets from a global batch of ``batch`` split as :class:`EpochBatches` splits it."""
    return max(batch - (world - 1) * math.ceil(batch / world), 0)


class EpochBatches(Sampler):
    """This process's batches of one epoch, from batch ``start`` on, as lists of ``(epoch, index)``.

    Global batch ``b`` is ``perm[b * batch : (b + 1) * batch]``; process ``rank`` of ``world`` takes
    its ``rank``-th contiguous share, so the union over processes is exactly the one-process batch.
    """

    def __init__(self, n: int, batch: int, num_batches: int, seed: int, epoch: int, start: int = 0,
                 rank: int = 0, world: int = 1):
        self.n, self.batch, self.num_batches, self.seed, self.epoch = n, batch, num_batches, seed, epoch
        self.start, self.rank, self.world = start, rank, world

    def __len__(self) -> int:
        return max(self.num_batches - self.start, 0)

    def __iter__(self):
        order = epoch_permutation(self.n, self.seed, self.epoch).tolist()
        for b in range(self.start, self.num_batches):
            chunk = order[b * self.batch:(b + 1) * self.batch]
            share = math.ceil(len(chunk) / self.world)
            yield [(self.epoch, i) for i in chunk[self.rank * share:(self.rank + 1) * share]]
