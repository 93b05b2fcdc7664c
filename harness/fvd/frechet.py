"""Streaming float64 feature statistics and the Fréchet distance between two Gaussians.

StyleGAN-V accumulates ``sum x`` and ``sum x xᵀ`` in float64 and uses the population
covariance (divide by N); VideoGPT-style code uses the unbiased one (divide by N - 1).
Both come from the same sums, so one accumulator serves both protocols and the sums can be
cached and merged.
"""

from __future__ import annotations

import warnings
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

    def save(self, path: str | Path, features: np.ndarray | None = None) -> None:
        """The sums (and, when given, the per-clip features (N, D) they came from: what a bootstrap needs)."""
        import io

        from harness.io import atomic_write_bytes

        buf = io.BytesIO()
        extra = {} if features is None else {"features": np.asarray(features, dtype=np.float32)}
        np.savez(buf, n=np.int64(self.n), sum=self.sum, sum_outer=self.sum_outer, **extra)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> FeatureStats:
        try:
            with np.load(path, allow_pickle=False) as z:
                s, so, n = z["sum"], z["sum_outer"], int(z["n"])
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"{path}: not a feature-statistics file ({e})") from e
        return cls(dim=s.shape[0], n=n, sum=s.astype(np.float64), sum_outer=so.astype(np.float64))


def load_features(path: str | Path) -> np.ndarray | None:
    """The per-clip features a statistics file holds, or None (files written without them)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["features"] if "features" in z.files else None
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a feature-statistics file ({e})") from e


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """‖μ1−μ2‖² + Tr(Σ1 + Σ2 − 2·sqrtm(Σ1·Σ2)), real part (as StyleGAN-V computes it)."""
    import scipy.linalg  # imported here: `bench fvd` on a bare GPU machine needs no SciPy

    mean_term = float(np.square(mu1 - mu2).sum())
    product = sigma1 @ sigma2
    # scipy warns "Matrix is singular" whenever Σ1·Σ2 is, even where its square root is exact (one side's clips
    # all alike: Σ = 0, root 0). The residual says whether the root is accurate; only an inaccurate one is told.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(product)  # (disp=False, as StyleGAN-V passes, is deprecated in SciPy)
    residual = np.linalg.norm(covmean @ covmean - product) / max(np.linalg.norm(product), 1e-30)
    if residual > 1e-3:
        warnings.warn(f"sqrtm(Σ1·Σ2) is inaccurate (relative residual {residual:.1e}): this Fréchet distance may be "
                      "off", RuntimeWarning, stacklevel=2)
    return float(np.real(mean_term + np.trace(sigma1 + sigma2 - 2.0 * covmean)))


def fvd_from_stats(real: FeatureStats, fake: FeatureStats, unbiased: bool = False) -> float:
    return frechet_distance(real.mean(), real.cov(unbiased), fake.mean(), fake.cov(unbiased))


# ----------------------------------------------------------------------------- per-clip features: the bootstrap


def _root_factor(x: np.ndarray, unbiased: bool) -> tuple[np.ndarray, np.ndarray]:
    """(μ (D,), A (D, K)) with A Aᵀ = Σ of the clips ``x`` (N, D): the centred clips themselves when N <= D
    (A = Xcᵀ/√N, so Σ's rank-deficiency costs nothing), else Σ's symmetric square root (D, D)."""
    n = x.shape[0]
    mu = x.mean(axis=0)
    xc = x - mu
    denom = n - 1 if unbiased else n
    if n <= x.shape[1]:
        return mu, xc.T / np.sqrt(denom)
    w, v = np.linalg.eigh(xc.T @ xc / denom)
    return mu, (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def fvd_from_features(real: np.ndarray, fake: np.ndarray, unbiased: bool = False) -> float:
    """FVD of two clip-feature sets (N, D), without a matrix square root of Σr·Σg.

    With Σr = A Aᵀ and Σg = B Bᵀ, the non-zero eigenvalues of Σr Σg are those of (AᵀB)(AᵀB)ᵀ, so
    Tr((Σr Σg)^½) = Σ σᵢ(AᵀB), the nuclear norm of AᵀB; FVD = ‖μr−μg‖² + Tr Σr + Tr Σg − 2‖AᵀB‖_*.
    The same number as :func:`fvd_from_stats` (scipy's sqrtm, StyleGAN-V's way; a test holds them
    together) at a fraction of its cost when N < D, which is what makes a bootstrap affordable.
    """
    mu_r, a = _root_factor(np.asarray(real, dtype=np.float64), unbiased)
    mu_g, b = _root_factor(np.asarray(fake, dtype=np.float64), unbiased)
    c = a.T @ b
    small = c @ c.T if c.shape[0] <= c.shape[1] else c.T @ c
    nuclear = float(np.sqrt(np.clip(np.linalg.eigvalsh(small), 0.0, None)).sum())
    return float(np.square(mu_r - mu_g).sum() + np.square(a).sum() + np.square(b).sum() - 2.0 * nuclear)


BOOTSTRAP_METHOD = (
    "bootstrap over clips: the real and the generated clips' features resampled with replacement, independently, "
    "the FVD recomputed for each resample; the interval is the resamples' percentiles moved by the bootstrap's bias "
    "estimate (mean of the resamples minus the point), so it is centred on the reported FVD"
)


def bootstrap_fvd(
    real: np.ndarray, fake: np.ndarray, *, samples: int = 1000, seed: int = 0, level: float = 0.95,
    unbiased: bool = False,
) -> dict[str, object]:
    """A ``level`` interval for FVD from the clips' features already computed, (N, D) each: how much the
    number moves with the choice of clips at this N.

    Resample k draws real indices ``rng.integers(0, Nr, Nr)``, then fake indices ``rng.integers(0, Ng, Ng)``,
    from ``numpy.random.default_rng(seed)`` and computes FVD_k. Resampling with replacement repeats clips,
    which lowers the sets' rank and raises FVD (at N = 256, D = 400 by about 35 %), so the percentiles
    (numpy's linear interpolation) are moved by the bias estimate b = mean(FVD_k) − FVD:
    ``[p_(1−level)/2 − b, p_(1+level)/2 − b]``. On Gaussian features at N = 256, D = 400 the resamples' spread
    was about 3× that of the FVD over independent draws of clips (results in tests/test_fvd_bootstrap.py), so
    the interval errs wide. It is no interval around an infinite-sample FVD: FVD at N clips is biased upward,
    and only numbers at the same N compare.

    Returns ``{"low", "high", "level", "samples", "seed", "bias", "std", "method"}``.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if samples < 2:
        raise ValueError(f"a bootstrap needs at least 2 resamples, got {samples}")
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    point = fvd_from_features(real, fake, unbiased)
    rng = np.random.default_rng(seed)
    values = np.empty(samples)
    for k in range(samples):
        i = rng.integers(0, len(real), len(real))
        j = rng.integers(0, len(fake), len(fake))
        values[k] = fvd_from_features(real[i], fake[j], unbiased)
    bias = float(values.mean() - point)
    low, high = np.percentile(values, [50 * (1 - level), 50 * (1 + level)]) - bias
    return {"low": float(low), "high": float(high), "level": level, "samples": samples, "seed": seed, "bias": bias,
            "std": float(values.std(ddof=1)), "method": BOOTSTRAP_METHOD}
