"""The Typer applications that every command module registers on, and the benchmarks' shared record options."""

from pathlib import Path

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

# every `bench` command writes one JSON record (harness.bench.record): these two options, once
RECORD_OPTION = typer.Option(True, "--record/--no-record", help="write the JSON record (harness.bench.record)")
RECORD_DIR_OPTION = typer.Option(Path("results/bench"), help="where the record goes (`bench report` reads it)")


def record_bench(benchmark: str, device: str, options: dict, rows: list[dict], record: bool, record_dir: Path,
                 **kw) -> None:
    """With ``record``: the run's JSON record (harness.bench.record.write_record), its path on the console."""
    if record:
        from rich.markup import escape

        from harness.bench.record import write_record
        from harness.console import console

        path = write_record(benchmark, device, options, rows, record_dir=record_dir, **kw)
        console.print(f"record: {escape(str(path))}")
