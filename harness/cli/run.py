"""`matten-bench run`: every stage a table needs, then the tables and REPORT.md."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from harness.cli.app import app


@app.command("run")
def run_command(
    table: list[str] = typer.Option(["all"], "--table", help="sota|variants|conditioning|scaling|flops|params|all"),
    scale: str = typer.Option("smoke", "--scale", help="smoke (CPU, minutes) | mini (one GPU) | paper (cluster)"),
    data: list[str] = typer.Option([], "--data", help="DATASET=DIR for real datasets, e.g. ucf101=/data/UCF-101"),
    vae: str = typer.Option(None, "--vae", help="identity (pixel space) or sd-v1-4:PATH (a diffusers vae/ folder)"),
    run_dir: Path = typer.Option(None, "--run-dir", help="where stages write (default runs/<scale>)"),
    results_dir: Path = typer.Option(None, "--results-dir", help="where the report goes (default results/<scale>)"),
    yes: bool = typer.Option(False, "--yes", help="start a paper-scale run after its compute estimate"),
    report_only: bool = typer.Option(False, "--report-only", help="run no stage: write the report from the records "
                                     "already in --run-dir (e.g. a run copied back from a GPU machine)"),
    jobs: int = typer.Option(None, "--jobs", help="experiments trained and sampled at once, each in its own process "
                             "(default: the scale's; the computation does not depend on it)"),
    mps: bool = typer.Option(None, "--mps/--no-mps", help="run the jobs under a private CUDA MPS daemon, so that "
                             "their kernels share the GPU instead of taking turns (harness.mps; default: the "
                             "scale's, on for mini)"),
) -> None:
    """Run (or reuse, via the run ledger) every stage the tables need, then write results/<scale>/REPORT.md."""
    from harness.console import console
    from harness.run import parse_data, run

    report = run(table, scale, run_dir=run_dir, results_dir=results_dir, data=parse_data(data), vae=vae, yes=yes,
                 report_only=report_only, jobs=jobs, mps=mps)
    console.print(f"report: {escape(str(report))}")


@app.command("compare")
def compare_command(
    committed: Path = typer.Argument(..., help="a report folder (e.g. results/smoke)"),
    new: Path = typer.Argument(..., help="the report folder of a new run (e.g. runs/smoke-report)"),
    strict: bool = typer.Option(False, "--strict", help="exit 1 when a number differs"),
) -> None:
    """Every number in two reports' records side by side: "reproduced: N of N numbers identical" or what differs."""
    from harness.compare import compare_reports
    from harness.console import console

    same, total, diffs = compare_reports(committed, new)
    where = f"{escape(str(new))} against {escape(str(committed))}"
    console.print(f"reproduced: {same} of {total} numbers identical ({where})")
    for line in diffs:
        console.print(f"  differs: {escape(line)}", soft_wrap=True)
    from harness.compare import detector_files

    was, now = detector_files(committed), detector_files(new)
    if was != now:  # a string, not a number of the measurement, but a reader comparing FVDs must know
        console.print(f"  note: the detector files differ (sha256 {', '.join(sorted(x[:12] for x in was)) or '-'} "
                      f"-> {', '.join(sorted(x[:12] for x in now)) or '-'}): the same pinned checkpoint converted "
                      "to other bytes, or other weights; the numbers above say which", soft_wrap=True)
    if diffs and strict:
        raise typer.Exit(1)
