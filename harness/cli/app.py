"""The Typer applications that every command module registers on."""

import typer

app = typer.Typer(
    name="matten-bench",
    help="Reproducibility harness for Matten (arXiv 2405.03025): prepare, train, sample, FVD, FLOPs, tables.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks (speed and memory, measured side by side).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
