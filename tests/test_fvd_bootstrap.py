"""FVD from per-clip features and its bootstrap interval, against scipy's sqrtm, closed forms and a hand loop."""

import numpy as np
import pytest

from harness.fvd.frechet import FeatureStats, bootstrap_fvd, fvd_from_features, fvd_from_stats


def _stats(x):
    s = FeatureStats(x.shape[1])
    s.update(x)
    return s


@pytest.mark.parametrize("n,d", [(300, 40), (40, 60), (256, 400)])
@pytest.mark.parametrize("unbiased", [False, True])
def test_features_route_equals_scipy_sqrtm(n, d, unbiased):
    rng = np.random.default_rng(n + d)
    real = rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, d)
    fake = rng.standard_normal((n + 7, d)) @ rng.standard_normal((d, d)) * 0.3 + 0.2
    want = fvd_from_stats(_stats(real), _stats(fake), unbiased=unbiased)
    # N >= D: both exact; N < D: scipy's sqrtm of a singular product is itself approximate (about 1e-8 here)
    assert fvd_from_features(real, fake, unbiased) == pytest.approx(want, rel=1e-10 if n > d else 1e-6)


def test_one_dimension_closed_form():
    """D = 1: FVD = (μr − μg)² + (σr − σg)² with population σ."""
    real, fake = np.array([[0.0], [1.0], [5.0]]), np.array([[2.0], [2.5], [-1.0], [4.0]])
    want = (real.mean() - fake.mean()) ** 2 + (real.std() - fake.std()) ** 2
    assert fvd_from_features(real, fake) == pytest.approx(want, rel=1e-12)


def test_bootstrap_against_a_hand_loop_with_scipy():
    """The documented draws, each FVD by scipy's sqrtm, the percentiles moved by the bias: the same interval."""
    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((12, 3)), rng.standard_normal((9, 3)) + 0.5
    got = bootstrap_fvd(real, fake, samples=50, seed=7, level=0.9)
    draws = np.random.default_rng(7)
    values = []
    for _ in range(50):
        i, j = draws.integers(0, 12, 12), draws.integers(0, 9, 9)
        values.append(fvd_from_stats(_stats(real[i]), _stats(fake[j])))
    point = fvd_from_stats(_stats(real), _stats(fake))
    bias = np.mean(values) - point
    assert got["bias"] == pytest.approx(bias, rel=1e-9)
    assert got["low"] == pytest.approx(np.percentile(values, 5) - bias, rel=1e-9)
    assert got["high"] == pytest.approx(np.percentile(values, 95) - bias, rel=1e-9)
    assert got["std"] == pytest.approx(np.std(values, ddof=1), rel=1e-9)
    assert got["samples"] == 50 and got["seed"] == 7 and got["level"] == 0.9
    assert bootstrap_fvd(real, fake, samples=50, seed=7, level=0.9) == got  # seeded


def test_bootstrap_interval_is_centred_on_the_number_and_errs_wide():
    """Gaussian clips, N = 256 < D = 400: the resamples sit ~35 % above the point (repeated clips lower the rank),
    the shifted interval holds the point, and its spread exceeds that of FVD over independent draws of clips."""
    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((256, 400)), rng.standard_normal((256, 400)) + 0.1
    point = fvd_from_features(real, fake)
    got = bootstrap_fvd(real, fake, samples=100, seed=0)
    assert 0.2 * point < got["bias"] < 0.5 * point
    assert got["low"] < point < got["high"]
    independent = [fvd_from_features(rng.standard_normal((256, 400)), rng.standard_normal((256, 400)) + 0.1)
                   for _ in range(20)]
    assert got["std"] > 1.5 * np.std(independent, ddof=1)


def test_bad_arguments():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="level"):
        bootstrap_fvd(x, x, level=1.0)
    with pytest.raises(ValueError, match="at least 2 resamples"):
        bootstrap_fvd(x, x, samples=1)
