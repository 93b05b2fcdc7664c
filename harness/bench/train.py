"""`matten-bench bench train`: the training step and the training loop, measured side by side.

In one process, for each model (Matten-XL/2 and Latte-XL/2 by default; batch 5 of
16×4×32×32 latents, class-conditional with 101 classes as UCF101):

* "pure step": bf16 autocast, torch.compile, SDPA attention, fused AdamW, the real IDDPM loss
  (MSE + VB) — forward, backward, gradient norm and optimizer step on one fixed batch already
  on the device, timed per step with synchronisation; the median over ``iters`` steps after
  ``warmup`` steps. What the model costs, and nothing else.
* "train loop": ``harness.train.train`` itself — the command a user runs — on a latent cache of
  random latents of the same shape: DataLoader workers drawing each sample's timestep and noise,
  pinned copies, the EMA, the metrics, checkpoints at ``ckpt_every``. Its samples/s is the median
  over its logging intervals after the first (which holds the compile and the workers' start);
  the checkpoint's cost is added as the loop would pay it every ``ckpt_every`` steps (the time the
  loop waited; the write itself runs in the background). The ratio loop / pure step is the loop's
  overhead; the target is >= 0.85.
* "latte-public" (Latte only, optional): the same model run the way Latte's public code runs it —
  fp32 with TF32 matmuls on, attention computed explicitly as softmax(QKᵀ/√d)·V, eager,
  torch.optim.AdamW with its default (foreach) implementation.
* the equality check: the pure step's output against an fp32 eager forward (TF32 off) on the same
  input and weights, relative L2 error printed; bf16 tolerance is 2e-2.
* FLOPs: counted by torch.utils.flop_counter.FlopCounterMode on one eager training step
  (matmuls, convolutions and attention, forward and backward; FLOP = 2 FMA). It does not
  see the selective-scan kernel's elementwise recurrence (about 1% of Matten's FLOPs by the
  analytic estimate 2·6·E·D·N per token per Mamba layer, printed beside it).
* sampling (optional): DDPM with classifier-free guidance (batch doubled inside forward_with_cfg),
  ``sample_steps`` steps timed and scaled to 250; GPU-hours for 2048 FVD samples.

Imports torch, einops, rich, numpy, pandas (the training loop's data layer), models and harness
(no decord/av/diffusers/fvcore), so it runs on a GPU image with nothing else installed.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from harness.diffusion import create_diffusion
from harness.errors import UserError
from harness.machine import (
    compile_blocks,
    count_params,
    machine_description,
    machine_record,
    peak_memory_gib,
    reset_peak_memory,
    resolve_device,
    tf32,
    time_calls,
)

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
    """The models' attention as the explicit (unfused) form inside the block (models.blocks.attention_through).
    A model that never called it (one from another builder, with its own attention) is a UserError: its
    "Latte's public way" column would silently measure SDPA."""
    from models.blocks import attention_through

    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return explicit_attention_sdpa(*args, **kwargs)

    with attention_through(counted):
        yield
    if not calls:
        raise UserError("the explicit attention of Latte's public way was never called: this model does not use "
                        "models.blocks.Attention (--no-reference skips that column)")


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


def make_train_step(model, opt, x, t, y, noise, *, bf16: bool) -> Callable[[], float]:
    """One training step: IDDPM loss (MSE + VB) forward, backward, grad norm, optimizer step."""
    diffusion = create_diffusion()
    device = x.device

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = diffusion.training_losses(model, x, t, y, noise)["loss"].mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf)  # the norm Latte logs every step
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def time_it(fn: Callable[[], Any], device: torch.device, warmup: int, iters: int) -> list[float]:
    """Milliseconds per call, each call synchronised, after ``warmup`` untimed calls."""
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
    """GiB: CUDA's peak since the last reset, or on the CPU the process's high-water mark (harness.machine)."""
    return peak_memory_gib(device)[0]


@dataclass(frozen=True)
class Shape:
    """What one benchmark row trains: model size and patch, and the batch of clips (B, T, C, H, W)."""

    size: str = "xl"
    patch: int = 2
    batch: int = 5
    frames: int = 16
    channels: int = 4
    latent: int = 32  # height = width, in latent (or pixel) units
    num_classes: int = 101

    def model_kwargs(self) -> dict[str, int]:
        return dict(num_classes=self.num_classes, num_frames=self.frames, in_channels=self.channels,
                    input_size=self.latent, patch=self.patch)

    def tokens(self) -> int:
        return self.frames * (self.latent // self.patch) ** 2

    def describe(self) -> str:
        return f"batch {self.batch} × {self.frames}×{self.channels}×{self.latent}×{self.latent}, patch {self.patch}"


@dataclass(frozen=True)
class Options:
    """How to measure (the CLI's options, validated once)."""

    warmup: int = 3
    iters: int = 10
    compile: bool = True
    compile_mode: str = "default"
    reference: bool = True  # Latte the public-code way
    sampling: bool = True
    sample_batch: int = 8
    sample_steps: int = 10
    loop: bool = True  # harness.train.train beside the pure step
    loop_steps: int = 60
    loop_log_every: int = 10
    loop_workers: int = 4
    loop_loader: str = "auto"  # train's --loader (auto, for the loop's latent cache: processes on CUDA, else threads)
    loop_repeats: int = 1  # pure step and loop, alternating, this many times; the ratio is the pairs' median
    ckpt_every: int = 1000  # the checkpoint cadence the loop's rate is amortised over (train's default)
    builder: str = "models:build_model"

    def __post_init__(self) -> None:
        from harness.config import check_compile_mode, check_loader

        check_loader(self.loop_loader, "--loop-loader")  # before the pure step's minutes, not at the loop
        check_compile_mode(self.compile_mode, self.compile)
        if self.loop_repeats < 1:
            raise UserError(f"--loop-repeats {self.loop_repeats}: must be at least 1")
        if self.loop and self.loop_steps < 3 * self.loop_log_every:
            raise UserError(f"--loop-steps {self.loop_steps}: at least 3 logging intervals of "
                            f"{self.loop_log_every} steps are needed (the first is warm-up)")


LOOP_TARGET = 0.85  # train loop samples/s over the pure step's (the trainer issue's target)
STEP_RATIO_TARGET = 1.6  # the scan issue: Matten-XL/2's training step at most 1.6x Latte-XL/2's


def _inputs(shape: Shape, device: torch.device, g: torch.Generator, batch: int | None = None):
    b = batch or shape.batch
    x = torch.randn(b, shape.frames, shape.channels, shape.latent, shape.latent, generator=g, device=device)
    t = torch.randint(0, 1000, (b,), generator=g, device=device)
    y = torch.randint(0, shape.num_classes, (b,), generator=g, device=device) if shape.num_classes else None
    return x, t, y


def bench_model(family: str, shape: Shape, opts: Options, device: torch.device,
                log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """One model: the pure step (with its fp32 check and FLOP count), then sampling, Latte's public way and
    the training loop, each as asked."""
    from models.registry import ModelSpec

    spec = ModelSpec(family, shape.size)  # Latte, or Matten variant 3 with M-AdaN
    res: dict[str, Any] = {"model": spec.label(patch=shape.patch), "name": spec.name, "family": family,
                           "batch": shape.batch}
    log(f"benchmarking {res['model']} ({shape.describe()}) ...")
    res.update(pure_step(family, shape, opts, device))
    if opts.sampling:
        res.update(sampling_cost(family, shape, opts, device))
    if opts.reference and family == "latte":
        res.update(latte_public_step(family, shape, opts, device))
        res["speedup_vs_latte_public"] = res["latte_public_step_ms"] / res["step_ms"]
    if opts.loop:
        res.update(loop_against_pure(family, shape, opts, device, res))
    reset_peak_memory(device)
    return res


def loop_against_pure(family: str, shape: Shape, opts: Options, device: torch.device,
                      first_pure: dict[str, Any]) -> dict[str, Any]:
    """The train loop's samples/s over the pure step's, ``opts.loop_repeats`` times, pure step and loop alternating
    in this process (the first pure step is ``first_pure``): one pair's ratio moves with the host's speed from run
    to run (results/benchmarks-history.md, eighth session), so the ratio reported is the median of the pairs'."""
    pairs = []
    for i in range(opts.loop_repeats):
        pure = first_pure if i == 0 else pure_step(family, shape, opts, device)
        loop = train_loop(family, shape, opts, device)
        pairs.append((pure, loop))
    out = dict(pairs[0][1]) if opts.loop_repeats == 1 else {
        **pairs[0][1],
        "loop_samples_per_s": statistics.median(lp["loop_samples_per_s"] for _, lp in pairs),
        "loop_samples_per_s_with_ckpt": statistics.median(lp["loop_samples_per_s_with_ckpt"] for _, lp in pairs),
        "loop_samples_per_s_intervals": [lp["loop_samples_per_s_intervals"] for _, lp in pairs],
    }
    ratios = [lp["loop_samples_per_s_with_ckpt"] / pu["samples_per_s"] for pu, lp in pairs]
    steady = [lp["loop_samples_per_s"] / pu["samples_per_s"] for pu, lp in pairs]
    out["loop_over_pure"] = statistics.median(ratios)
    out["loop_over_pure_steady"] = statistics.median(steady)
    if opts.loop_repeats > 1:
        out["loop_over_pure_all"] = [round(r, 4) for r in ratios]
        out["loop_pure_step_ms_all"] = [round(pu["step_ms"], 2) for pu, _ in pairs]
        # the table's pure step is the first pair's, which can stand apart (a step still warming up)
        out["loop_pure_samples_per_s_median"] = statistics.median(pu["samples_per_s"] for pu, _ in pairs)
    out["loop_repeats"] = opts.loop_repeats
    return out


def _build(family: str, shape: Shape, opts: Options, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return perturb_weights(build(opts.builder, family, shape.size, **shape.model_kwargs()).to(device))


def pure_step(family: str, shape: Shape, opts: Options, device: torch.device) -> dict[str, Any]:
    """The model's own training step on one fixed batch on the device (see the module's docstring)."""
    g = torch.Generator(device=device).manual_seed(0)
    x, t, y = _inputs(shape, device, g)
    noise = torch.randn(x.shape, generator=g, device=device)
    model = _build(family, shape, opts, device)
    res: dict[str, Any] = {"params": count_params(model)}

    # -- equality: bf16 autocast [+ compile] vs fp32 eager, TF32 off, same weights and input.
    model.eval()
    cx, ct, cy = _inputs(shape, device, g, batch=2 * opts.sample_batch if shape.num_classes else opts.sample_batch)
    with torch.no_grad(), tf32(False):
        ref = model(cx, ct, cy).float()  # before compiling: compile_blocks works in place
    # compiled as `train` compiles (block by block, in place)
    compile_note = "eager"
    if opts.compile:
        compile_note = f"torch.compile({opts.compile_mode}), {compile_blocks(model, opts.compile_mode)}"
    with torch.no_grad(), tf32(False), torch.autocast(device.type, dtype=torch.bfloat16):
        fast = model(cx, ct, cy).float()  # a compile failure is an error: never a silent eager number
    rel = ((fast - ref).norm() / ref.norm()).item()
    res.update(check_rel_l2_vs_fp32=rel, check_ok=rel < 2e-2)
    res["mode"] = f"bf16 autocast, SDPA, {compile_note}, {'fused ' if device.type == 'cuda' else ''}AdamW"
    model.train()
    del ref, fast, cx, ct, cy

    # -- FLOPs of one training step (eager, counted)
    with torch.compiler.set_stance("force_eager"):
        res["train_flops_counted"] = count_train_flops(model, x, t, y, noise)
    res["train_flops_scan_estimate"] = scan_flops_estimate(model, shape.tokens(), shape.batch)

    # -- the step
    reset_peak_memory(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0, fused=device.type == "cuda")
    ms = time_it(make_train_step(model, opt, x, t, y, noise, bf16=True), device, opts.warmup, opts.iters)
    res["step_ms"] = statistics.median(ms)
    res["step_ms_all"] = [round(v, 2) for v in ms]
    res["samples_per_s"] = shape.batch / (res["step_ms"] / 1e3)
    res["peak_mem_gib"] = peak_mem_gib(device)
    peaks = peak_tflops(device)
    default_shape = (shape.frames, shape.latent, shape.channels, shape.patch) == (16, 32, 4, 2)
    gfma = FVCORE_GFMA_PER_CLIP.get((family, shape.size)) if default_shape else None
    if gfma:
        res["train_flops_fvcore_3x_fwd"] = 3 * 2 * gfma * 1e9 * shape.batch
    if peaks:
        res["mfu"] = res["train_flops_counted"] / (res["step_ms"] / 1e3) / (peaks["bf16"] * 1e12)
        if gfma:
            res["mfu_fvcore"] = res["train_flops_fvcore_3x_fwd"] / (res["step_ms"] / 1e3) / (peaks["bf16"] * 1e12)
        res["peak_tflops_bf16"] = peaks["bf16"]
    _forget_compiled(opts)
    return res


def sampling_cost(family: str, shape: Shape, opts: Options, device: torch.device) -> dict[str, Any]:
    """DDPM with classifier-free guidance: ``sample_steps`` steps timed, scaled to 250."""
    model = _build(family, shape, opts, device).eval()
    if opts.compile:
        compile_blocks(model, opts.compile_mode)  # in place, as `train` compiles: forward_with_cfg runs compiled too
    reset_peak_memory(device)
    diffusion = create_diffusion(opts.sample_steps)
    g = torch.Generator(device=device).manual_seed(1)
    sx, _, sy = _inputs(shape, device, g, batch=opts.sample_batch)

    def denoise(z, tt):
        if sy is not None:
            return model.forward_with_cfg(z, tt, sy, 7.0)  # Latte's UCF101 guidance scale (harness.sample's default)
        return model(z, tt, None)

    def sample_once():
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
            diffusion.p_sample_loop(denoise, sx.clone(), g)

    ms = time_it(sample_once, device, 1, max(1, min(3, opts.iters)))
    per_step_video = statistics.median(ms) / opts.sample_steps / opts.sample_batch
    res = {"ddpm250_s_per_video": per_step_video * 250 / 1e3, "sample_peak_mem_gib": peak_mem_gib(device)}
    res["gpu_hours_2048"] = res["ddpm250_s_per_video"] * 2048 / 3600
    _forget_compiled(opts)
    return res


def latte_public_step(family: str, shape: Shape, opts: Options, device: torch.device) -> dict[str, Any]:
    """Latte's public way: fp32 + TF32, explicit attention, eager, default AdamW."""
    g = torch.Generator(device=device).manual_seed(0)
    x, t, y = _inputs(shape, device, g)
    noise = torch.randn(x.shape, generator=g, device=device)
    model = _build(family, shape, opts, device).train()
    reset_peak_memory(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0)
    with explicit_attention(), tf32(True):
        ms = time_it(make_train_step(model, opt, x, t, y, noise, bf16=False), device, opts.warmup, opts.iters)
    return {"latte_public_step_ms": statistics.median(ms), "latte_public_peak_mem_gib": peak_mem_gib(device)}


def train_loop(family: str, shape: Shape, opts: Options, device: torch.device) -> dict[str, Any]:
    """``harness.train.train`` on random latents of ``shape``, as a user runs it (see the module's docstring)."""
    import tempfile

    import numpy as np

    from harness.train import TrainConfig, train
    from harness.vae import write_latent_cache

    n = max(256, 4 * shape.batch)  # several batches an epoch: the loop crosses epochs as a real run does
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((n, shape.frames, shape.channels, shape.latent, shape.latent), dtype=np.float32)
    labels = rng.integers(0, max(shape.num_classes, 1), n)
    reset_peak_memory(device)
    with tempfile.TemporaryDirectory(prefix="bench-train-loop-") as work:
        cache = write_latent_cache(Path(work) / "cache", latents, labels, shape.num_classes,
                                   meta={"source": "bench train: random latents"})
        cfg = TrainConfig(
            data=str(cache), run_dir=str(Path(work) / "run"), family=family, size=shape.size, patch=shape.patch,
            num_frames=shape.frames, steps=opts.loop_steps, batch=shape.batch, log_every=opts.loop_log_every,
            ckpt_every=opts.ckpt_every, num_workers=opts.loop_workers, device=str(device), compile=opts.compile,
            compile_mode=opts.compile_mode,
            precision="bf16", model_builder=opts.builder, loader=opts.loop_loader,
        )
        rec = train(cfg)
        lines = [json.loads(x) for x in (Path(work) / "run" / "metrics.jsonl").read_text().splitlines()]
    rates = [x["samples_per_s"] for x in lines[1:]]  # the first interval holds the compile and the workers' start
    steady = statistics.median(rates)
    waited = rec["checkpoint_seconds"]["loop_waited"][-1]
    per_cadence = opts.ckpt_every * shape.batch / steady + waited  # seconds for ckpt_every steps and one checkpoint
    _forget_compiled(opts)
    return {
        "loop_samples_per_s": steady,
        "loop_samples_per_s_intervals": [round(r, 2) for r in rates],
        "loop_checkpoint_waited_s": waited,
        "loop_checkpoint_written_s": rec["checkpoint_seconds"]["written_in_background"][-1],
        "loop_samples_per_s_with_ckpt": opts.ckpt_every * shape.batch / per_cadence,
        "loop_peak_mem_gib": lines[-1]["peak_mem_gib"],
        "loop_steps": opts.loop_steps,
        "loop_workers": opts.loop_workers,
        "loop_loader": rec["protocol"]["loader"]["kind"],
        "loop_compiled": rec["protocol"]["compile"],
        "loop_compile_mode": rec["protocol"]["compile_mode"],
    }


def _forget_compiled(opts: Options) -> None:
    """Drop compiled graphs (they hold the model's weights; a new model of the same class would count as a
    recompile of the same code, and past dynamo's limit it would silently run eager)."""
    if opts.compile:
        torch._dynamo.reset()
    gc.collect()


def run(families: list[str], shape: Shape = Shape(), opts: Options = Options(), device: str = "cuda",
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every family at ``shape``, one after the other in this process; a JSON-ready record."""
    import datetime

    dev = resolve_device(device)
    if opts.compile:
        from harness.config import check_compile_mode_on

        check_compile_mode_on(opts.compile_mode, dev.type)  # before any measurement
    out: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": machine_description(dev),
        "machine": machine_record(dev),
        "torch": torch.__version__,
        "shape": [shape.batch, shape.frames, shape.channels, shape.latent, shape.latent],
        "patch": shape.patch,
        "size": shape.size,
        "options": asdict(opts),
        "loop_target": LOOP_TARGET,
        "models": [],
    }
    from models.scan import backend_in_use

    out["scan_backend"] = str(backend_in_use())
    for fam in families:
        out["models"].append(bench_model(fam, shape, opts, dev, log))
    by = {m["family"]: m for m in out["models"]}
    if "matten" in by and "latte" in by:
        out["matten_over_latte_step_time"] = by["matten"]["step_ms"] / by["latte"]["step_ms"]
        out["matten_over_latte_flops"] = by["matten"]["train_flops_counted"] / by["latte"]["train_flops_counted"]
    return out
