import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gankit.metrics.classes import (
    class_histogram,
    classes_covered,
    conditional_accuracy,
    inception_score,
    kl_divergence,
)
from gankit.metrics.fid import feature_stats, fid, frechet_distance
from gankit.metrics.kid import kid, mmd2_unbiased
from gankit.metrics.modes import channel_kls, stacked_modes
from gankit.metrics.prdc import density_coverage, precision_recall


def test_frechet_distance_of_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = ((mu1 - mu2) ** 2).sum() + (a + b - 2 * np.sqrt(a * b)).sum()  # 5 + (1 + 1 + 4)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    assert expected == pytest.approx(11.0)


def test_frechet_distance_with_full_covariances():
    # commuting covariances: sqrt(S1 S2) has eigenvalues sqrt(l1 l2) on the shared eigenvectors
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))
    l1, l2 = np.array([1.0, 2.0, 3.0, 4.0]), np.array([4.0, 3.0, 2.0, 1.0])
    s1, s2 = q @ np.diag(l1) @ q.T, q @ np.diag(l2) @ q.T
    expected = (l1 + l2 - 2 * np.sqrt(l1 * l2)).sum()
    assert frechet_distance(np.zeros(4), s1, np.zeros(4), s2) == pytest.approx(expected, rel=1e-9)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_shift():
    x = torch.randn(2000, 16, generator=torch.Generator().manual_seed(0))
    assert abs(fid(x, x)) < 1e-8
    assert fid(x, x + 1.0) == pytest.approx(16.0, rel=1e-6)  # a pure mean shift of 1 in 16 dims
    mu, cov = feature_stats(x)
    assert mu.shape == (16,) and cov.shape == (16, 16)


def test_fid_with_fewer_samples_than_dimensions_is_finite():
    x = torch.randn(10, 64)
    assert math.isfinite(fid(x, torch.randn(12, 64)))


def test_mmd_hand_computed():
    x, y = np.zeros((2, 1)), np.ones((2, 1))
    # k(0,0) = 1, k(1,1) = 8, k(0,1) = 1 (d = 1): 1 + 8 - 2 * 1
    assert mmd2_unbiased(x, y) == pytest.approx(7.0)


def test_kid_separates_distributions():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(600, 8)), rng.normal(size=(600, 8))
    same, _ = kid(a, b, subsets=20, subset_size=300)
    shifted, std = kid(a, b + 0.5, subsets=20, subset_size=300)
    assert abs(same) < 0.01 and shifted > 10 * max(abs(same), 1e-3) and std >= 0


def test_precision_recall_cases():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(400, 4, generator=g)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)
    assert precision_recall(real, real + 100) == (0.0, 0.0)
    collapsed = real[:1] + 1e-3 * torch.randn(100, 4, generator=g)  # mode collapse onto one real image
    p, r = precision_recall(real, collapsed)
    assert p == 1.0 and r < 0.05


def test_density_coverage_cases():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(1000, 4, generator=g)
    fake = torch.randn(1000, 4, generator=g)
    d, c = density_coverage(real, fake)
    assert 0.8 < d < 1.2 and c > 0.9  # same distribution: density about 1, nearly full coverage
    assert density_coverage(real, real + 100) == (0.0, 0.0)


def test_density_of_a_set_against_itself_is_one_and_matches_an_exact_reference():
    """Density and coverage count a point on a ball's boundary as outside, as Naeem et al.'s code does
    (with ``<=`` a set against itself scored 1.2: each ball also held its k-th neighbour)."""
    from scipy.spatial.distance import cdist

    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(300, 8, generator=g), torch.randn(300, 8, generator=g)
    d, c = density_coverage(real, real.clone())
    assert d == pytest.approx(1.0) and c == 1.0
    r, f = real.double().numpy(), fake.double().numpy()
    radii = np.partition(cdist(r, r), 5, axis=1)[:, 5]
    inside = cdist(f, r) < radii[None, :]
    assert density_coverage(real, fake) == pytest.approx((inside.sum() / (5 * len(f)), inside.any(0).mean()))


@pytest.mark.parametrize("call", [
    lambda x: fid(x, x), lambda x: kid(x.numpy(), x.numpy()), lambda x: precision_recall(x, x)])
def test_metrics_refuse_non_finite_features(call):
    x = torch.randn(50, 4)
    x[7, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        call(x)


def test_precision_recall_needs_more_samples_than_neighbours():
    with pytest.raises(ValueError, match="more than 3 real and 3 generated"):
        precision_recall(torch.randn(40, 4), torch.randn(3, 4))
    with pytest.raises(ValueError, match="more than"):
        density_coverage(torch.randn(5, 4), torch.randn(40, 4))


def test_inception_score_splits_like_the_reference():
    """Ten parts, rows i*N//10 to (i+1)*N//10, also when N is not a multiple of 10."""
    probs = torch.softmax(torch.randn(25, 4, generator=torch.Generator().manual_seed(0)), 1).double()
    scores = []
    for i in range(10):
        part = probs[i * 25 // 10 : (i + 1) * 25 // 10]
        kl = (part * (part.log() - part.mean(0, keepdim=True).log())).sum(1).mean()
        scores.append(math.exp(kl))
    assert inception_score(probs) == pytest.approx((np.mean(scores), np.std(scores)))
    with pytest.raises(ValueError, match="at least 10"):
        inception_score(probs[:9])


def test_inception_score_bounds():
    k = 10
    even = torch.eye(k).repeat(100, 1)  # confident and balanced over all classes
    assert inception_score(even, splits=1)[0] == pytest.approx(k)
    one = torch.zeros(1000, k)
    one[:, 3] = 1  # confident but collapsed
    assert inception_score(one, splits=1)[0] == pytest.approx(1.0)


def test_histograms_and_coverage():
    pred = torch.tensor([0, 0, 1, 3])
    assert class_histogram(pred, 4).tolist() == [0.5, 0.25, 0.0, 0.25]
    assert classes_covered(pred, 4) == 3
    h = class_histogram(pred, 4)
    assert kl_divergence(h, h) == 0.0
    assert kl_divergence(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5])) == pytest.approx(math.log(2))
    acc, per = conditional_accuracy(torch.tensor([1, 1, 2, 0]), torch.tensor([1, 2, 2, 0]), 3)
    assert acc == 0.75 and per == [1.0, 1.0, 0.5]  # the "2" asked for once came out as a 1
    assert conditional_accuracy(torch.tensor([1, 1]), torch.tensor([1, 2]), 4)[1] == [None, 1.0, 0.0, None]


def test_stacked_modes():
    all_modes = torch.tensor([[m // 100, m // 10 % 10, m % 10] for m in range(1000)])
    assert stacked_modes(all_modes) == (1000, pytest.approx(0.0, abs=1e-12))
    modes, kl = stacked_modes(torch.tensor([[1, 2, 3]] * 50))
    assert modes == 1 and kl == pytest.approx(math.log(1000))
    assert channel_kls(all_modes) == [pytest.approx(0.0, abs=1e-12)] * 3
    # channel 0 always 1, channel 1 two digits evenly, channel 2 all ten evenly
    digits = torch.tensor([[1, m % 2, m % 10] for m in range(100)])
    expected = [math.log(10), math.log(5), 0.0]
    assert channel_kls(digits) == [pytest.approx(k, abs=1e-12) for k in expected]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 6))
def test_fid_is_symmetric_and_nonnegative(seed, dim):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(50, dim, generator=g), torch.randn(60, dim, generator=g) * 2
    assert fid(a, b) == pytest.approx(fid(b, a), rel=1e-6, abs=1e-9) and fid(a, b) > -1e-9
