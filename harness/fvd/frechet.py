"""Streaming float64 feature statistics and the Fréchet distance between two Gaussians.

StyleGAN-V accumulates ``sum x`` and ``sum x xᵀ`` in float64 and uses the population
covariance (divide by N); VideoGPT-style code uses the unbiased one (divide by N - 1).
Both come from the same sums, so one accumulator serves both protocols and the sums can be
cached and merged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.errors import UserError


@dataclass
class FeatureStats:
    """Running ``n``, ``sum x`` (D,) and ``sum x xᵀ`` (D, D), all float64."""

    dim: int
    n: int = 0
    sum: np.ndarray = field(default=None)  # type: ignore[assignment]
    sum_outer: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.sum is None:
            self.sum = np.zeros(self.dim, dtype=np.float64)
        if self.sum_outer is None:
            self.sum_outer = np.zeros((self.dim, self.dim), dtype=np.float64)

    def update(self, features: np.ndarray) -> None:
        """Add a batch of features (B, D) (any float dtype; summed in float64)."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"features must be (B, {self.dim}); got {x.shape}")
        self.n += x.shape[0]
        self.sum += x.sum(axis=0)
        self.sum_outer += x.T @ x

    def mean(self) -> np.ndarray:
        return self.sum / self.n

    def cov(self, unbiased: bool = False) -> np.ndarray:
        """Population covariance (divide by N; StyleGAN-V) or unbiased (N - 1; VideoGPT)."""
        if self.n < 2:
            raise UserError(f"need at least 2 clips for a covariance; got {self.n}")
        mu = self.mean()
        pop = self.sum_outer / self.n - np.outer(mu, mu)
        return pop * (self.n / (self.n - 1)) if unbiased else pop

    def save(self, path: str | Path) -> None:
        import io

        from harness.io import atomic_write_bytes

        buf = io.BytesIO()
        np.savez(buf, n=np.int64(self.n), sum=self.sum, sum_outer=self.sum_outer)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> FeatureStats:
        try:
            with np.load(path, allow_pickle=False) as z:
                s, so, n = z["sum"], z["sum_outer"], int(z["n"])
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"{path}: not a feature-statistics file ({e})") from e
        return cls(dim=s.shape[0], n=n, sum=s.astype(np.float64), sum_outer=so.astype(np.float64))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """‖μ1−μ2‖² + Tr(Σ1 + Σ2 − 2·sqrtm(Σ1·Σ2)), real part (as StyleGAN-V computes it)."""
    import scipy.linalg  # imported here: `bench fvd` on a bare GPU machine needs no SciPy

    mean_term = float(np.square(mu1 - mu2).sum())
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)  # (disp=False, as StyleGAN-V passes, is deprecated in SciPy)
    return float(np.real(mean_term + np.trace(sigma1 + sigma2 - 2.0 * covmean)))


def fvd_from_stats(real: FeatureStats, fake: FeatureStats, unbiased: bool = False) -> float:
    return frechet_distance(real.mean(), real.cov(unbiased), fake.mean(), fake.cov(unbiased))
