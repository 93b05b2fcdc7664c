"""The diffusion arithmetic against hand computation, closed forms and diffusers' schedulers."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from harness import diffusion as D


def test_schedule_matches_diffusers():
    from diffusers import DDPMScheduler

    ref = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    diff = D.create_diffusion()
    np.testing.assert_allclose(diff.betas, ref.betas.double().numpy(), rtol=1e-6)
    np.testing.assert_allclose(diff.alphas_cumprod, ref.alphas_cumprod.double().numpy(), rtol=1e-5)


def test_posterior_against_hand_computation():
    diff = D.create_diffusion()
    t = 500
    b = diff.betas
    ab = np.cumprod(1 - b)
    x0, xt = 0.3, -0.7
    # q(x_{t-1}|x_t,x_0): mean = √ᾱ_{t-1} β_t/(1-ᾱ_t) x0 + √α_t (1-ᾱ_{t-1})/(1-ᾱ_t) x_t; var = (1-ᾱ_{t-1})/(1-ᾱ_t) β_t
    mean = math.sqrt(ab[t - 1]) * b[t] / (1 - ab[t]) * x0 + math.sqrt(1 - b[t]) * (1 - ab[t - 1]) / (1 - ab[t]) * xt
    var = (1 - ab[t - 1]) / (1 - ab[t]) * b[t]
    m, v, lv = diff.q_posterior_mean_variance(
        torch.tensor([[x0]], dtype=torch.float64), torch.tensor([[xt]], dtype=torch.float64), torch.tensor([t])
    )
    assert m.item() == pytest.approx(mean, rel=1e-6)
    assert v.item() == pytest.approx(var, rel=1e-6)
    assert lv.item() == pytest.approx(math.log(var), rel=1e-6)
    # β̃_0 = 0 is clipped to β̃_1 in log space
    assert diff.posterior_log_variance_clipped[0] == diff.posterior_log_variance_clipped[1]


def test_normal_kl_closed_form():
    m1, lv1, m2, lv2 = (torch.randn(50, dtype=torch.float64) for _ in range(4))
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(m1, torch.exp(0.5 * lv1)), torch.distributions.Normal(m2, torch.exp(0.5 * lv2))
    )
    torch.testing.assert_close(D.normal_kl(m1, lv1, m2, lv2), ref)


def test_discretized_gaussian_against_exact_cdf():
    x = torch.tensor([-1.0, -0.5, 0.0, 0.2, 1.0], dtype=torch.float64)
    mu = torch.tensor([-0.9, -0.45, 0.01, 0.3, 0.95], dtype=torch.float64)
    log_s = torch.full_like(x, math.log(0.05))
    got = D.discretized_gaussian_log_likelihood(x, mu, log_s).exp().numpy()
    s = 0.05
    xs, ms = x.numpy(), mu.numpy()
    exact = norm.cdf((xs + 1 / 255 - ms) / s) - norm.cdf((xs - 1 / 255 - ms) / s)
    exact[0] = norm.cdf((xs[0] + 1 / 255 - ms[0]) / s)  # left edge bin takes the tail
    exact[-1] = 1 - norm.cdf((xs[-1] - 1 / 255 - ms[-1]) / s)  # right edge bin
    np.testing.assert_allclose(got, exact, rtol=1e-2, atol=2e-4)  # tanh approximation of Φ (|error| < 2e-4)


def _video_output(b=2, t=3, c=4, h=4, w=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(b, t, c, h, w, generator=g) * 2 - 1
    xt = torch.randn(b, t, c, h, w, generator=g)
    out = torch.cat([torch.randn(b, t, c, h, w, generator=g), torch.rand(b, t, c, h, w, generator=g) * 2 - 1], dim=2)
    return x0, xt, out


def test_vb_term_by_hand():
    diff = D.create_diffusion()
    x0, xt, out = _video_output()
    t = torch.tensor([0, 700])
    # at t = 0 make x_1 consistent with x_0 and the predicted ε, so the decoder sees a realistic mean
    xt[0] = diff.q_sample(x0[:1], t[:1], out[:1, :, :4])[0]
    vb = diff.vb_terms_bpd(out, x0, xt, t)
    ab, b = diff.alphas_cumprod, diff.betas
    post_var = b * (1 - np.append(1.0, ab[:-1])) / (1 - ab)
    for i, ti in enumerate(t.tolist()):
        eps, v = out[i, :, :4].double().numpy(), out[i, :, 4:].double().numpy()
        x0i, xti = x0[i].double().numpy(), xt[i].double().numpy()
        pred_x0 = xti / math.sqrt(ab[ti]) - math.sqrt(1 / ab[ti] - 1) * eps
        abp = ab[ti - 1] if ti > 0 else 1.0
        c1, c2 = b[ti] * math.sqrt(abp) / (1 - ab[ti]), (1 - abp) * math.sqrt(1 - b[ti]) / (1 - ab[ti])
        p_mean = c1 * pred_x0 + c2 * xti
        lo = math.log(post_var[max(ti, 1)])
        p_logvar = (v + 1) / 2 * math.log(b[ti]) + (1 - (v + 1) / 2) * lo
        if ti == 0:
            s = np.exp(0.5 * p_logvar)
            cdf = lambda z: norm.cdf(z)  # noqa: E731
            prob = np.where(
                x0i < -0.999,
                cdf((x0i + 1 / 255 - p_mean) / s),
                np.where(
                    x0i > 0.999,
                    1 - cdf((x0i - 1 / 255 - p_mean) / s),
                    cdf((x0i + 1 / 255 - p_mean) / s) - cdf((x0i - 1 / 255 - p_mean) / s),
                ),
            )
            want = -np.log(np.maximum(prob, 1e-12)).mean() / math.log(2)
            assert vb[i].item() == pytest.approx(want, rel=2e-2)
        else:
            q_mean = c1 * x0i + c2 * xti
            q_logvar = math.log(post_var[ti])
            kl = 0.5 * (-1 + p_logvar - q_logvar + np.exp(q_logvar - p_logvar))
            kl = kl + 0.5 * (q_mean - p_mean) ** 2 * np.exp(-p_logvar)
            assert vb[i].item() == pytest.approx(kl.mean() / math.log(2), rel=1e-4)


def test_training_loss_vb_trains_only_the_variance():
    diff = D.create_diffusion()
    x0, _, _ = _video_output()
    eps_head = torch.zeros(2, 3, 4, 4, 4, requires_grad=True)
    v_head = torch.zeros(2, 3, 4, 4, 4, requires_grad=True)
    losses = diff.training_losses(lambda x, t, y: torch.cat([eps_head, v_head], 2), x0, torch.tensor([3, 900]))
    losses["vb"].sum().backward()
    assert eps_head.grad.abs().max() == 0 and v_head.grad.abs().max() > 0
    torch.testing.assert_close(losses["loss"], losses["mse"] + losses["vb"])


def _iddpm_kept(num_timesteps: int, count: int) -> list[int]:
    """IDDPM's kept steps worked out with numpy, apart from D.space_timesteps: the float stride added left to
    right (np.add.accumulate adds in order, as IDDPM's ``cur_idx += frac_stride``), rounded half to even."""
    stride = 1.0 if count == 1 else (num_timesteps - 1) / (count - 1)
    positions = np.concatenate([[0.0], np.add.accumulate(np.full(count - 1, stride))])
    return np.rint(positions).astype(int).tolist()


def test_space_timesteps_equals_iddpm_for_every_count():
    for count in range(1, 1001):
        assert D.space_timesteps(1000, str(count)) == _iddpm_kept(1000, count), count
    # round(i·stride) is not IDDPM's choice: it differs for 278 counts, the first 21 (IDDPM 499, round 500)
    naive = {n: sorted({round(i * (999 / (n - 1))) for i in range(n)}) if n > 1 else [0] for n in range(1, 1001)}
    differ = [n for n in range(1, 1001) if naive[n] != _iddpm_kept(1000, n)]
    assert len(differ) == 278 and differ[0] == 21
    assert set(D.space_timesteps(1000, "21")) - set(naive[21]) == {499}
    assert set(D.space_timesteps(16, "15")) ^ {round(i * (15 / 14)) for i in range(15)} == {7, 8}  # IDDPM keeps 7
    # ends, N = 1, sections and the DDIM paper's stride
    keep = D.space_timesteps(1000, "250")
    assert len(keep) == 250 and keep[0] == 0 and keep[-1] == 999
    assert D.space_timesteps(1000, "1") == [0] and D.space_timesteps(1000, 1) == [0]
    assert D.space_timesteps(300, "10,15,20")[:10] == list(range(0, 100, 11))  # 100 steps into 10: stride 11
    assert D.space_timesteps(300, "10,15,20")[10:12] == [100, 107] and len(D.space_timesteps(300, "10,15,20")) == 45
    assert D.space_timesteps(1000, "ddim50") == list(range(0, 1000, 20))
    for bad in ("0", "1001", "ddim999"):  # no integer stride takes exactly 999 of 1000 steps
        with pytest.raises(ValueError):
            D.space_timesteps(1000, bad)


def test_respaced_alphas_are_the_kept_steps():
    keep = D.space_timesteps(1000, "250")
    base, spaced = D.create_diffusion(), D.create_diffusion(250)
    np.testing.assert_allclose(spaced.alphas_cumprod, base.alphas_cumprod[keep], rtol=1e-12)
    assert spaced.map_timesteps(torch.tensor([0, 249])).tolist() == [0, 999]


def _timesteps_seen(**kw) -> list[int]:
    seen = []

    def model(x, t, y=None):  # ε = 0, v = 0: the sampler runs, the recorded t is what matters
        seen.append(int(t[0]))
        return torch.cat([torch.zeros_like(x), torch.zeros_like(x)], dim=2)

    D.sample_video(model, (1, 1, 1, 2, 2), generator=torch.Generator().manual_seed(0), **kw)
    return seen


def test_ddpm_and_ddim_walk_lattes_timesteps():
    """Latte's sample.py builds both samplers on create_diffusion(str(N)): DDIM-50 calls the model at
    999, 979, 958, ... (the DDIM paper's integer stride, 980, 960, ..., only when asked for)."""
    latte_50 = D.space_timesteps(1000, "50")[::-1]
    assert _timesteps_seen(sampler="ddim", steps=50) == latte_50 and latte_50[:3] == [999, 979, 958]
    assert _timesteps_seen(sampler="ddpm", steps=50) == latte_50
    assert _timesteps_seen(sampler="ddim", steps=50, spacing="ddim-stride")[:3] == [980, 960, 940]
    for sampler in ("ddpm", "ddim"):
        assert _timesteps_seen(sampler=sampler, steps=1) == [0]  # one step keeps t = 0, as IDDPM
        assert _timesteps_seen(sampler=sampler, steps=1000) == list(range(999, -1, -1))
    with pytest.raises(ValueError, match="unknown timestep spacing"):
        _timesteps_seen(sampler="ddim", steps=50, spacing="linspace")


def test_respaced_ddpm_step_matches_diffusers_learned_range():
    from diffusers import DDPMScheduler

    spaced = D.create_diffusion(25)
    keep = spaced.timestep_map.tolist()
    sched = DDPMScheduler(beta_schedule="linear", variance_type="learned_range", clip_sample=False)
    sched.set_timesteps(timesteps=keep[::-1])
    x0, xt, out = _video_output(b=1, t=2)
    flat = lambda a: a.reshape(-1, *a.shape[2:])  # noqa: E731  (B, T, C, H, W) -> (B·T, C, H, W)
    for i in (24, 10, 1):
        ref = sched.step(flat(out), keep[i], flat(xt), generator=torch.Generator().manual_seed(i)).prev_sample
        g = torch.Generator().manual_seed(i)
        noise = torch.randn(flat(xt).shape, generator=g).reshape(xt.shape)
        p = spaced.p_mean_variance_from_output(out, xt, torch.tensor([i]))
        ours = p["mean"] + torch.exp(0.5 * p["log_variance"]) * noise
        torch.testing.assert_close(flat(ours), ref, rtol=1e-4, atol=1e-4)


def test_ddim_matches_diffusers():
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(beta_schedule="linear", clip_sample=False, set_alpha_to_one=True)
    sched.set_timesteps(10)
    spaced = D.create_diffusion("ddim10")
    assert sched.timesteps.tolist() == spaced.timestep_map.tolist()[::-1]
    weight = torch.randn(4, 8) * 0.1

    def model(x, t, y=None):  # a fixed linear "network" on the channels
        return torch.einsum("btchw,cd->btdhw", x, weight) + t.float().reshape(-1, 1, 1, 1, 1) / 1000

    noise = torch.randn(1, 2, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    ours = spaced.ddim_sample_loop(lambda x, t: model(x, t), noise)
    x = noise.reshape(2, 4, 4, 4)
    for t in sched.timesteps:
        eps = model(x.reshape(1, 2, 4, 4, 4), t.reshape(1))[:, :, :4].reshape(2, 4, 4, 4)
        x = sched.step(eps, t, x).prev_sample
    torch.testing.assert_close(ours.reshape(2, 4, 4, 4), x, rtol=1e-4, atol=1e-4)


def test_samplers_are_seeded_and_cfg_mixes_noise_channels():
    class Toy(torch.nn.Module):
        def forward(self, x, t, y):
            shift = (y.float() + 1).reshape(-1, 1, 1, 1, 1) * 0.1
            return torch.cat([x * 0.5 + shift, torch.zeros_like(x) + shift], dim=2)

        def forward_with_cfg(self, x, t, y, cfg_scale):  # the models contract: B in, B out
            out = self.forward(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, 3)]))
            cond, uncond = out.chunk(2)
            return torch.cat([uncond[:, :, :2] + cfg_scale * (cond[:, :, :2] - uncond[:, :, :2]), cond[:, :, 2:]], 2)

    kw = dict(sampler="ddpm", steps=5, y=torch.tensor([1, 2]), cfg_scale=7.0)
    a = D.sample_video(Toy(), (2, 2, 2, 4, 4), generator=torch.Generator().manual_seed(1), **kw)
    b = D.sample_video(Toy(), (2, 2, 2, 4, 4), generator=torch.Generator().manual_seed(1), **kw)
    c = D.sample_video(Toy(), (2, 2, 2, 4, 4), generator=torch.Generator().manual_seed(2), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # guidance: ε = ε_u + 7(ε_c − ε_u); with the toy, ε_c − ε_u = 0.1(y+1) − 0.1·4
    den = D.make_denoiser(Toy(), torch.tensor([1]), 7.0)
    x = torch.zeros(1, 1, 2, 1, 1)
    out = den(x, torch.tensor([5]))
    assert out[0, 0, 0].item() == pytest.approx(0.4 + 7 * (0.2 - 0.4))
    assert out[0, 0, 2].item() == pytest.approx(0.2)  # variance channels come from the conditional half


def test_clip_denoised_matches_diffusers_clip_sample():
    """``clip_denoised`` (IDDPM's) against diffusers' ``clip_sample``: DDIM with ε taken from the clamped x_0
    (``use_clipped_model_output``), and a DDPM step whose posterior mean uses the clamped x_0. The toy network
    predicts x_0 far outside [-1, 1], so the clamp changes every step it is on."""
    from diffusers import DDIMScheduler, DDPMScheduler

    weight = torch.randn(4, 8, generator=torch.Generator().manual_seed(3)) * 0.1

    def model(x, t, y=None):
        return torch.einsum("btchw,cd->btdhw", x, weight) - 0.5

    noise = torch.randn(1, 2, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    spaced = D.create_diffusion("ddim10")
    sched = DDIMScheduler(beta_schedule="linear", clip_sample=True, clip_sample_range=1.0, set_alpha_to_one=True)
    sched.set_timesteps(10)
    ours = spaced.ddim_sample_loop(lambda x, t: model(x, t), noise, clip_denoised=True)
    x = noise.reshape(2, 4, 4, 4)
    for t in sched.timesteps:
        eps = model(x.reshape(1, 2, 4, 4, 4), t.reshape(1))[:, :, :4].reshape(2, 4, 4, 4)
        x = sched.step(eps, t, x, use_clipped_model_output=True).prev_sample
    torch.testing.assert_close(ours.reshape(2, 4, 4, 4), x, rtol=1e-4, atol=1e-4)
    assert ours.abs().max() <= 1.0 + 1e-5  # the last step returns the clamped x_0
    unclipped = spaced.ddim_sample_loop(lambda x, t: model(x, t), noise)
    assert (unclipped - ours).abs().max() > 0.5

    spaced = D.create_diffusion(25)
    keep = spaced.timestep_map.tolist()
    sched = DDPMScheduler(beta_schedule="linear", variance_type="learned_range", clip_sample=True,
                          clip_sample_range=1.0)
    sched.set_timesteps(timesteps=keep[::-1])
    x0, xt, out = _video_output(b=1, t=2)
    out = torch.cat([out[:, :, :4] * 20, out[:, :, 4:]], dim=2)  # ε far from x_t's noise: x_0 leaves [-1, 1]
    flat = lambda a: a.reshape(-1, *a.shape[2:])  # noqa: E731
    for i in (24, 10, 1):
        ref = sched.step(flat(out), keep[i], flat(xt), generator=torch.Generator().manual_seed(i)).prev_sample
        noise = torch.randn(flat(xt).shape, generator=torch.Generator().manual_seed(i)).reshape(xt.shape)
        p = spaced.p_mean_variance_from_output(out, xt, torch.tensor([i]), clip_denoised=True)
        assert p["pred_xstart"].abs().max() == 1.0
        torch.testing.assert_close(flat(p["mean"] + torch.exp(0.5 * p["log_variance"]) * noise), ref,
                                   rtol=1e-4, atol=1e-4)
        free = spaced.p_mean_variance_from_output(out, xt, torch.tensor([i]))
        assert (free["mean"] - p["mean"]).abs().max() > 1e-2


def test_eps_from_xstart_inverts_xstart_from_eps():
    d = D.create_diffusion(50)
    xt, eps = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    t = torch.tensor([3, 40])
    torch.testing.assert_close(d.predict_eps_from_xstart(xt, t, d.predict_xstart_from_eps(xt, t, eps)), eps,
                               rtol=1e-4, atol=1e-4)
