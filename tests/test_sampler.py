import torch

from gankit.data import BatchSampler


def test_shuffle_covers_each_epoch_and_is_seeded():
    s = BatchSampler(10, 5, mode="shuffle", seed=1)
    first = torch.cat([s.next(), s.next()])
    assert sorted(first.tolist()) == list(range(10))
    again = BatchSampler(10, 5, mode="shuffle", seed=1)
    assert torch.equal(torch.cat([again.next(), again.next()]), first)
    other = BatchSampler(10, 5, mode="shuffle", seed=2)
    assert not torch.equal(torch.cat([other.next(), other.next()]), first)


def test_shuffled_batches_span_epochs():
    s = BatchSampler(7, 3, mode="shuffle")
    got = torch.cat([s.next() for _ in range(3)])
    assert sorted(got[:7].tolist()) == list(range(7)) and s.epoch == 1


def test_sequential_starts_over_before_a_partial_batch():
    s = BatchSampler(7, 3, mode="sequential")
    got = [s.next().tolist() for _ in range(4)]
    assert got == [[0, 1, 2], [3, 4, 5], [0, 1, 2], [3, 4, 5]]  # seed 004: image 6 is never used


def test_random_mode_draws_with_replacement():
    s = BatchSampler(5, 1000, mode="random", seed=0)
    b = s.next()
    assert b.min() >= 0 and b.max() < 5 and len(b.unique()) == 5


def test_state_round_trip_continues_exactly():
    for mode in ("shuffle", "random", "sequential"):
        a = BatchSampler(13, 4, mode=mode, seed=5)
        for _ in range(5):
            a.next()
        state = a.state_dict()
        expected = [a.next() for _ in range(6)]
        b = BatchSampler(13, 4, mode=mode, seed=99)
        b.load_state_dict(state)
        assert all(torch.equal(x, b.next()) for x in expected), mode
