"""BatchIterator: full coverage per epoch, seeded order, exact resume, equal rank shards, memmaps."""

import numpy as np
import pytest
import torch

from mdaf.data import BatchIterator
from mdaf.schema import FEATURE_KEYS


def _arrays(n, max_len=4):
    rng = np.random.default_rng(n)
    return {
        "user": np.arange(n, dtype=np.int64),
        "item": rng.integers(1, 50, n),
        "category": rng.integers(1, 9, n),
        "hist_items": rng.integers(0, 50, (n, max_len)),
        "hist_cats": rng.integers(0, 9, (n, max_len)),
        "hist_len": rng.integers(0, max_len + 1, n),
        "label": (rng.random(n) < 0.4).astype(np.float32),
        "timestamp": np.arange(n, dtype=np.int64) * 7,
    }


@pytest.mark.parametrize(
    "n, batch_size, drop_last", [(103, 10, False), (103, 10, True), (5, 8, False), (64, 8, True)]
)
def test_epoch_covers_every_sample_once(n, batch_size, drop_last):
    arrays = _arrays(n)
    it = BatchIterator(arrays, batch_size, seed=3, drop_last=drop_last)
    batches = list(it.batches(0))
    assert len(batches) == len(it) == (n // batch_size if drop_last else -(-n // batch_size))
    users = torch.cat([b["user"] for b in batches]).numpy()
    if drop_last:
        assert len(users) == len(it) * batch_size and len(set(users)) == len(users)
    else:
        assert sorted(users) == list(range(n))
    for b in batches:  # rows stay aligned across keys
        rows = b["user"].numpy()
        for key in arrays:
            np.testing.assert_array_equal(b[key].numpy(), arrays[key][rows])
        assert b["label"].dtype == torch.float32 and all(b[k].dtype == torch.int64 for k in FEATURE_KEYS)


def test_seeded_shuffle_per_epoch_and_exact_resume():
    arrays = _arrays(200)
    it = BatchIterator(arrays, 16, seed=7)
    first = [b["user"] for b in it.batches(0)]
    again = [b["user"] for b in BatchIterator(arrays, 16, seed=7).batches(0)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    second = [b["user"] for b in it.batches(1)]
    assert not all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    other_seed = [b["user"] for b in BatchIterator(arrays, 16, seed=8).batches(0)]
    assert not all(torch.equal(a, b) for a, b in zip(first, other_seed, strict=True))
    resumed = [b["user"] for b in it.batches(1, start=5)]
    assert all(torch.equal(a, b) for a, b in zip(second[5:], resumed, strict=True))
    assert all(
        torch.equal(a, b) for a, b in zip(first, [b["user"] for b in it], strict=True)
    )  # iter = epoch 0
    unshuffled = torch.cat([b["user"] for b in BatchIterator(arrays, 16, shuffle=False).batches(3)])
    assert torch.equal(unshuffled, torch.arange(200))


@pytest.mark.parametrize(
    "n, world_size, drop_last", [(101, 4, False), (101, 4, True), (3, 4, False), (96, 3, False)]
)
def test_ranks_get_equal_batches_and_partition_the_epoch(n, world_size, drop_last):
    arrays = _arrays(n)
    its = [
        BatchIterator(arrays, 8, seed=1, rank=r, world_size=world_size, drop_last=drop_last)
        for r in range(world_size)
    ]
    assert len({len(it) for it in its}) == 1
    per_rank = [torch.cat([b["user"] for b in it.batches(2)]) if len(it) else torch.empty(0) for it in its]
    seen = torch.cat(per_rank).tolist()
    if drop_last:
        assert len(seen) == len(set(seen))  # no duplicates when trimming
    else:
        assert set(seen) == set(range(n))  # every sample, a few repeated to pad
        assert len(seen) == -(-n // world_size) * world_size


def test_memmap_arrays_stream(tmp_path):
    arrays = _arrays(300, max_len=6)
    mapped = {}
    for key, value in arrays.items():
        np.save(tmp_path / f"{key}.npy", value)
        mapped[key] = np.load(tmp_path / f"{key}.npy", mmap_mode="r")
    a = list(BatchIterator(arrays, 32, seed=2).batches(4))
    b = list(BatchIterator(mapped, 32, seed=2).batches(4))
    for x, y in zip(a, b, strict=True):
        for key in x:
            assert torch.equal(x[key], y[key])


def test_bad_arguments():
    arrays = _arrays(10)
    with pytest.raises(ValueError, match="batch_size"):
        BatchIterator(arrays, 0)
    with pytest.raises(ValueError, match="rank"):
        BatchIterator(arrays, 4, rank=2, world_size=2)
    with pytest.raises(KeyError, match="hist_len"):
        BatchIterator({k: v for k, v in arrays.items() if k != "hist_len"}, 4)
    with pytest.raises(ValueError, match="same number of rows"):
        BatchIterator({**arrays, "label": arrays["label"][:5]}, 4)
