"""Gaussian diffusion as Latte and Matten train it: IDDPM with learned-range variance.

Linear β from 1e-4 to 0.02 over 1000 steps, ε-prediction, and a model that outputs 2C
channels: the first C are ε, the second C are v ∈ [-1, 1] that interpolate, in log space,
between the posterior variance β̃_t and β_t (Nichol & Dhariwal 2021, "learned range").
The loss is MSE(ε) + L_vlb, where the variational bound term sees the predicted mean
detached so that it trains only the variance (as DiT and Latte do).

Videos are (B, T, C, H, W); the model's output is (B, T, 2C, H, W) and is split on dim 2.

Samplers: DDPM with the learned variance and DDIM (η = 0 by default), both on the process
respaced to N of the 1000 steps as Latte's ``sample.py`` builds them, ``space_timesteps(1000,
str(N))`` (IDDPM's SpacedDiffusion: the betas are re-derived from ᾱ at the kept steps).
Classifier-free guidance goes through ``model.forward_with_cfg``.

The schedule arithmetic is diffusers' DDPMScheduler's (betas, ᾱ), computed in float64 as
IDDPM does; diffusers has no variational-bound loss, so that part is written here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

NUM_TIMESTEPS = 1000
BETA_START = 1e-4
BETA_END = 0.02


# ------------------------------------------------------------------ KL and likelihood helpers


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Φ(x) by the tanh approximation IDDPM uses (kept so our bits/dim match theirs)."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor) -> torch.Tensor:
    """log P(x) for data x in [-1, 1] quantised to 256 bins of width 2/255, under N(means, e^{2·log_scales}).

    The two edge bins take the whole tail (x = -1: (-inf, -1+1/255]; x = 1: [1-1/255, inf)).
    """
    centered = x - means
    inv_std = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_cdf_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_cdf_delta))


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over every dimension but the batch."""
    return x.mean(dim=list(range(1, x.ndim)))


# ------------------------------------------------------------------ schedule and respacing


def linear_betas(num_timesteps: int = NUM_TIMESTEPS, start: float = BETA_START, end: float = BETA_END) -> np.ndarray:
    """diffusers' ``beta_schedule="linear"`` (torch.linspace), in float64 as IDDPM computes it."""
    return np.linspace(start, end, num_timesteps, dtype=np.float64)


def space_timesteps(num_timesteps: int, spec: str | int) -> list[int]:
    """The kept steps of a respaced sampler, chosen with IDDPM's arithmetic (``respace.space_timesteps``).

    ``"250"`` (or 250): 250 steps spread over [0, T-1], both ends kept, at a float stride s = (T-1)/(N-1)
    accumulated step by step (index = round(0 + s + s + ...), Python's round, half to even) — not round(i·s),
    which keeps another step for 278 of the counts 1..1000 (e.g. 15 of 16: IDDPM keeps 7, round(i·s) 8).
    N = 1 keeps step 0. ``"10,15,20"``: the T steps split into equal sections (the first ones one longer when
    T does not divide), each spaced as above. ``"ddim50"``: range(0, T, k) for the integer stride k that gives
    exactly 50 steps (IDDPM's DDIM-paper striding; Latte does not use it).

    Raises ValueError for a count of 0 or more than a section's length, or a DDIM count no stride gives.
    """
    spec = str(spec)
    if spec.startswith("ddim"):
        want = int(spec[len("ddim") :])
        for stride in range(1, num_timesteps):
            if len(range(0, num_timesteps, stride)) == want:
                return list(range(0, num_timesteps, stride))
        raise ValueError(f"cannot take exactly {want} steps of {num_timesteps} with an integer stride")
    counts = [int(c) for c in spec.split(",")]
    size, extra = divmod(num_timesteps, len(counts))
    kept, section_start = [], 0
    for k, count in enumerate(counts):
        length = size + (1 if k < extra else 0)
        if not 1 <= count <= length:
            raise ValueError(f"cannot respace a section of {length} steps to {count}")
        stride = 1.0 if count == 1 else (length - 1) / (count - 1)
        position = 0.0
        for _ in range(count):
            kept.append(section_start + round(position))
            position += stride  # accumulated, as IDDPM does: the rounding of the sum decides ties
        section_start += length
    return sorted(set(kept))


SPACINGS = ("iddpm", "ddim-stride")


def sampling_respacing(steps: int, spacing: str = "iddpm") -> str:
    """The ``create_diffusion`` respacing of a sampler with ``steps`` steps.

    ``iddpm`` (the default, DDPM and DDIM alike): ``space_timesteps(1000, str(steps))``, as Latte's
    ``sample.py`` builds both samplers (DDIM-50 calls the model at t = 999, 979, 958, ...).
    ``ddim-stride``: ``"ddim<steps>"``, the integer stride of the DDIM paper (DDIM-50 at t = 980, 960, ...;
    only for step counts some stride gives exactly). Raises ValueError for an unknown spacing.
    """
    if spacing == "iddpm":
        return str(steps)
    if spacing == "ddim-stride":
        return f"ddim{steps}"
    raise ValueError(f"unknown timestep spacing {spacing!r} ({' | '.join(SPACINGS)})")


_DEVICE_TABLES: dict[tuple[int, str], tuple[np.ndarray, torch.Tensor]] = {}


def _on_device(arr: np.ndarray, device: torch.device) -> torch.Tensor:
    """``arr`` as a tensor on ``device``, copied once (a pageable host→GPU copy every call would stall the stream)."""
    key = (id(arr), str(device))
    hit = _DEVICE_TABLES.get(key)
    if hit is None or hit[0] is not arr:  # the array itself is kept in the entry, so its id cannot be reused
        hit = (arr, torch.from_numpy(arr).to(device))
        _DEVICE_TABLES[key] = hit
    return hit[1]


def _extract(arr: np.ndarray, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """arr[t] as float32 on t's device, shaped (B, 1, 1, ...) to broadcast over a ndim-dim tensor."""
    out = _on_device(arr, t.device)[t].float()
    return out.reshape(-1, *([1] * (ndim - 1)))


class GaussianDiffusion:
    """Forward process q, the learned-range reverse process p, the loss and the samplers.

    ``timestep_map[i]`` is the original step the model is told at respaced index i
    (the identity for the full 1000-step process).
    """

    def __init__(self, betas: np.ndarray, timestep_map: list[int] | None = None):
        betas = np.asarray(betas, dtype=np.float64)
        assert betas.ndim == 1 and (betas > 0).all() and (betas <= 1).all()
        self.betas = betas
        self.num_timesteps = len(betas)
        self.timestep_map = np.asarray(timestep_map if timestep_map is not None else range(len(betas)), dtype=np.int64)

        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1.0)
        # q(x_{t-1} | x_t, x_0) = N(coef1·x_0 + coef2·x_t, β̃_t), β̃_t = β_t (1-ᾱ_{t-1}) / (1-ᾱ_t)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # β̃_0 = 0, so its log is clipped to β̃_1 (IDDPM); the learned range's lower end uses this.
        if len(betas) > 1:
            clipped = np.append(self.posterior_variance[1], self.posterior_variance[1:])
            self.posterior_log_variance_clipped = np.log(clipped)
        else:
            self.posterior_log_variance_clipped = np.log(betas)  # one-step process: nothing to clip to
        self.log_betas = np.log(betas)
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)

    # ---------------------------------------------------------------- q

    def q_sample(self, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε."""
        n = x_start.ndim
        a, s = _extract(self.sqrt_alphas_cumprod, t, n), _extract(self.sqrt_one_minus_alphas_cumprod, t, n)
        return a * x_start + s * noise

    def q_posterior_mean_variance(self, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0)."""
        n = x_t.ndim
        mean = _extract(self.posterior_mean_coef1, t, n) * x_start + _extract(self.posterior_mean_coef2, t, n) * x_t
        var = _extract(self.posterior_variance, t, n)
        log_var = _extract(self.posterior_log_variance_clipped, t, n)
        return mean, var, log_var

    # ---------------------------------------------------------------- p

    def predict_xstart_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        n = x_t.ndim
        a, b = _extract(self.sqrt_recip_alphas_cumprod, t, n), _extract(self.sqrt_recipm1_alphas_cumprod, t, n)
        return a * x_t - b * eps

    def predict_eps_from_xstart(self, x_t: torch.Tensor, t: torch.Tensor, x_start: torch.Tensor) -> torch.Tensor:
        """ε from x_t and x_0: (x_t / √ᾱ_t - x_0) / √(1/ᾱ_t - 1), the inverse of :meth:`predict_xstart_from_eps`."""
        n = x_t.ndim
        a, b = _extract(self.sqrt_recip_alphas_cumprod, t, n), _extract(self.sqrt_recipm1_alphas_cumprod, t, n)
        return (a * x_t - x_start) / b

    def p_mean_variance_from_output(
        self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, clip_denoised: bool = False
    ) -> dict[str, torch.Tensor]:
        """Turn the model's (B, T, 2C, H, W) output into p(x_{t-1} | x_t): mean, log-variance, predicted x_0, ε."""
        c = x_t.shape[2]
        assert model_output.shape[2] == 2 * c, f"expected 2C={2 * c} output channels, got {model_output.shape[2]}"
        eps, v = model_output.split(c, dim=2)
        n = x_t.ndim
        # learned range: log σ² = frac·log β_t + (1-frac)·log β̃_t (clipped), frac = (v+1)/2
        min_log = _extract(self.posterior_log_variance_clipped, t, n)
        max_log = _extract(self.log_betas, t, n)
        frac = (v + 1) / 2
        log_var = frac * max_log + (1 - frac) * min_log
        pred_xstart = self.predict_xstart_from_eps(x_t, t, eps)
        if clip_denoised:
            pred_xstart = pred_xstart.clamp(-1, 1)
        mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x_t, t)
        return {"mean": mean, "log_variance": log_var, "pred_xstart": pred_xstart, "eps": eps}

    # ---------------------------------------------------------------- loss

    def vb_terms_bpd(
        self, model_output: torch.Tensor, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """One term of the variational bound per sample, in bits per dimension.

        t > 0: KL(q(x_{t-1}|x_t,x_0) ‖ p(x_{t-1}|x_t)); t = 0: the discretised Gaussian decoder's -log p(x_0|x_1).
        """
        true_mean, _, true_log_var = self.q_posterior_mean_variance(x_start, x_t, t)
        p = self.p_mean_variance_from_output(model_output, x_t, t)
        kl = mean_flat(normal_kl(true_mean, true_log_var, p["mean"], p["log_variance"])) / math.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x_start, means=p["mean"], log_scales=0.5 * p["log_variance"])
        nll = mean_flat(nll) / math.log(2.0)
        return torch.where(t == 0, nll, kl)

    def training_losses(
        self,
        model: Callable[..., torch.Tensor],
        x_start: torch.Tensor,
        t: torch.Tensor,
        y: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-sample losses: ``loss = mse + vb``; the VB term trains only the variance (mean detached)."""
        if noise is None:
            noise = torch.randn_like(x_start)
        x_t = self.q_sample(x_start, t, noise)
        out = model(x_t, self.map_timesteps(t), y)
        c = x_start.shape[2]
        eps, v = out.split(c, dim=2)
        frozen = torch.cat([eps.detach(), v], dim=2)
        vb = self.vb_terms_bpd(frozen.float(), x_start, x_t, t)
        mse = mean_flat((noise - eps.float()) ** 2)
        return {"loss": mse + vb, "mse": mse, "vb": vb}

    def map_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """Respaced index → the original step the model was trained on."""
        return _on_device(self.timestep_map, t.device)[t]

    # ---------------------------------------------------------------- samplers

    def p_sample_loop(
        self,
        denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        noise: torch.Tensor,
        generator: torch.Generator | None = None,
        progress: Callable[[int], None] | None = None,
        clip_denoised: bool = False,
    ) -> torch.Tensor:
        """Ancestral DDPM sampling from x_T = ``noise``; ``denoise(x_t, model_t)`` returns the model's 2C output.

        ``clip_denoised``: clamp each step's predicted x_0 to [-1, 1] before the posterior mean (IDDPM's
        ``clip_denoised``); for models of pixels, whose data lie in [-1, 1]."""
        x = noise
        for i in reversed(range(self.num_timesteps)):
            x = self.p_sample(denoise, x, i, generator, clip_denoised)
            if progress:
                progress(1)
        return x

    def p_sample(
        self, denoise, x: torch.Tensor, i: int, generator: torch.Generator | None = None, clip_denoised: bool = False
    ) -> torch.Tensor:
        t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
        p = self.p_mean_variance_from_output(denoise(x, self.map_timesteps(t)).float(), x, t, clip_denoised)
        if i == 0:
            return p["mean"]
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return p["mean"] + torch.exp(0.5 * p["log_variance"]) * z

    def ddim_sample_loop(
        self,
        denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        noise: torch.Tensor,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        progress: Callable[[int], None] | None = None,
        clip_denoised: bool = False,
    ) -> torch.Tensor:
        """DDIM (Song et al.) over this process's steps; η = 0 is deterministic given x_T.

        ``clip_denoised``: clamp the predicted x_0 to [-1, 1] and take ε from the clamped x_0, as IDDPM's
        ``ddim_sample`` does (ε = (x_t/√ᾱ - x_0) / √(1/ᾱ - 1))."""
        x = noise
        for i in reversed(range(self.num_timesteps)):
            t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
            p = self.p_mean_variance_from_output(denoise(x, self.map_timesteps(t)).float(), x, t, clip_denoised)
            x0, eps = p["pred_xstart"], p["eps"]
            if clip_denoised:
                eps = self.predict_eps_from_xstart(x, t, x0)
            ab = _extract(self.alphas_cumprod, t, x.ndim)
            ab_prev = _extract(self.alphas_cumprod_prev, t, x.ndim)
            sigma = eta * torch.sqrt((1 - ab_prev) / (1 - ab)) * torch.sqrt(1 - ab / ab_prev)
            x = x0 * torch.sqrt(ab_prev) + torch.sqrt(1 - ab_prev - sigma**2) * eps
            if i > 0 and eta > 0:
                x = x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            if progress:
                progress(1)
        return x


def create_diffusion(respacing: str | int | None = None) -> GaussianDiffusion:
    """The 1000-step linear process, or its respacing to the kept steps of ``respacing`` ("250", "ddim50")."""
    base = GaussianDiffusion(linear_betas())
    if respacing is None or str(respacing) == "":
        return base
    keep = space_timesteps(base.num_timesteps, respacing)
    # SpacedDiffusion: β'_i = 1 - ᾱ_{k_i} / ᾱ_{k_{i-1}}, so ᾱ at each kept step is unchanged.
    new_betas, last = [], 1.0
    for k in keep:
        new_betas.append(1.0 - base.alphas_cumprod[k] / last)
        last = base.alphas_cumprod[k]
    return GaussianDiffusion(np.array(new_betas), timestep_map=keep)


def make_denoiser(model, y: torch.Tensor | None, cfg_scale: float = 1.0):
    """``denoise(x_t, t)`` for the samplers; with cfg_scale ≠ 1 and labels, classifier-free guidance.

    Guidance is the model's own ``forward_with_cfg(x, t, y, s)`` (the models contract): it runs
    [x, x] with labels [y, null] and returns (B, T, 2C, H, W) whose noise channels are
    ε_uncond + s·(ε_cond − ε_uncond) and whose variance channels are the conditional ones.
    """
    if y is None or cfg_scale == 1.0:
        return lambda x, t: model(x, t, y)
    return lambda x, t: model.forward_with_cfg(x, t, y, cfg_scale)


def sample_video(
    model,
    shape: tuple[int, ...],
    *,
    sampler: str = "ddpm",
    steps: int = 250,
    spacing: str = "iddpm",
    y: torch.Tensor | None = None,
    cfg_scale: float = 1.0,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    progress: Callable[[int], None] | None = None,
    clip_denoised: bool = False,
) -> torch.Tensor:
    """One batch of samples (B, T, C, H, W), reproducible from ``generator``'s seed.

    Both samplers walk the timesteps of :func:`sampling_respacing` (``steps``, ``spacing``): by default
    Latte's, ``space_timesteps(1000, str(steps))``. ``clip_denoised`` clamps each step's predicted x_0 to
    [-1, 1] (IDDPM's option; Latte and DiT sample latents, and leave it off).
    """
    if sampler not in ("ddpm", "ddim"):
        raise ValueError(f"unknown sampler {sampler!r} (ddpm | ddim)")
    diffusion = create_diffusion(sampling_respacing(steps, spacing))
    noise = torch.randn(shape, generator=generator, device=device)
    denoise = make_denoiser(model, y, cfg_scale)
    if sampler == "ddpm":
        return diffusion.p_sample_loop(denoise, noise, generator, progress, clip_denoised)
    return diffusion.ddim_sample_loop(denoise, noise, eta, generator, progress, clip_denoised)
