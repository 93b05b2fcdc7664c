"""`matten-bench bench train`: the training step and the training loop of Matten vs Latte (see harness.bench.train)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import typer

from harness.cli.app import RECORD_DIR_OPTION, RECORD_OPTION, bench_app, record_bench
from harness.console import console
from harness.errors import UserError


@bench_app.command("train")
def bench_train(
    models: str = typer.Option("matten,latte", help="comma-separated families"),
    size: str = typer.Option("xl", help="model size (tiny for a CPU smoke run)"),
    patch: int = typer.Option(2, min=1, help="patch size (tokens per frame = (latent/patch)^2)"),
    batch: int = typer.Option(5, min=1, help="videos per step (Latte's local batch)"),
    frames: int = typer.Option(16, min=1),
    channels: int = typer.Option(4, min=1, help="4 for SD-VAE latents, 3 for pixels"),
    latent: int = typer.Option(32, min=1, help="latent (or pixel) height = width"),
    num_classes: int = typer.Option(101, min=0, help="UCF101's classes (0 = unconditional)"),
    device: str = typer.Option("cuda", help="cuda | cuda:N | cpu"),
    warmup: int = typer.Option(3, min=0),
    iters: int = typer.Option(10, min=1, help="timed steps; the median is reported"),
    compile: bool = typer.Option(True, "--compile/--no-compile", help="torch.compile the forward (ours)"),
    compile_mode: str = typer.Option("default", help="torch.compile mode of the pure step, the sampling and the loop: "
                                     "default | "
                                     "reduce-overhead (CUDA graphs) | max-autotune | max-autotune-no-cudagraphs"),
    reference: bool = typer.Option(True, "--reference/--no-reference", help="also run Latte the public-code way"),
    sampling: bool = typer.Option(True, "--sampling/--no-sampling", help="also time DDPM sampling with CFG"),
    sample_batch: int = typer.Option(8, min=1, help="videos per sampling batch (CFG doubles it)"),
    sample_steps: int = typer.Option(10, min=1, help="sampling steps timed; scaled to DDPM-250"),
    loop: bool = typer.Option(True, "--loop/--no-loop", help="also run the real `train` loop at the same shape"),
    loop_steps: int = typer.Option(60, min=1, help="steps of the train loop (the first logging interval is warm-up)"),
    loop_log_every: int = typer.Option(10, min=1, help="the loop's logging interval (its samples/s are per interval)"),
    loop_workers: int = typer.Option(4, min=0, help="the loop's loader workers (train's default)"),
    loop_repeats: int = typer.Option(1, help="the pure step and the loop this many times, alternating; the ratio "
                                     "reported is the median of the pairs' (one pair's moves with the host's speed)"),
    loop_loader: str = typer.Option("auto", help="train's --loader: auto (as train decides for a latent cache: "
                                    "processes on CUDA, threads elsewhere) | processes (DataLoader's workers) | "
                                    "threads"),
    ckpt_every: int = typer.Option(1000, min=1, help="checkpoint cadence the loop's rate is amortised over"),
    json_out: Path = typer.Option(None, help="also write the full result as JSON here"),
    record: bool = RECORD_OPTION,
    record_dir: Path = RECORD_DIR_OPTION,
    builder: str = typer.Option("models:build_model", hidden=True),
) -> None:
    """Pure training step (median ms, samples/s, memory, MFU) and the real `train` loop's samples/s, side by side."""
    from rich.table import Table

    from harness.bench import train as B

    fams = [m.strip() for m in models.split(",") if m.strip()]
    shape = B.Shape(size=size, patch=patch, batch=batch, frames=frames, channels=channels, latent=latent,
                    num_classes=num_classes)
    opts = B.Options(
        warmup=warmup, iters=iters, compile=compile, compile_mode=compile_mode, reference=reference,
        sampling=sampling, sample_batch=sample_batch, sample_steps=sample_steps, loop=loop, loop_steps=loop_steps,
        loop_log_every=loop_log_every, loop_workers=loop_workers, loop_loader=loop_loader, loop_repeats=loop_repeats,
        ckpt_every=ckpt_every, builder=builder,
    )
    res = B.run(fams, shape, opts, device=device, log=console.print)
    res["command"] = "matten-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    table = Table(title=f"bench train · {res['device']} · {shape.describe()} · scan {res['scan_backend']}")
    for col in ("model", "params (M)", "pure step ms", "pure samples/s", "loop samples/s", "loop / pure",
                "peak GiB", "MFU", "rel err vs fp32", "DDPM-250 s/video"):
        table.add_column(col, overflow="fold")
    for m in res["models"]:
        table.add_row(
            m["model"],
            f"{m['params'] / 1e6:.1f}",
            f"{m['step_ms']:.1f}",
            f"{m['samples_per_s']:.1f}",
            f"{m['loop_samples_per_s_with_ckpt']:.1f}" if loop else "-",
            f"{m['loop_over_pure']:.3f}" if loop else "-",
            f"{m['peak_mem_gib']:.2f}",
            f"{m['mfu'] * 100:.1f}%" if "mfu" in m else "n/a",
            f"{m['check_rel_l2_vs_fp32']:.2e} {'ok' if m['check_ok'] else 'FAIL'}",
            f"{m['ddpm250_s_per_video']:.2f}" if sampling else "-",
        )
    console.print(table)
    for m in res["models"]:
        if loop:
            verdict = "meets" if m["loop_over_pure"] >= res["loop_target"] else "MISSES"
            console.print(
                f"{m['model']}: train loop {m['loop_samples_per_s_with_ckpt']:.1f} samples/s with a checkpoint every "
                f"{ckpt_every} steps (steady {m['loop_samples_per_s']:.1f}; the checkpoint stalled the loop "
                f"{m['loop_checkpoint_waited_s']:.2f} s, written in {m['loop_checkpoint_written_s']:.2f} s in the "
                f"background) = {m['loop_over_pure']:.3f} of the pure step: {verdict} the target "
                f">= {res['loop_target']}"
                + (f" (the median of {m['loop_repeats']} pairs, pure step and loop alternating: "
                   f"{', '.join(f'{r:.3f}' for r in m['loop_over_pure_all'])}; medians: loop "
                   f"{m['loop_samples_per_s_with_ckpt']:.1f}, pure step {m['loop_pure_samples_per_s_median']:.1f} "
                   "samples/s; the table's pure step is the first pair's)"
                   if m.get("loop_repeats", 1) > 1 else "")
            )
        if "speedup_vs_latte_public" in m:
            console.print(
                f"{m['model']}: speed-up over Latte's public way = {m['speedup_vs_latte_public']:.2f}x "
                f"(public {m['latte_public_step_ms']:.1f} ms / ours {m['step_ms']:.1f} ms)"
            )
        if "mfu_fvcore" in m:
            console.print(
                f"{m['model']}: MFU from fvcore's analytic count (3 × 2 × GFMA/clip × batch = "
                f"{m['train_flops_fvcore_3x_fwd'] / 1e12:.2f} TFLOP/step): {m['mfu_fvcore'] * 100:.1f}% "
                f"of {m['peak_tflops_bf16']} TFLOP/s bf16 dense"
            )
        console.print(
            f"{m['model']}: FLOPs counted by torch FlopCounterMode (FLOP = 2 FMA, fwd+bwd, one step); "
            f"selective scan not counted, analytic estimate {m['train_flops_scan_estimate'] / 1e12:.3f} TFLOP"
        )
    if "matten_over_latte_step_time" in res:
        console.print(
            f"Matten/Latte wall-clock step ratio: {res['matten_over_latte_step_time']:.3f} "
            f"(counted FLOP ratio {res['matten_over_latte_flops']:.3f}; the paper claims ≈0.72)"
        )
    if json_out:
        from harness.io import atomic_write_json

        atomic_write_json(json_out, res)
    from dataclasses import asdict

    from harness.bench.record import NO_TARGET

    verdicts = []
    if loop:
        met = [m["model"] for m in res["models"] if m["loop_over_pure"] >= res["loop_target"]]
        missed = [m["model"] for m in res["models"] if m["model"] not in met]
        verdicts.append(f"target: the train loop at >= {res['loop_target']} of the pure step's samples/s: "
                        + (f"met by {', '.join(met)}" if met else "met by none")
                        + (f"; missed by {', '.join(missed)}" if missed else ""))
    if "matten_over_latte_step_time" in res:  # the scan issue's target for the step
        ratio = res["matten_over_latte_step_time"]
        met = "met" if ratio <= B.STEP_RATIO_TARGET else "missed"
        verdicts.append(f"target: Matten's step <= {B.STEP_RATIO_TARGET:g}x Latte's (the scan issue): "
                        f"{ratio:.2f}x, {met}")
    options = {"models": fams, **asdict(shape), **{k: v for k, v in asdict(opts).items() if k != "builder"}}
    record_bench("train", device, options, res["models"], record, record_dir, verdict="; ".join(verdicts) or NO_TARGET,
                 command=res["command"], details={k: v for k, v in res.items() if k not in ("models", "command")})
    print(json.dumps(res))


@bench_app.command("ddp")
def bench_ddp(
    models: str = typer.Option("matten,latte", help="comma-separated families"),
    size: str = typer.Option("xl", help="model size (tiny for a CPU dry run)"),
    batch: int = typer.Option(5, min=1, help="clips per step per process (Latte's local batch)"),
    frames: int = typer.Option(16, min=1),
    latent: int = typer.Option(32, min=1, help="latent height = width (a cache of random latents of this shape)"),
    nproc: int = typer.Option(2, min=2, help="processes (GPUs) against one"),
    steps: int = typer.Option(60, min=1, help="steps of each scaling run"),
    log_every: int = typer.Option(10, min=1, help="logging interval (samples/s is per interval)"),
    skip: int = typer.Option(2, min=0, help="intervals left out of the median (compile, warm-up)"),
    device: str = typer.Option("cuda", help="cuda (NCCL) or cpu (gloo, a dry run)"),
    precision: str = typer.Option("bf16", help="bf16 | fp32 (the equality check is always fp32)"),
    compile: bool = typer.Option(True, "--compile/--no-compile", help="train's torch.compile"),
    ddp_bucket_mb: int = typer.Option(25, min=1, help="train's --ddp-bucket-mb: DDP's gradient bucket size, MiB"),
    ddp_static_graph: bool = typer.Option(False, "--ddp-static-graph/--no-ddp-static-graph",
                                          help="train's --ddp-static-graph: DDP's static_graph"),
    scaling: bool = typer.Option(True, "--scaling/--no-scaling", help="samples/s on 1 and on N processes"),
    equality: bool = typer.Option(True, "--equality/--no-equality", help="one fp32 step: ranks vs one process"),
    kill: bool = typer.Option(True, "--kill/--no-kill", help="a killed run resumed, against an uninterrupted one"),
    kill_steps: int = typer.Option(200, min=2, help="length of the kill/resume runs"),
    kill_after: int = typer.Option(120, min=1, help="kill one rank once this step is logged"),
    kill_ckpt_every: int = typer.Option(50, min=1, help="checkpoint cadence of the kill/resume runs"),
    workdir: Path = typer.Option(Path("runs/bench-ddp"), help="the cache and the runs"),
    record: bool = RECORD_OPTION,
    record_dir: Path = RECORD_DIR_OPTION,
) -> None:
    """Several GPUs under torchrun, as a user runs `train`: scaling 1 vs N, equality of one step, a killed rank."""
    from dataclasses import asdict

    from rich.markup import escape

    from harness.bench import ddp
    from harness.bench.train import Shape

    fams = [m.strip() for m in models.split(",") if m.strip()]
    if not fams:
        raise UserError(f"--models {models!r}: name at least one family (matten, latte)")
    if record and record_dir.exists() and not record_dir.is_dir():
        raise UserError(f"--record-dir {record_dir} is a file, not a folder")
    setup = ddp.Setup(Shape(size=size, batch=batch, frames=frames, latent=latent), device=device, precision=precision,
                      compile=compile, ddp_bucket_mb=ddp_bucket_mb, ddp_static_graph=ddp_static_graph)
    if not (scaling or equality or kill):
        raise UserError("--no-scaling, --no-equality and --no-kill leave nothing to run")
    rows = []
    if scaling:
        console.print(f"scaling: {', '.join(fams)}-{size} on 1 and {nproc} processes, {steps} steps each "
                      f"(runs in {escape(str(workdir))})")
        rows += [{"check": "scaling", **r} for r in ddp.scaling(fams, setup, workdir, nproc, steps, log_every, skip)]
    if equality:
        rows.append({"check": "equality", **ddp.equality(fams[0], setup, workdir, nproc)})
    if kill:
        rows.append({"check": "kill and resume", **ddp.kill_resume(fams[0], setup, workdir, nproc, kill_steps,
                                                                    kill_after, kill_ckpt_every, log_every)})
    for r in rows:
        console.print("  " + ", ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}"
                                       for k, v in r.items()), soft_wrap=True)
    scaled = [r for r in rows if r["check"] == "scaling"]
    verdict = (f"target: scaling efficiency >= {ddp.EFFICIENCY_TARGET}: "
               + "; ".join(f"{r['model']} {r['efficiency']:.3f} ({'met' if r['met'] else 'missed'})" for r in scaled)
               if scaled else "no scaling target: equality and kill/resume only")
    record_bench("ddp", device, {"models": fams, "nproc": nproc, "steps": steps, **asdict(setup)}, rows, record,
                 record_dir, verdict=verdict)
    console.print(verdict)
