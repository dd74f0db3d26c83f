"""vaekit.binarize and vaekit.batches: coverage, order, alignment, devices."""

from __future__ import annotations

import math

import pytest
import torch

from vaekit import batches, binarize

N = 103  # not a multiple of the batch size, so that the last batch is partial
BS = 10


def indices(loader) -> list[list[int]]:
    """One epoch as lists of the row indices stored in the data itself."""
    return [b.tolist() for b in loader]


# ---- binarize ---------------------------------------------------------------------------


def test_binarize_frequency_matches_intensity():
    p = torch.tensor([0.0, 0.05, 0.2, 0.5, 0.8, 0.95, 1.0])
    n = 40_000
    x = p.expand(n, -1)
    b = binarize(x, torch.Generator().manual_seed(0))
    freq = b.mean(0)
    # a frequency of n Bernoulli(p) draws has sd sqrt(p (1 - p) / n); 5 sd, and exact at 0 and 1
    tol = 5 * torch.sqrt(p * (1 - p) / n)
    assert torch.all((freq - p).abs() <= tol), f"frequencies {freq.tolist()} for intensities {p.tolist()}"
    assert freq[0] == 0 and freq[-1] == 1


def test_binarize_gives_zeros_and_ones_with_shape_and_dtype_kept():
    x = torch.rand(4, 1, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    b = binarize(x, torch.Generator().manual_seed(2))
    assert b.shape == x.shape and b.dtype == torch.float64
    assert set(torch.unique(b).tolist()) == {0.0, 1.0}


def test_binarize_is_reproducible_with_a_seeded_generator():
    x = torch.full((64, 64), 0.5)
    a = binarize(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, binarize(x, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, binarize(x, torch.Generator().manual_seed(4)))


def test_binarize_pixels_are_independent():
    # a shared draw for all pixels would make every row all-0 or all-1
    x = torch.full((2000, 16), 0.5)
    b = binarize(x, torch.Generator().manual_seed(5))
    row_sums = b.sum(1)
    assert ((row_sums > 0) & (row_sums < 16)).float().mean() > 0.99


# ---- coverage and order -----------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_index_exactly_once_per_epoch(shuffle: bool):
    loader = batches(torch.arange(N), batch_size=BS, shuffle=shuffle)
    for _ in range(3):
        seen = [i for batch in indices(loader) for i in batch]
        assert sorted(seen) == list(range(N))


def test_without_shuffle_the_order_is_the_data_order():
    loader = batches(torch.arange(N), batch_size=BS, shuffle=False)
    assert [i for b in indices(loader) for i in b] == list(range(N))
    assert indices(loader) == indices(loader)


def test_shuffle_changes_the_order():
    seen = [i for b in indices(batches(torch.arange(N), batch_size=BS, shuffle=True)) for i in b]
    assert seen != list(range(N))


def test_last_partial_batch_is_kept():
    loader = batches(torch.arange(N), batch_size=BS, shuffle=False)
    sizes = [len(b) for b in indices(loader)]
    assert sizes == [BS] * (N // BS) + [N % BS]
    assert len(loader) == math.ceil(N / BS) == len(sizes)


@pytest.mark.parametrize("shuffle", [False, True])
def test_drop_last_drops_only_the_partial_batch(shuffle: bool):
    loader = batches(torch.arange(N), batch_size=BS, shuffle=shuffle, drop_last=True)
    epoch = indices(loader)
    assert [len(b) for b in epoch] == [BS] * (N // BS)
    assert len(loader) == N // BS
    flat = [i for b in epoch for i in b]
    assert len(set(flat)) == len(flat) == (N // BS) * BS


def test_drop_last_when_the_size_divides_evenly():
    loader = batches(torch.arange(40), batch_size=BS, drop_last=True)
    assert len(loader) == 4 and sorted(i for b in indices(loader) for i in b) == list(range(40))


def _two_epochs(seed: int) -> list:
    loader = batches(torch.arange(N), batch_size=BS, seed=seed)
    return [indices(loader), indices(loader)]


def test_same_seed_same_order_and_different_seed_different_order():
    assert _two_epochs(7) == _two_epochs(7)
    assert _two_epochs(7)[0] != _two_epochs(8)[0]


def test_next_epoch_has_a_different_order():
    first, second = _two_epochs(0)
    assert first != second
    assert sorted(i for b in first for i in b) == sorted(i for b in second for i in b) == list(range(N))


def test_seed_none_is_not_fixed():
    a, b = (indices(batches(torch.arange(N), batch_size=N, seed=None)) for _ in range(2))
    assert a != b  # two random permutations of 103 items: equal with probability 1/103!


def test_recreated_each_epoch_with_the_default_seed_gives_a_new_order():
    """The natural loop `for epoch ...: for x in batches(train_x)` must not repeat the first epoch's order."""
    torch.manual_seed(0)
    orders = [indices(batches(torch.arange(N), batch_size=BS)) for _ in range(3)]
    assert orders[0] != orders[1] and orders[1] != orders[2] and orders[0] != orders[2]


def test_default_seed_follows_the_global_seed():
    """A run seeded with torch.manual_seed (vaekit.setup) is reproducible with the default seed."""

    def run():
        torch.manual_seed(5)
        return [indices(batches(torch.arange(N), batch_size=BS)) for _ in range(2)]

    assert run() == run()


def test_unshuffled_batches_leave_the_global_generator_alone():
    torch.manual_seed(0)
    list(batches(torch.arange(N), batch_size=BS, shuffle=False))
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3))


def test_explicit_seed_recreated_each_epoch_repeats_its_order():
    """An int seed stays reproducible whatever the global generator did in between."""
    a = indices(batches(torch.arange(N), batch_size=BS, seed=3))
    torch.rand(7)
    assert indices(batches(torch.arange(N), batch_size=BS, seed=3)) == a


def test_is_reiterable_and_independent_of_the_global_seed():
    torch.manual_seed(0)
    a = _two_epochs(11)
    torch.manual_seed(1)
    torch.rand(5)
    assert _two_epochs(11) == a


# ---- several tensors --------------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [False, True])
def test_several_tensors_stay_aligned(shuffle: bool):
    idx = torch.arange(N)
    x = idx.float().view(N, 1, 1, 1).expand(N, 1, 2, 2).clone()
    y = idx * 2 + 1
    total = 0
    for xb, yb in batches(x, y, batch_size=BS, shuffle=shuffle):
        assert xb.shape[1:] == (1, 2, 2)
        rows = xb[:, 0, 0, 0].long()
        assert torch.equal(yb, rows * 2 + 1)
        assert torch.equal(xb, rows.float().view(-1, 1, 1, 1).expand(-1, 1, 2, 2))
        total += len(yb)
    assert total == N


def test_one_tensor_gives_tensors_and_several_give_tuples():
    one = next(iter(batches(torch.arange(N), batch_size=BS)))
    two = next(iter(batches(torch.arange(N), torch.arange(N), batch_size=BS)))
    assert isinstance(one, torch.Tensor)
    assert isinstance(two, tuple) and len(two) == 2


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match=r"same length.*\[5, 4\]"):
        batches(torch.zeros(5, 3), torch.zeros(4), batch_size=2)


def test_batch_size_below_one_is_refused():
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        batches(torch.arange(4), batch_size=0)


def test_no_tensors_is_refused():
    with pytest.raises(ValueError, match="at least one tensor"):
        batches()


# ---- devices ----------------------------------------------------------------------------


def test_device_cpu():
    x = torch.arange(N, dtype=torch.float32)
    loader = batches(x, torch.arange(N), batch_size=BS, device="cpu", dynamic_binarize=False)
    for xb, yb in loader:
        assert xb.device == yb.device == torch.device("cpu")
        assert xb.dtype == torch.float32 and yb.dtype == torch.int64


def test_device_is_where_batches_end_up():
    # the meta device has no data, but placement is observable without a GPU
    loader = batches(torch.arange(N), torch.arange(N), batch_size=BS, device="meta")
    assert all(t.device.type == "meta" for t in loader.tensors)
    shapes = []
    for xb, yb in loader:
        assert xb.device.type == yb.device.type == "meta"
        shapes.append(len(xb))
    assert sum(shapes) == N


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_device_cuda_with_dynamic_binarization():
    x = torch.rand(N, 1, 4, 4)
    loader = batches(x, torch.arange(N), batch_size=BS, device="cuda", dynamic_binarize=True)
    for xb, yb in loader:
        assert xb.is_cuda and yb.is_cuda
        assert set(torch.unique(xb).tolist()) <= {0.0, 1.0}


# ---- dynamic binarization ----------------------------------------------------------------


def test_dynamic_binarization_resamples_every_epoch_and_leaves_labels_alone():
    x = torch.full((N, 1, 4, 4), 0.5)
    y = torch.arange(N)
    loader = batches(x, y, batch_size=N, shuffle=False, dynamic_binarize=True)
    ((x1, y1),) = list(loader)
    ((x2, y2),) = list(loader)
    assert set(torch.unique(x1).tolist()) == {0.0, 1.0}
    assert not torch.equal(x1, x2)
    assert torch.equal(y1, y) and torch.equal(y2, y)
    assert torch.equal(x, torch.full((N, 1, 4, 4), 0.5)), "the data set itself must not change"


def test_dynamic_binarization_frequency_over_epochs():
    p, n, epochs = 0.3, 500, 40
    loader = batches(torch.full((n, 1), p), batch_size=64, dynamic_binarize=True, seed=0)
    ones = sum(b.sum().item() for _ in range(epochs) for b in loader)
    draws = n * epochs
    assert abs(ones / draws - p) < 5 * math.sqrt(p * (1 - p) / draws)


def test_dynamic_binarization_is_reproducible_with_a_seed():
    x = torch.rand(N, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    a = [b.clone() for b in batches(x, batch_size=BS, dynamic_binarize=True, seed=3)]
    b = [b.clone() for b in batches(x, batch_size=BS, dynamic_binarize=True, seed=3)]
    assert len(a) == len(b) == math.ceil(N / BS)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
