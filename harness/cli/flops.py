"""`matten-bench flops`: FLOPs and parameters of a model: fvcore per clip, or the paper's thop procedure."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import typer

from harness.cli.app import app
from harness.console import console


@app.command()
def flops(
    model: str = typer.Option("matten-xl", "--model",
                              help="a model name: matten-xl (variant 3), matten-xl-v2, matten-s-v3-tokens, latte-xl."),
    variant: int = typer.Option(3, "--variant", help="Matten variant 1-4 (ignored for Latte)."),
    protocol: str = typer.Option("fvcore", "--protocol", help="fvcore (per-clip FMA) or paper (thop, batch 3)."),
    batch: int | None = typer.Option(None, "--batch", help="Clips per forward; default 1 (fvcore) or 3 (paper)."),
    frames: int = typer.Option(16, "--frames", help="Frames per clip."),
    size: int = typer.Option(256, "--size", help="Pixel size; latents are size/8 (SD VAE), 256 -> 32x32x4."),
    as_json: bool = typer.Option(False, "--json", help="Print the record as JSON on stdout."),
    report: Path = typer.Option(None, "--report", help="Count Latte-XL and Matten-XL under both protocols and write "
                                "this Markdown report (results/flops.md), the records beside it in flops/."),
) -> None:
    """Count FLOPs on the meta device (no weights in memory): fvcore with attention/scan handles, or thop."""
    from harness.flops import count_flops

    if report is not None:
        write_report(report)
        return

    record = count_flops(model, protocol=protocol, variant=variant, batch=batch, frames=frames, size=size)
    if as_json:
        print(json.dumps(record, indent=2, sort_keys=True))
        return
    print_record(record)


def print_record(record: dict) -> None:
    from rich.table import Table

    from harness.flops import breakdown_rows

    b, f, s, lat = record["batch"], record["frames"], record["pixel_size"], record["latent_size"]
    name = record["model"] + (f" (variant {record['variant']}, {record.get('conditioning', 'madan')})"
                              if record["model"].lower().startswith("matten") else "")
    console.print(
        f"[bold]{name}[/bold], input {record['input_shape']} = "
        f"{b} clip(s) of {f} frames at {s}x{s} pixels -> {lat}x{lat}x4 SD-VAE latents (/8); "
        f"params {record['params'] / 1e6:.1f} M; counted in {record['seconds']} s on the meta device"
    )
    if record["protocol"] == "paper":
        console.print(
            f"paper procedure (thop.profile, batch {b}): [bold]{record['fma'] / 1e9:,.3f} G MACs[/bold] "
            f"— what Latte's code and the paper print as \"GFLOPs\"; paper: {record['paper_gflops'] or '-'}"
        )
        console.print(f"  = {record['fma'] / b / 1e9:,.1f} G MACs per clip; {record['note']}")
        return
    table = Table(title=f"fvcore, batch {b} (1 FMA = 1 multiply-add; FLOP = 2 x FMA)")
    for col in ("part", "GFMA", "GFLOP", "share"):
        table.add_column(col, justify="left" if col == "part" else "right")
    total = record["fma"]
    for category, fma in breakdown_rows(record):
        if fma:
            table.add_row(category, f"{fma / 1e9:,.2f}", f"{2 * fma / 1e9:,.2f}", f"{fma / total:.1%}")
    table.add_row("[bold]total[/bold]", f"[bold]{total / 1e9:,.2f}[/bold]", f"[bold]{2 * total / 1e9:,.2f}[/bold]", "")
    console.print(table)
    if b > 1:
        console.print(f"per clip: {total / b / 1e9:,.2f} GFMA = {2 * total / b / 1e9:,.2f} GFLOP")
    ops = ", ".join(f"{k.split('::')[-1]} x{v}" for k, v in sorted(record["unsupported_ops"].items()))
    console.print(f"not counted (element-wise ops fvcore has no handle for; name x calls): {ops or 'none'}")


def write_report(path: Path) -> None:
    """The four counts, their JSON records (``<path's folder>/flops/``) and the Markdown report at ``path``."""
    from rich.markup import escape

    from harness.flops import count_flops, flops_report
    from harness.io import atomic_write_json, atomic_write_text

    records = []
    for model in ("latte-xl", "matten-xl"):
        for protocol in ("fvcore", "paper"):
            console.print(f"counting {model} ({protocol}) on the meta device ...")
            record = count_flops(model, protocol=protocol)
            atomic_write_json(path.parent / "flops" / f"{model}-{protocol}.json", record)
            records.append(record)
    command = "matten-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    atomic_write_text(path, flops_report(records, command))
    console.print(f"wrote {escape(str(path))} and {escape(str(path.parent / 'flops'))}/")
