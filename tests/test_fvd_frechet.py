"""The Fréchet distance against closed forms, and the streaming float64 statistics."""

import numpy as np
import pytest

from harness.errors import UserError
from harness.fvd.frechet import FeatureStats, frechet_distance, fvd_from_stats


def test_identical_statistics_give_zero():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 6))
    mu, sigma = a.mean(0), np.cov(a, rowvar=False, bias=True)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_diagonal_gaussians_match_the_closed_form():
    # For diagonal covariances: ||mu1-mu2||^2 + sum_i (sqrt(s1_i) - sqrt(s2_i))^2
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = (1 + 0 + 4) + ((1 - 2) ** 2 + (2 - 1) ** 2 + (3 - 1) ** 2)  # = 5 + 6
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)
    assert expected == 11


def test_scaled_covariance_closed_form():
    # Sigma2 = c^2 Sigma1 => Tr(S1 + S2 - 2 sqrt(S1 S2)) = (1 - c)^2 Tr(S1), for any SPD Sigma1.
    rng = np.random.default_rng(1)
    a = rng.normal(size=(5, 5))
    s1 = a @ a.T + 5 * np.eye(5)
    mu = np.zeros(5)
    assert frechet_distance(mu, s1, mu, 9.0 * s1) == pytest.approx(4.0 * np.trace(s1), rel=1e-8)


def test_symmetric_in_its_arguments():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(40, 4)), rng.normal(1.0, 2.0, size=(40, 4))
    m1, c1 = x.mean(0), np.cov(x, rowvar=False)
    m2, c2 = y.mean(0), np.cov(y, rowvar=False)
    assert frechet_distance(m1, c1, m2, c2) == pytest.approx(frechet_distance(m2, c2, m1, c1), rel=1e-9)


def test_streaming_float64_sums_equal_one_shot_statistics():
    rng = np.random.default_rng(3)
    feats = (rng.normal(size=(103, 7)) * 50 + 1000).astype(np.float32)  # large offset: float32 sums would drift
    stats = FeatureStats(7)
    for i in range(0, 103, 10):
        stats.update(feats[i : i + 10])
    x = feats.astype(np.float64)
    assert stats.n == 103
    np.testing.assert_allclose(stats.mean(), x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov(), np.cov(x, rowvar=False, bias=True), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(stats.cov(unbiased=True), np.cov(x, rowvar=False), rtol=1e-8, atol=1e-8)


def test_stats_round_trip_and_fvd_from_stats(tmp_path):
    rng = np.random.default_rng(4)
    a, b = FeatureStats(3), FeatureStats(3)
    a.update(rng.normal(size=(30, 3)))
    b.update(rng.normal(2.0, 1.0, size=(30, 3)))
    a.save(tmp_path / "a.npz")
    a2 = FeatureStats.load(tmp_path / "a.npz")
    assert a2.n == 30 and np.array_equal(a2.sum_outer, a.sum_outer)
    assert fvd_from_stats(a2, b) == pytest.approx(frechet_distance(a.mean(), a.cov(), b.mean(), b.cov()))


def test_covariance_needs_two_samples():
    s = FeatureStats(2)
    s.update(np.ones((1, 2)))
    with pytest.raises(UserError, match="at least 2"):
        s.cov()


def test_a_singular_but_exact_root_is_not_warned_and_an_inaccurate_one_is(monkeypatch):
    """All generated clips alike (Σ = 0): scipy calls Σ1·Σ2 singular, yet its root 0 is exact and the distance is
    the closed form ‖μ1−μ2‖² + Tr Σ1, with no warning. A root that does not square back is warned."""
    import warnings

    import scipy.linalg

    rng = np.random.default_rng(0)
    a = rng.normal(size=(16, 40))
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False, bias=True)
    mu2, s2 = np.ones(40), np.zeros((40, 40))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = frechet_distance(mu1, s1, mu2, s2)
    assert d == pytest.approx(np.square(mu1 - mu2).sum() + np.trace(s1), rel=1e-12)
    monkeypatch.setattr(scipy.linalg, "sqrtm", lambda m: m + 1.0)  # a root that is wrong
    with pytest.warns(RuntimeWarning, match=r"sqrtm\(Σ1·Σ2\) is inaccurate"):
        frechet_distance(mu1, s1, mu1, s1)
