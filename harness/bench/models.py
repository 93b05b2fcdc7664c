"""Benchmarks for models/: the selective scan on CPU, and GPU step times, backend agreement and the mixer's cost.

Every function returns rows (dicts) and a Markdown table; timings are medians over repeats, measured side by
side in one process, with harness.machine's timer and memory meter. Imports: torch, einops, rich,
harness.machine (and mamba_ssm where asked) only, so the GPU commands run on a machine with nothing else installed.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
from collections.abc import Callable

import torch

from harness.machine import machine_description, median_time, peak_memory_gib, reset_peak_memory, synchronize
from models import scan


def _max_rss_mib() -> float:
    """This process's resident high-water mark in MiB (harness.machine's meter)."""
    return peak_memory_gib("cpu")[0] * 1024

# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def markdown_table(rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(" --- " for _ in cols) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def peak_scan_memory_mib(batch: int, d: int, L: int, N: int, backward: bool) -> tuple[float, float]:
    """(peak RSS above the process's baseline, size of inputs + their gradients) in MiB for one torch-backend
    scan, measured in a fresh process: the CPU allocator keeps no peak statistics, and a process's max RSS only
    grows, so each measurement gets its own interpreter. Baseline = max RSS after importing torch."""
    import json
    import subprocess
    import sys

    code = f"from harness.bench.models import _peak_child; _peak_child({batch}, {d}, {L}, {N}, {backward})"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return out["peak"] - out["base"], out["inputs"]


def _peak_child(batch: int, d: int, L: int, N: int, backward: bool) -> None:
    import json

    base = _max_rss_mib()
    ins = scan_inputs(batch, d, L, N)
    inputs = sum(v.numel() * v.element_size() for v in ins.values()) * (2 if backward else 1) / 2**20
    run = _scan_call(scan.selective_scan_torch, ins, backward)
    if backward:
        run()
    else:
        with torch.no_grad():
            run()
    print(json.dumps({"base": base, "peak": _max_rss_mib(), "inputs": inputs}))


# ------------------------------------------------------------------------------------------------
# selective scan on CPU (`matten-bench bench scan`)
# ------------------------------------------------------------------------------------------------


def scan_inputs(batch: int, d: int, L: int, N: int, device: str = "cpu", dtype=torch.float32, groups=None, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    shape_bc = (batch, N, L) if groups is None else (batch, groups, N, L)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device=device, dtype=dtype)

    return {
        "u": rnd(batch, d, L),
        "delta": rnd(batch, d, L, scale=0.5),
        "A": -torch.exp(torch.randn(d, N, generator=g) * 0.5).to(device),
        "B": rnd(*shape_bc),
        "C": rnd(*shape_bc),
        "D": torch.randn(d, generator=g).to(device),
        "z": rnd(batch, d, L),
        "delta_bias": (torch.randn(d, generator=g) * 0.3).to(device),
    }


def _scan_call(fn, ins: dict, backward: bool):
    leaves = {k: v.clone().requires_grad_(backward and k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias"))
              for k, v in ins.items()}

    def run():
        out = fn(leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"], leaves["D"], leaves["z"],
                 leaves["delta_bias"], True)
        if backward:
            out.float().sum().backward()
        return out

    return run


def _time_scan(fn, ins: dict, backward: bool, repeats: int, device: str, warmup: int = 1) -> float:
    """Median seconds of one scan call (``backward``: with its backward; else under no_grad)."""
    run = _scan_call(fn, ins, backward)
    with contextlib.nullcontext() if backward else torch.no_grad():
        return median_time(run, repeats, device, warmup=warmup)


def bench_scan(
    lengths_compare: tuple[int, ...] = (1024,),
    lengths_torch: tuple[int, ...] = (4096,),
    batch: int = 2,
    d: int = 768,
    N: int = 16,
    repeats: int = 3,
    reference_repeats: int = 1,
    progress=None,
) -> list[dict]:
    """torch vs reference (fwd+bwd) at `lengths_compare`; torch alone (fwd, fwd+bwd, peak memory) at `lengths_torch`."""
    rows = []
    for L in lengths_compare:
        ins = scan_inputs(batch, d, L, N)
        t_torch = median_time(_scan_call(scan.selective_scan_torch, ins, True), repeats, "cpu")
        t_ref = median_time(_scan_call(scan.selective_scan_reference, ins, True), reference_repeats, "cpu", warmup=0)
        rows.append({"L": L, "backend": "reference", "pass": "fwd+bwd", "median s": t_ref,
                     "repeats": reference_repeats, "speed-up vs reference": 1.0, "peak MiB": "-",
                     "of which inputs (+grads) MiB": "-"})
        rows.append({"L": L, "backend": "torch", "pass": "fwd+bwd", "median s": t_torch, "repeats": repeats,
                     "speed-up vs reference": t_ref / t_torch, "peak MiB": "-",
                     "of which inputs (+grads) MiB": "-"})
        if progress:
            progress()
    for L in lengths_torch:
        ins = scan_inputs(batch, d, L, N)
        for backward in (False, True):
            t = _time_scan(scan.selective_scan_torch, ins, backward, repeats, "cpu")
            peak, inputs = peak_scan_memory_mib(batch, d, L, N, backward)
            rows.append({"L": L, "backend": "torch", "pass": "fwd+bwd" if backward else "fwd", "median s": t,
                         "repeats": repeats, "speed-up vs reference": "-", "peak MiB": f"{peak:.0f}",
                         "of which inputs (+grads) MiB": f"{inputs:.0f}"})
        if progress:
            progress()
    return rows


# ------------------------------------------------------------------------------------------------
# GPU: cuda vs torch agreement, model step times, mixer cost
# ------------------------------------------------------------------------------------------------


AGREEMENT_SHAPES = ((2, 64, 256, 16, None), (2, 128, 1024, 16, 2), (1, 96, 4096, 16, None))


def scan_agreement(device: str = "cuda", shapes=AGREEMENT_SHAPES,
                   dtypes=(torch.float32, torch.bfloat16)) -> list[dict]:
    """Max relative error of the `cuda` backend (and of `triton` where it imports) against `torch` (outputs and
    every gradient) on random inputs.
    Relative = max|a−b| / max|b|; `torch` computes in fp32 from the same (possibly bf16) inputs."""
    if not device.startswith("cuda"):
        other = scan.selective_scan_reference  # on CPU: torch vs reference, so the command is testable anywhere
        other_name = "reference"
    else:
        if scan._import_cuda_kernel() is None:
            raise RuntimeError(f"mamba_ssm's kernel does not import: {scan._cuda_import_error}")
        other, other_name = scan._cuda_fn, "cuda"
    others = [(other, other_name)]
    if device.startswith("cuda") and (triton_fn := scan.triton_kernel()) is not None:
        others.append((triton_fn, "triton"))
    rows = []
    for (b, d, L, N, groups), dtype, (other, other_name) in itertools.product(shapes, dtypes, others):
        ins = scan_inputs(b, d, L, N, device=device, dtype=dtype, groups=groups)
        w = torch.randn(b, d, L, device=device)
        results = []
        for fn in (other, scan.selective_scan_torch):
            leaves = {k: v.clone().requires_grad_() for k, v in ins.items()}
            out = fn(leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"], leaves["D"],
                     leaves["z"], leaves["delta_bias"], True)
            (out.float() * w).sum().backward()
            results.append({"out": out.detach().float(), **{k: v.grad.float() for k, v in leaves.items()}})
        errs = {k: ((results[0][k] - results[1][k]).abs().max() / results[1][k].abs().max()).item()
                for k in results[1]}
        rows.append({"compare": f"{other_name} vs torch", "dtype": str(dtype).replace("torch.", ""),
                     "shape (b,d,L,N,G)": f"{b},{d},{L},{N},{groups or 1}",
                     "out": errs["out"], "worst grad": max(v for k, v in errs.items() if k != "out"),
                     "worst grad of": max((k for k in errs if k != "out"), key=errs.get)})
    return rows


def _step_fn(model, x, t, y, device, amp_dtype):
    def step():
        with torch.autocast(device_type=device.split(":")[0], dtype=amp_dtype, enabled=amp_dtype is not None):
            out = model(x, t, y)
        loss = out.float().pow(2).mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    return step


def _peak_memory(fn, device) -> float | str:
    reset_peak_memory(device)
    fn()
    synchronize(device)
    gib, kind = peak_memory_gib(device)
    return gib if kind == "cuda_max_allocated" else f"{gib:.2f} (process max RSS)"


def bench_models(device: str = "cuda", size: str = "xl", batch: int = 5, frames: int = 16, latent: int = 32,
                 repeats: int = 10, amp: str = "bf16", models: tuple[str, ...] = ("latte", "matten"),  # families
                 num_classes: int = 0) -> list[dict]:
    """fwd+bwd step time (median) and peak memory of Latte and Matten (variant 3) at one size, same inputs."""
    from models.registry import ModelSpec, count_params

    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[amp]
    rows = []
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, frames, 4, latent, latent, generator=g).to(device)
    t = torch.randint(0, 1000, (batch,), generator=g).to(device)
    y = torch.randint(0, num_classes, (batch,), generator=g).to(device) if num_classes else None
    for family in models:
        spec = ModelSpec(family, size)  # Latte, or Matten variant 3 with M-AdaN
        with torch.device(device):
            model = spec.build(num_frames=frames, input_size=latent, num_classes=num_classes)
        step = _step_fn(model, x, t, y, device, amp_dtype)
        ms = median_time(step, repeats, device, warmup=2) * 1e3
        peak = _peak_memory(step, device)
        rows.append({"model": spec.label(patch=2),
                     "params (M)": count_params(model) / 1e6, "batch": batch,
                     "input": f"{frames}x4x{latent}x{latent}", "amp": amp, "fwd+bwd ms (median)": ms,
                     "peak GiB": peak, "scan backend": scan.backend_in_use() if family == "matten" else "-"})
        del model, step
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    base = rows[0]["fwd+bwd ms (median)"]
    for r in rows:
        r[f"× {rows[0]['model']}"] = r["fwd+bwd ms (median)"] / base
    return rows


class _TwoMambas(torch.nn.Module):
    """The planning baseline: two separate mamba_ssm.Mamba modules (forward, and on the flipped sequence)."""

    def __init__(self, dim: int):
        super().__init__()
        from mamba_ssm.modules.mamba_simple import Mamba

        self.fwd = Mamba(dim, d_state=16, d_conv=4, expand=2, use_fast_path=False)
        self.bwd = Mamba(dim, d_state=16, d_conv=4, expand=2, use_fast_path=False)

    def forward(self, x):
        return self.fwd(x) + self.bwd(x.flip(1)).flip(1)


class _AttentionPair(torch.nn.Module):
    """One Latte spatial + temporal attention pair (adaLN-Zero blocks; gates perturbed so work is not skipped)."""

    def __init__(self, dim: int, heads: int, frames: int):
        super().__init__()
        from models.blocks import AttentionBlock

        self.frames = frames
        self.spatial = AttentionBlock(dim, heads)
        self.temporal = AttentionBlock(dim, heads)

    def forward(self, x, c):
        from einops import rearrange

        b = x.shape[0]
        f = self.frames
        x = rearrange(x, "b (f s) d -> (b f) s d", f=f)
        x = self.spatial(x, c.repeat_interleave(f, 0))
        s = x.shape[1]
        x = rearrange(x, "(b f) s d -> (b s) f d", b=b)
        x = self.temporal(x, c.repeat_interleave(s, 0))
        return rearrange(x, "(b s) f d -> b (f s) d", b=b)


def bench_mixer(device: str = "cuda", batch: int = 5, tokens: int = 4096, dim: int = 1152, heads: int = 16,
                frames: int = 16, repeats: int = 20, amp: str = "bf16", baseline: bool = True,
                compiled: bool = True) -> list[dict]:
    """fwd+bwd of the bidirectional Mamba (fused one call / two calls / two mamba_ssm.Mamba) and of a Matten
    Mamba block (M-AdaN + mixer) against one Latte spatial+temporal attention pair at the same width."""
    from models.mamba import BiMamba, MambaBlock
    from models.registry import count_params

    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[amp]
    x = torch.randn(batch, tokens, dim, device=device, requires_grad=True)
    c = torch.randn(batch, dim, device=device)
    candidates: list[tuple[str, torch.nn.Module, Callable]] = []
    pair = _AttentionPair(dim, heads, frames).to(device)
    with torch.no_grad():
        for p in pair.parameters():
            if not p.any():
                p.normal_(0, 0.02)
    candidates.append(("Latte attention pair (S-attn + T-attn)", pair, lambda m: m(x, c)))
    candidates.append(("BiMamba, fused: 1 scan call", BiMamba(dim, fused=True).to(device), lambda m: m(x)))
    candidates.append(("BiMamba, 2 scan calls", BiMamba(dim, fused=False).to(device), lambda m: m(x)))
    block = MambaBlock(dim, "madan").to(device)
    with torch.no_grad():
        block.adaLN_modulation[-1].weight.normal_(0, 0.02)
    candidates.append(("Matten Mamba block (M-AdaN + fused BiMamba)", block, lambda m: m(x, c)))
    if compiled:  # the same modules under torch.compile (the glue around the scan kernel fuses; see mamba.py)
        candidates.append(("Latte attention pair, torch.compile", torch.compile(pair), lambda m: m(x, c)))
        candidates.append(("BiMamba, fused, torch.compile", torch.compile(BiMamba(dim).to(device)), lambda m: m(x)))
        candidates.append(("Matten Mamba block, torch.compile", torch.compile(block), lambda m: m(x, c)))
    if baseline:
        try:
            candidates.append(("2 × mamba_ssm.Mamba (planning baseline)", _TwoMambas(dim).to(device), lambda m: m(x)))
        except Exception as e:  # mamba_ssm absent (CPU): say so in the table rather than skip silently
            candidates.append((f"2 × mamba_ssm.Mamba: not run ({type(e).__name__})", None, None))
    rows = []
    for name, module, call in candidates:
        if module is None:
            rows.append({"module": name, "params (M)": "-", "fwd+bwd ms (median)": "-", "peak GiB": "-"})
            continue

        def step(module=module, call=call):
            with torch.autocast(device_type=device.split(":")[0], dtype=amp_dtype, enabled=amp_dtype is not None):
                out = call(module)
            out.float().sum().backward()
            module.zero_grad(set_to_none=True)
            x.grad = None

        ms = median_time(step, repeats, device, warmup=3) * 1e3
        peak = _peak_memory(step, device)
        rows.append({"module": name, "params (M)": count_params(module) / 1e6,
                     "fwd+bwd ms (median)": ms, "peak GiB": peak})
    base = rows[0]["fwd+bwd ms (median)"]
    for r in rows:
        r["× attention pair"] = r["fwd+bwd ms (median)"] / base if isinstance(r["fwd+bwd ms (median)"], float) else "-"
    return rows


# ------------------------------------------------------------------------------------------------
# all four GPU tables in one run; also `python -m harness.bench.models --device cuda` (no harness.cli imports)
# ------------------------------------------------------------------------------------------------


MIXER_TARGET = 1.0  # the scan issue: the bidirectional mixer's fwd+bwd at most a (compiled) Latte attention pair's


def mixer_verdict(rows: list[dict]) -> str:
    """The fused BiMamba's fwd+bwd against the Latte attention pair's (compiled rows where measured), vs the target."""
    ms = {r["module"]: r["fwd+bwd ms (median)"] for r in rows if isinstance(r["fwd+bwd ms (median)"], float)}
    for pair, mixer, how in (("Latte attention pair, torch.compile", "BiMamba, fused, torch.compile", "compiled"),
                             ("Latte attention pair (S-attn + T-attn)", "BiMamba, fused: 1 scan call", "eager")):
        if pair in ms and mixer in ms:
            ratio = ms[mixer] / ms[pair]
            met = "met" if ratio <= MIXER_TARGET else "missed"
            return (f"target: the fused bidirectional mixer's fwd+bwd <= {MIXER_TARGET:g}x the Latte attention "
                    f"pair's ({how}): {ratio:.2f}x, {met}")
    return "no target (the mixer or the attention pair was not measured)"


# ------------------------------------------------------------------------------------------------
# the scan's floor: the bytes it must move, at the device's measured copy bandwidth
# ------------------------------------------------------------------------------------------------

# Matten-XL's fused bidirectional scan at 16×4×32×32, patch 2, batch 5: 2 × 2,304 channels (expand 2 × 1,152,
# both directions), 4,096 tokens, N = 16, B/C grouped by direction (models/mamba.py)
XL_SCAN = {"batch": 5, "d": 4608, "L": 4096, "N": 16, "groups": 2}


def scan_bytes(batch: int, d: int, L: int, N: int, groups: int = 1, elem: int = 2) -> dict[str, int]:
    """The bytes a selective scan must move at the least, each tensor read or written once and no state stored
    (the backward recomputes it): u, delta, z and the output (batch, d, L) and B, C (batch, groups, N, L) in
    ``elem``-byte elements (bf16: 2); A (d, N), D and delta_bias (d,) in fp32.
    forward: reads u, delta, z, B, C, A, D, delta_bias; writes the output.
    backward: reads the same and the output's gradient; writes the gradients of u, delta, z, B, C (``elem``
    bytes) and of A, D, delta_bias (fp32)."""
    seq, bc, params = batch * d * L * elem, batch * groups * N * L * elem, (d * N + 2 * d) * 4
    inputs = 3 * seq + 2 * bc + params
    return {"forward": inputs + seq, "backward": inputs + seq + (3 * seq + 2 * bc + params)}


def copy_bandwidth(device: str, mib: int = 1024, repeats: int = 10) -> float:
    """Bytes per second of a device-to-device copy of ``mib`` MiB (read + write counted), median of repeats."""
    src = torch.empty(mib * 2**20, dtype=torch.uint8, device=device).fill_(1)
    dst = torch.empty_like(src)
    t = median_time(lambda: dst.copy_(src), repeats, device, warmup=2)
    return 2 * src.numel() / t


def scan_floor(device: str = "cuda", shape: dict | None = None, dtype=torch.bfloat16, repeats: int = 5,
               mib: int = 1024, with_torch: bool = True) -> list[dict]:
    """Each scan backend available on ``device`` (mamba-ssm's and triton on CUDA, ours everywhere; ``with_torch``
    False leaves out the `torch` backend, slow at XL shapes) against the floor: the bytes of :func:`scan_bytes` at
    the measured copy bandwidth. Rows: pass, backend, median ms, floor ms, × floor."""
    shape = shape or XL_SCAN
    nbytes = scan_bytes(**shape, elem=torch.empty((), dtype=dtype).element_size())
    bandwidth = copy_bandwidth(device, mib)
    ins = scan_inputs(shape["batch"], shape["d"], shape["L"], shape["N"], device, dtype, groups=shape["groups"])
    backends = []
    if torch.device(device).type == "cuda" and scan.cuda_available():
        backends.append(("cuda (mamba-ssm)", scan._cuda_fn))
    if torch.device(device).type == "cuda" and (triton_fn := scan.triton_kernel()) is not None:
        backends.append(("triton (ours)", triton_fn))
    if with_torch:
        backends.append(("torch", scan.selective_scan_torch))
    rows = []
    for name, fn in backends:
        for backward in (False, True):
            t = _time_scan(fn, ins, backward, repeats, device, warmup=2)
            need = nbytes["forward"] + (nbytes["backward"] if backward else 0)
            floor = need / bandwidth
            rows.append({"pass": "fwd+bwd" if backward else "fwd", "backend": name, "median ms": t * 1e3,
                         "bytes (GB)": need / 1e9, "copy GB/s": bandwidth / 1e9, "floor ms": floor * 1e3,
                         "× floor": t / floor})
        gc.collect()
    return rows


GPU_PARTS = {
    "agreement": "(a) scan backend agreement, max relative error (max|a-b| / max|b|), outputs and gradients",
    "models": "(b) forward+backward step, bf16 autocast, same inputs, one run",
    "mixer": "(c) the bidirectional Mamba's cost vs one Latte spatial+temporal attention pair, fwd+bwd, bf16",
    "floor": "(d) the fused bidirectional scan at Matten-XL/2's shape against its floor: the bytes it must move "
             "(each tensor once, no stored states) at the measured device-to-device copy bandwidth",
}


def gpu_tables(device: str = "cuda", tiny: bool = False) -> dict[str, list[dict]]:
    """The rows of GPU_PARTS' tables: scan backend agreement, Latte vs Matten steps, the mixer's cost, the scan's
    floor."""
    shapes = ((2, 16, 64, 16, None), (1, 32, 96, 16, 2)) if tiny else AGREEMENT_SHAPES
    out = {"agreement": scan_agreement(device, shapes=shapes)}
    if tiny:
        out["models"] = bench_models(device, "tiny", batch=2, frames=4, latent=8, repeats=2)
        out["mixer"] = bench_mixer(device, batch=2, tokens=64, dim=64, heads=4, frames=4, repeats=2, compiled=False)
        out["floor"] = scan_floor(device, {"batch": 1, "d": 32, "L": 64, "N": 4, "groups": 2}, torch.float32,
                                  repeats=2, mib=8)
    else:
        out["models"] = bench_models(device, "xl", batch=5, frames=16, latent=32, repeats=10)
        out["mixer"] = bench_mixer(device, batch=5, tokens=4096, dim=1152, heads=16, frames=16, repeats=20)
        out["floor"] = scan_floor(device)
    return out


def gpu_report(device: str = "cuda", tiny: bool = False, command: str = "",
               parts: dict[str, list[dict]] | None = None) -> str:
    """:func:`gpu_tables` (or ``parts`` already measured) as Markdown, with the command, machine and date."""
    import datetime

    parts = parts or gpu_tables(device, tiny)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = [f"Command: `{command}`  \nMachine: {machine_description(device)}  \nDate: {date}\n"]
    for key, title in GPU_PARTS.items():
        text += [("\n" if key != "agreement" else "") + title + "\n", markdown_table(parts[key])]
    return "\n".join(text)


if __name__ == "__main__":
    import sys

    args = sys.argv[1:]
    dev = args[args.index("--device") + 1] if "--device" in args else "cuda"
    print(gpu_report(dev, tiny="--tiny" in args, command="python -m harness.bench.models " + " ".join(args)))
