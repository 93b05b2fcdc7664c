"""`matten-bench models` (the registry) and the model benchmarks `matten-bench bench scan|scan-check|models|mixer|gpu`.

Benchmarks print a Markdown table (with the command, machine and date) and write one JSON record (results/bench/,
harness.bench.record); `matten-bench bench report` makes results/benchmarks.md from the records.
Heavy imports stay inside the functions: the GPU commands need only torch, einops, typer, rich (and mamba_ssm).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import typer
from rich.table import Table

from harness.cli.app import RECORD_DIR_OPTION, RECORD_OPTION, app, bench_app, record_bench
from harness.console import console, progress
from harness.errors import UserError


@app.command("models")
def models_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print the paper-size models as a JSON list on stdout."),
    include_tiny: bool = typer.Option(False, "--tiny", help="Also list the smoke-scale 'tiny' preset."),
) -> None:
    """Every model: name, blocks, parameters, the paper's parameters and the deviation, the match to variant 3."""
    from harness.baselines import with_paper_params
    from models.registry import list_models

    rows = with_paper_params(list_models(include_tiny=include_tiny and not as_json))
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    from rich import box

    # readable at 80 columns: sizes and variants are in the name, numbers never wrap, the blocks fold
    table = Table(title="Models: patch 2, counted unconditional with M-AdaN at 16×4×32×32 on the meta device",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("model", no_wrap=True)
    table.add_column("blocks", overflow="fold", ratio=1)
    for col in ("params (M)", "paper (M)", "vs paper", "vs v3"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        dev = "—" if r["deviation"] is None else f"{100 * r['deviation']:+.1f}%"
        table.add_row(
            r["label"], r["blocks"], f"{r['params'] / 1e6:,.1f}",
            "—" if r["paper_params"] is None else f"{r['paper_params'] / 1e6:,.1f}", dev,
            "—" if r["vs_variant3"] is None else f"{100 * r['vs_variant3']:+.1f}%",
        )
    hidden = ", ".join(f"{r['size'].upper()} {r['hidden']}" for r in rows if r["family"] == "latte")
    console.print(table)
    console.print(f"hidden size: {hidden}; Mamba state N = 16; `matten-bench models --json` has every field")


def _header(device: str) -> str:
    from harness.machine import machine_description

    cmd = "matten-bench " + " ".join(sys.argv[1:])
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"Command: `{cmd.strip()}`  \nMachine: {machine_description(device)}  \nDate: {date}\n"


def _check_device(device: str) -> None:
    """The one device rule (harness.machine): cpu, cuda or cuda:N, a GPU only where torch sees one."""
    from harness.machine import resolve_device

    resolve_device(device)


@bench_app.command("scan")
def bench_scan_cmd(
    compare: list[int] = typer.Option([1024], "--compare", min=1, help="Lengths L where torch and reference both run."),
    torch_only: list[int] = typer.Option([4096], "--torch-only", min=1, help="Lengths L for the torch backend alone."),
    batch: int = typer.Option(2, min=1, help="Batch size."),
    d_inner: int = typer.Option(768, min=1, help="Channels d (Mamba's d_inner)."),
    d_state: int = typer.Option(16, min=1, help="State size N."),
    repeats: int = typer.Option(5, min=1, help="Timed repeats of the torch backend (median reported)."),
    reference_repeats: int = typer.Option(3, min=1, help="Timed repeats of the reference loop (median reported)."),
    reference: bool = typer.Option(True, help="Run the --compare lengths (--no-reference: the torch-only rows)."),
    record: bool = RECORD_OPTION,
    record_dir: Path = RECORD_DIR_OPTION,
) -> None:
    """Selective scan on CPU: `torch` vs `reference` fwd+bwd, and `torch` alone (fwd, fwd+bwd, peak memory)."""
    from harness.bench.models import bench_scan, markdown_table

    compare = compare if reference else []
    header = _header("cpu")
    if compare:
        console.print("the reference loop is slow: with the defaults this takes about 8.5 minutes on 2 CPUs "
                      "(results/benchmarks.md); --no-reference leaves it out")
    with progress() as bar:
        task = bar.add_task("selective scan", total=len(compare) + len(torch_only))
        rows = bench_scan(tuple(compare), tuple(torch_only), batch, d_inner, d_state, repeats, reference_repeats,
                          progress=lambda: bar.advance(task))
    print(header)
    print(f"batch {batch}, d_inner {d_inner}, N {d_state}, fp32, delta_softplus, with D, z, delta_bias\n")
    print(markdown_table(rows))
    record_bench("scan", "cpu", {"compare": compare, "torch_only": torch_only, "batch": batch, "d_inner": d_inner,
                            "d_state": d_state, "repeats": repeats, "reference_repeats": reference_repeats},
            rows, record, record_dir)


@bench_app.command("scan-check")
def bench_scan_check_cmd(
    device: str = typer.Option("cuda", help="cuda: cuda vs torch; cpu: reference vs torch."),
    record: bool = RECORD_OPTION,
    record_dir: Path = RECORD_DIR_OPTION,
) -> None:
    """Backend agreement on random inputs (fp32 and bf16): max relative error of outputs and gradients."""
    from harness.bench.models import markdown_table, scan_agreement

    _check_device(device)
    shapes = None if device.startswith("cuda") else ((2, 16, 64, 16, None), (1, 32, 96, 16, 2))
    header = _header(device)
    rows = scan_agreement(device, **({} if shapes is None else {"shapes": shapes}))
    print(header)
    print(markdown_table(rows))
    record_bench("scan-check", device, {"shapes": shapes or "AGREEMENT_SHAPES"}, rows, record, record_dir)


@bench_app.command("models")
def bench_models_cmd(
    device: str = typer.Option("cuda", help="cuda or cpu."),
    size: str = typer.Option("xl", help="Model size s|b|l|xl|tiny."),
    batch: int = typer.Option(5, min=1, help="Batch size."),
    frames: int = typer.Option(16, min=1, help="Frames."),
    latent: int = typer.Option(32, min=1, help="Latent height = width."),
    repeats: int = typer.Option(10, min=1, help="Timed steps (median reported)."),
    amp: str = typer.Option("bf16", help="Autocast dtype: bf16, fp16 or fp32 (no autocast)."),
    record: bool = RECORD_OPTION,
    record_dir: Path = RECORD_DIR_OPTION,
) -> None:
    """Latte vs Matten (variant 3) forward+backward step time and peak memory, same inputs, one run."""
    from harness.bench.models import bench_models, markdown_table

    _check_device(device)
    header = _header(device)
    rows = bench_models(device, size, batch, frames, latent, repeats, amp)
    print(header)
    print(markdown_table(rows))
    options = {"size": size, "batch": batch, "frames": frames, "latent": latent, "repeats": repeats, "amp": amp}
    record_bench("models", device, options, rows, record, record_dir)


@bench_app.command("mixer")
def bench_mixer_cmd(
    device: str = typer.Option("cuda", help="cuda or cpu."),
    batch: int = typer.Option(5, min=1, help="Batch size."),
    tokens: int = typer.Option(4096, min=1, help="Sequence length (T·H·W tokens)."),
    dim: int = typer.Option(1152, min=1, help="Model width D."),
    heads: int = typer.Option(16, min=1, help="Attention heads of the comparison pair."),
    frames: int = typer.Option(16, min=1, help="Frames (the attention pair's temporal length)."),
    repeats: int = typer.Option(20, min=1, help="Timed steps (median reported)."),
    amp: str = typer.Option("bf16", help="Autocast dtype: bf16, fp16 or fp32."),
    record: bool = RECORD_OPTION,
    record_dir: Path = RECORD_DIR_OPTION,
) -> None:
    """The bidirectional Mamba's cost (fused / two calls / two mamba_ssm.Mamba) vs one Latte attention pair."""
    from harness.bench.models import bench_mixer, markdown_table

    _check_device(device)
    if tokens % frames:
        raise UserError(f"--tokens {tokens} must be a multiple of --frames {frames}")
    header = _header(device)
    rows = bench_mixer(device, batch, tokens, dim, heads, frames, repeats, amp)
    print(header)
    print(markdown_table(rows))
    from harness.bench.models import mixer_verdict

    print(mixer_verdict(rows))
    record_bench("mixer", device, {"batch": batch, "tokens": tokens, "dim": dim, "heads": heads, "frames": frames,
                              "repeats": repeats, "amp": amp}, rows, record, record_dir, verdict=mixer_verdict(rows))


@bench_app.command("gpu")
def bench_gpu_cmd(
    device: str = typer.Option("cuda", help="cuda (or cpu with --tiny for a dry run)."),
    tiny: bool = typer.Option(False, help="Tiny sizes (a dry run that works on CPU)."),
    record: bool = RECORD_OPTION,
    record_dir: Path = RECORD_DIR_OPTION,
) -> None:
    """All four GPU tables in one run: backend agreement, Latte-XL/2 vs Matten-XL/2 steps, the mixer's cost, the
    scan against its floor (the bytes it must move at the measured copy bandwidth)."""
    from harness.bench.models import gpu_report, gpu_tables

    _check_device(device)
    parts = gpu_tables(device, tiny)
    print(gpu_report(device, tiny, command="matten-bench " + " ".join(sys.argv[1:]), parts=parts))
    record_bench("gpu", device, {"tiny": tiny}, [{"table": k, **r} for k, rows in parts.items() for r in rows], record,
            record_dir)


@bench_app.command("report")
def bench_report_cmd(
    record_dir: Path = typer.Option(Path("results/bench"), help="the benchmark records (one JSON per run)"),
    out: Path = typer.Option(Path("results/benchmarks.md"), help="the Markdown file to write"),
    history: Path = typer.Option(Path("results/benchmarks-history.md"),
                                 help="hand-written history appended verbatim (skipped when missing)"),
) -> None:
    """results/benchmarks.md from the benchmark records: per benchmark, newest first, then the history."""
    from rich.markup import escape

    from harness.bench.record import read_records, write_report

    if not record_dir.is_dir():
        raise UserError(f"--record-dir {record_dir} is not a folder (a `matten-bench bench ...` run writes one)")
    path = write_report(record_dir, out, history)
    console.print(f"wrote {escape(str(path))} from {len(read_records(record_dir))} record(s)")
