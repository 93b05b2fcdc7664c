"""`matten-bench flops`: FLOPs and parameters of a model: fvcore per clip, or the paper's thop procedure."""

from __future__ import annotations

import json

import typer

from harness.cli.app import app
from harness.console import console


@app.command()
def flops(
    model: str = typer.Option("matten-xl", "--model", help="matten-{tiny,s,b,l,xl} or latte-{...} (patch 2)."),
    variant: int = typer.Option(3, "--variant", help="Matten variant 1-4 (ignored for Latte)."),
    protocol: str = typer.Option("fvcore", "--protocol", help="fvcore (per-clip FMA) or paper (thop, batch 3)."),
    batch: int | None = typer.Option(None, "--batch", help="Clips per forward; default 1 (fvcore) or 3 (paper)."),
    frames: int = typer.Option(16, "--frames", help="Frames per clip."),
    size: int = typer.Option(256, "--size", help="Pixel size; latents are size/8 (SD VAE), 256 -> 32x32x4."),
    as_json: bool = typer.Option(False, "--json", help="Print the record as JSON on stdout."),
) -> None:
    """Count FLOPs on the meta device (no weights in memory): fvcore with attention/scan handles, or thop."""
    from harness.flops import count_flops

    record = count_flops(model, protocol=protocol, variant=variant, batch=batch, frames=frames, size=size)
    if as_json:
        print(json.dumps(record, indent=2, sort_keys=True))
        return
    print_record(record)


def print_record(record: dict) -> None:
    from rich.table import Table

    from harness.flops import breakdown_rows

    b, f, s, lat = record["batch"], record["frames"], record["pixel_size"], record["latent_size"]
    name = record["model"] + (f" (variant {record['variant']})" if record["model"].startswith("matten") else "")
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
