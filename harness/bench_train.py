"""`matten-bench bench train`: training-step time, memory, MFU and sampling cost, measured side by side.

In one process, for each model (Matten-XL/2 and Latte-XL/2 by default; batch 5 of
16×4×32×32 latents, class-conditional with 101 classes as UCF101):

* "ours": bf16 autocast, torch.compile, SDPA attention, fused AdamW, the real IDDPM loss
  (MSE + VB) — forward, backward, gradient norm and optimizer step, timed per step with CUDA
  synchronisation; the median over ``iters`` steps after ``warmup`` steps.
* "latte-public" (Latte only): the same model run the way Latte's public code runs it —
  fp32 with TF32 matmuls on, attention computed explicitly as softmax(QKᵀ/√d)·V, eager,
  torch.optim.AdamW with its default (foreach) implementation.
* the equality check: the "ours" output against an fp32 eager forward (TF32 off) on the same
  input and weights, relative L2 error printed; bf16 tolerance is 2e-2.
* FLOPs: counted by torch.utils.flop_counter.FlopCounterMode on one eager training step
  (matmuls, convolutions and attention, forward and backward; FLOP = 2 FMA). It does not
  see the selective-scan kernel's elementwise recurrence (about 1% of Matten's FLOPs by the
  analytic estimate 2·6·E·D·N per token per Mamba layer, printed beside it).
* sampling: DDPM with classifier-free guidance (batch doubled inside forward_with_cfg),
  ``sample_steps`` steps timed and scaled to 250; GPU-hours for 2048 FVD samples.

Imports only torch, einops, rich, models and harness.diffusion (no decord/av/diffusers).
"""

from __future__ import annotations

import contextlib
import importlib
import math
import statistics
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from harness.diffusion import create_diffusion

# Dense peak throughput (TFLOP/s) from NVIDIA's datasheets, by device-name substring; --peak-tflops overrides.
PEAK_TFLOPS = {
    "H100 PCIe": {"bf16": 756.0, "tf32": 378.0},
    "H100": {"bf16": 989.4, "tf32": 494.7},  # SXM / HBM3
    "H200": {"bf16": 989.4, "tf32": 494.7},
    "A100": {"bf16": 312.0, "tf32": 156.0},
}


# fvcore forward GFMA per 16×4×32×32 clip (results/flops.md, `matten-bench flops`, models at 8f80ef5):
# with attention products and the selective scan. A training step is taken as 3× the forward (fwd + 2× bwd).
FVCORE_GFMA_PER_CLIP = {("latte", "xl"): 1894.04, ("matten", "xl"): 2437.11}


def peak_tflops(device: torch.device) -> dict[str, float] | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, val in PEAK_TFLOPS.items():
        if key in name:
            return val
    return None


def explicit_attention_sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw):
    """softmax(QKᵀ·scale)·V written out, as Latte's public code does with its "math" attention."""
    assert attn_mask is None and not is_causal and dropout_p == 0.0
    scale = scale if scale is not None else q.shape[-1] ** -0.5
    attn = (q @ k.transpose(-2, -1)) * scale
    return attn.softmax(dim=-1) @ v


@contextlib.contextmanager
def explicit_attention():
    """Route every F.scaled_dot_product_attention call through the explicit (unfused) form."""
    orig = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = explicit_attention_sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = orig


@contextlib.contextmanager
def tf32(enabled: bool):
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def build(builder: str, family: str, size: str, **kw) -> torch.nn.Module:
    mod, _, fn = builder.partition(":")
    return getattr(importlib.import_module(mod), fn)(family, size, **kw)


@torch.no_grad()
def perturb_weights(model: torch.nn.Module, std: float = 0.02) -> torch.nn.Module:
    """Add seeded noise to every parameter: adaLN-Zero models output exactly 0 at initialisation,
    which would make the fp32 equality check vacuous."""
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(1234)
    for p in model.parameters():
        p.add_(torch.randn(p.shape, generator=g, device=device, dtype=p.dtype) * std)
    return model


def make_train_step(model, opt, x, t, y, noise, *, bf16: bool, forward=None) -> Callable[[], float]:
    """One training step: IDDPM loss (MSE + VB) forward, backward, grad norm, optimizer step."""
    diffusion = create_diffusion()
    forward = forward if forward is not None else model
    device = x.device

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = diffusion.training_losses(forward, x, t, y, noise)["loss"].mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf)  # the norm Latte logs every step
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def time_it(fn: Callable[[], Any], device: torch.device, warmup: int, iters: int) -> list[float]:
    """Milliseconds per call, each call synchronised, after ``warmup`` untimed calls."""
    from models.bench import time_calls

    return [t * 1e3 for t in time_calls(fn, device, warmup, iters)]


def count_train_flops(model, x, t, y, noise) -> float:
    """FLOPs of one eager training step's forward+backward (FlopCounterMode; FLOP = 2 FMA)."""
    from torch.utils.flop_counter import FlopCounterMode

    diffusion = create_diffusion()
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            loss = diffusion.training_losses(model, x, t, y, noise)["loss"].mean()
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def scan_flops_estimate(model, tokens_per_sample: int, batch: int) -> float:
    """Analytic selective-scan FLOPs (fwd+bwd ≈ 3×fwd; fwd ≈ 6·E·D·N per token per direction) — not in the count."""
    total = 0.0
    for m in model.modules():
        a_log = [p for n, p in m.named_parameters(recurse=False) if n.startswith("A_log")]
        for p in a_log:  # one (E·D, N) A_log per scan direction
            total += 6 * p.numel() * tokens_per_sample * batch
    return 3 * total


def peak_mem_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def reset_mem(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def bench_model(
    family: str,
    *,
    size: str,
    batch: int,
    frames: int,
    channels: int,
    latent: int,
    num_classes: int,
    device: torch.device,
    warmup: int,
    iters: int,
    compile: bool,
    compile_mode: str,
    reference: bool,
    sample_batch: int,
    sample_steps: int,
    builder: str,
    log: Callable[[str], None],
) -> dict[str, Any]:
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(batch, frames, channels, latent, latent, generator=g, device=device)
    noise = torch.randn(x.shape, generator=g, device=device)
    t = torch.randint(0, 1000, (batch,), generator=g, device=device)
    y = torch.randint(0, num_classes, (batch,), generator=g, device=device) if num_classes else None
    kw = dict(num_classes=num_classes, num_frames=frames, in_channels=channels, input_size=latent)
    res: dict[str, Any] = {"model": f"{family}-{size}/2", "batch": batch}

    torch.manual_seed(0)
    model = perturb_weights(build(builder, family, size, **kw).to(device))
    res["params"] = sum(p.numel() for p in model.parameters())

    # -- equality: ours (bf16 autocast [+ compile]) vs fp32 eager, TF32 off, same weights and input.
    # The check runs at the sampling shape (2·sample_batch with guidance), so the compiled
    # eval-mode graph it builds is the one sampling reuses (one compile fewer).
    model.eval()
    fwd = torch.compile(model, mode=compile_mode) if compile else model
    compile_note = f"torch.compile({compile_mode})" if compile else "eager"
    nb = 2 * sample_batch if num_classes else sample_batch
    cx = torch.randn(nb, frames, channels, latent, latent, generator=g, device=device)
    ct = torch.randint(0, 1000, (nb,), generator=g, device=device)
    cy = torch.randint(0, num_classes, (nb,), generator=g, device=device) if num_classes else None
    with torch.no_grad(), tf32(False):
        ref = model(cx, ct, cy).float()
        try:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                fast = fwd(cx, ct, cy).float()
        except Exception as e:  # a model that does not compile is reported, then measured eager
            log(f"[yellow]{family}: torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); eager")
            fwd, compile_note = model, f"eager (compile failed: {type(e).__name__})"
            with torch.autocast(device.type, dtype=torch.bfloat16):
                fast = fwd(cx, ct, cy).float()
    rel = ((fast - ref).norm() / ref.norm()).item()
    res["check_rel_l2_vs_fp32"] = rel
    res["check_ok"] = rel < 2e-2
    res["mode"] = f"bf16 autocast, SDPA, {compile_note}, {'fused ' if device.type == 'cuda' else ''}AdamW"
    model.train()
    del ref, fast, cx, ct, cy

    # -- FLOPs of one training step (eager, counted)
    flops = count_train_flops(model, x, t, y, noise)
    res["train_flops_counted"] = flops
    res["train_flops_scan_estimate"] = scan_flops_estimate(model, frames * (latent // 2) ** 2, batch)

    # -- ours
    reset_mem(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0, fused=device.type == "cuda")
    step = make_train_step(model, opt, x, t, y, noise, bf16=True, forward=fwd)
    try:
        ms = time_it(step, device, warmup, iters)
    except Exception as e:  # compile can also fail in the backward; reported, then measured eager
        if fwd is model:
            raise
        log(f"[yellow]{family}: compiled training step failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
        fwd, res["mode"] = model, res["mode"].replace(compile_note, f"eager (compile failed: {type(e).__name__})")
        opt.zero_grad(set_to_none=True)
        step = make_train_step(model, opt, x, t, y, noise, bf16=True, forward=fwd)
        ms = time_it(step, device, warmup, iters)
    res["step_ms"] = statistics.median(ms)
    res["step_ms_all"] = [round(v, 2) for v in ms]
    res["samples_per_s"] = batch / (res["step_ms"] / 1e3)
    res["peak_mem_gib"] = peak_mem_gib(device)
    peaks = peak_tflops(device)
    gfma = FVCORE_GFMA_PER_CLIP.get((family, size)) if (frames, latent, channels) == (16, 32, 4) else None
    if gfma:
        res["train_flops_fvcore_3x_fwd"] = 3 * 2 * gfma * 1e9 * batch
    if peaks:
        res["mfu"] = flops / (res["step_ms"] / 1e3) / (peaks["bf16"] * 1e12)
        if gfma:
            res["mfu_fvcore"] = res["train_flops_fvcore_3x_fwd"] / (res["step_ms"] / 1e3) / (peaks["bf16"] * 1e12)
        res["peak_tflops_bf16"] = peaks["bf16"]
    del opt, step

    # -- sampling: DDPM with CFG, ``sample_steps`` steps timed, scaled to 250
    model.eval()
    reset_mem(device)
    diffusion = create_diffusion(sample_steps)
    sx = torch.randn(sample_batch, frames, channels, latent, latent, generator=g, device=device)
    sy = torch.randint(0, num_classes, (sample_batch,), generator=g, device=device) if num_classes else None

    def denoise(z, tt):
        if sy is not None:
            return fwd.forward_with_cfg(z, tt, sy, 7.0) if fwd is model else _cfg(fwd, model, z, tt, sy)
        return fwd(z, tt, None)

    def sample_once():
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
            diffusion.p_sample_loop(denoise, sx.clone(), g)

    ms = time_it(sample_once, device, 1, max(1, min(3, iters)))
    per_step_video = statistics.median(ms) / sample_steps / sample_batch
    res["ddpm250_s_per_video"] = per_step_video * 250 / 1e3
    res["gpu_hours_2048"] = res["ddpm250_s_per_video"] * 2048 / 3600
    res["sample_peak_mem_gib"] = peak_mem_gib(device)
    model = fwd = None  # free the measured model before the reference one is built
    if compile:
        torch._dynamo.reset()  # compiled graphs hold the model's weights

    # -- Latte's public way: fp32 + TF32, explicit attention, eager, default AdamW
    if reference:
        torch.manual_seed(0)
        ref_model = perturb_weights(build(builder, family, size, **kw).to(device)).train()
        reset_mem(device)
        opt = torch.optim.AdamW(ref_model.parameters(), lr=1e-4, weight_decay=0)
        with explicit_attention(), tf32(True):
            ms = time_it(make_train_step(ref_model, opt, x, t, y, noise, bf16=False), device, warmup, iters)
        res["latte_public_step_ms"] = statistics.median(ms)
        res["latte_public_peak_mem_gib"] = peak_mem_gib(device)
        res["speedup_vs_latte_public"] = res["latte_public_step_ms"] / res["step_ms"]
        del opt, ref_model
    reset_mem(device)

    return res


def _cfg(compiled, model, z, t, y):
    """Classifier-free guidance through the compiled forward (same arithmetic as model.forward_with_cfg)."""
    null = torch.full_like(y, model.num_classes)
    out = compiled(torch.cat([z, z]), torch.cat([t, t]), torch.cat([y, null]))
    cond, uncond = out.chunk(2)
    c = z.shape[2]
    return torch.cat([uncond[:, :, :c] + 7.0 * (cond[:, :, :c] - uncond[:, :, :c]), cond[:, :, c:]], dim=2)


def run(
    families: list[str],
    *,
    size: str = "xl",
    batch: int = 5,
    frames: int = 16,
    channels: int = 4,
    latent: int = 32,
    num_classes: int = 101,
    device: str = "cuda",
    warmup: int = 3,
    iters: int = 10,
    compile: bool = True,
    compile_mode: str = "default",
    reference: bool = True,
    sample_batch: int = 8,
    sample_steps: int = 10,
    builder: str = "models:build_model",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    dev = torch.device(device)
    out: dict[str, Any] = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "shape": [batch, frames, channels, latent, latent],
        "warmup": warmup,
        "iters": iters,
        "models": [],
    }
    try:
        from models.scan import backend_in_use

        out["scan_backend"] = str(backend_in_use())
    except ImportError:
        out["scan_backend"] = "unavailable"
    for fam in families:
        log(f"benchmarking {fam}-{size}/2 ...")
        out["models"].append(
            bench_model(
                fam,
                size=size,
                batch=batch,
                frames=frames,
                channels=channels,
                latent=latent,
                num_classes=num_classes,
                device=dev,
                warmup=warmup,
                iters=iters,
                compile=compile,
                compile_mode=compile_mode,
                reference=reference and fam == "latte",
                sample_batch=sample_batch,
                sample_steps=sample_steps,
                builder=builder,
                log=log,
            )
        )
    by = {m["model"].split("-")[0]: m for m in out["models"]}
    if "matten" in by and "latte" in by:
        out["matten_over_latte_step_time"] = by["matten"]["step_ms"] / by["latte"]["step_ms"]
        out["matten_over_latte_flops"] = by["matten"]["train_flops_counted"] / by["latte"]["train_flops_counted"]
    return out
