"""`matten-bench prepare` and `matten-bench bench data`: thin layers over harness.data."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from harness.cli.app import RECORD_DIR_OPTION, RECORD_OPTION, app, bench_app, record_bench
from harness.console import console
from harness.errors import UserError


def parse_frames(text: str) -> int | tuple[int, int]:
    """``"48"`` → 48; ``"125-250"`` → (125, 250)."""
    try:
        if "-" in text:
            lo, hi = text.split("-", 1)
            return int(lo), int(hi)
        return int(text)
    except ValueError:
        raise UserError(f"--frames takes N or LO-HI (e.g. 48 or 125-250); got {text!r}") from None


def summary_tables(df, info: dict, max_listed: int = 20) -> list[Table]:
    """Counts per split and status, the skip reasons, the skipped videos (up to ``max_listed``), and the other
    files under the source (not videos, other splits, links not followed) by reason, the unread ones listed."""
    counts = Table(title=f"{info['dataset']}: {len(df)} videos, split {info['split']!r}"
                   + (f" (official list {info['split_list']})" if info.get("split_list") else ""))
    for col in ("split", "ok", "skipped", "frames (ok, median)", "size (ok, median)"):
        counts.add_column(col, justify="right" if col != "split" else "left")
    for split, part in df.groupby("split", sort=True):
        ok = part[part["status"] == "ok"]
        frames = f"{int(ok['frames'].median())}" if len(ok) else "-"
        size = f"{int(ok['width'].median())}x{int(ok['height'].median())}" if len(ok) else "-"
        counts.add_row(str(split), str(len(ok)), str(len(part) - len(ok)), frames, size)
    tables = [counts]
    skipped = df[df["status"] == "skipped"]
    if len(skipped):
        kinds = skipped["reason"].str.split(":").str[0].value_counts().sort_index()
        reasons = Table(title="skipped, by reason")
        reasons.add_column("reason")
        reasons.add_column("videos", justify="right")
        for reason, n in kinds.items():
            reasons.add_row(escape(str(reason)), str(n))
        shown = min(len(skipped), max_listed)
        listed = Table(title=f"skipped videos ({shown} of {len(skipped)} listed; all in the manifest)")
        listed.add_column("path", overflow="fold")
        listed.add_column("reason", overflow="fold")
        for row in skipped.head(max_listed).itertuples():
            listed.add_row(escape(row.path), escape(row.reason))
        tables += [reasons, listed]
    other = info.get("other_files", [])
    if other:
        kinds: dict[str, int] = {}
        for item in other:
            kind = item["reason"].split(":")[0]
            kinds[kind] = kinds.get(kind, 0) + 1
        by_kind = Table(title=f"other files under the source, not in the manifest ({len(other)}; all in dataset.json)")
        by_kind.add_column("what became of them")
        by_kind.add_column("files", justify="right")
        for kind in sorted(kinds):
            by_kind.add_row(escape(kind), str(kinds[kind]))
        unread = [item for item in other if not item["reason"].startswith("read:")]
        tables.append(by_kind)
        if unread:
            shown = min(len(unread), max_listed)
            listed = Table(title=f"files not read ({shown} of {len(unread)} listed)")
            listed.add_column("path", overflow="fold")
            listed.add_column("reason", overflow="fold")
            for item in unread[:max_listed]:
                listed.add_row(escape(item["path"]), escape(item["reason"]))
            tables.append(listed)
    return tables


@app.command()
def prepare(
    dataset: str = typer.Argument(..., help="ucf101 | ffs | sky | taichi | folder (any folder of videos) | synthetic"),
    out: Path = typer.Option(..., "--out", help="folder for manifest.parquet and dataset.json (and synthetic videos)"),
    source: Path | None = typer.Option(None, "--source", help="the dataset's local copy (not for synthetic)"),
    split: str = typer.Option("all", help="train | test | all (Latte trains on all UCF101 videos)"),
    split_list: int = typer.Option(1, help="UCF101's official split list: 1, 2 or 3"),
    num_frames: int = typer.Option(16, help="clip length; shorter videos than num_frames x frame_interval are skipped"),
    frame_interval: int = typer.Option(3, help="frame interval of a clip"),
    sha256: bool = typer.Option(False, "--sha256", help="also hash every file's content (slow on big datasets)"),
    check: str = typer.Option("quick", help="quick: header, first and last frame of each video | full: decode every "
                              "frame of every video and every image (what the loader will read)"),
    classes: int = typer.Option(4, help="synthetic: number of classes"),
    videos_per_class: int = typer.Option(6, help="synthetic: videos per class"),
    frames: str = typer.Option("48", help="synthetic: frames per video, N or LO-HI"),
    width: int = typer.Option(64, help="synthetic: frame width"),
    height: int = typer.Option(64, help="synthetic: frame height"),
    fps: int = typer.Option(25, help="synthetic: frames per second"),
    seed: int = typer.Option(0, help="synthetic: seed (same seed, same videos)"),
    container: str = typer.Option("mp4", help="synthetic: mp4 (libx264) or avi (mpeg4)"),
) -> None:
    """Index and check a local dataset copy (or write the synthetic one); write its manifest and print a summary."""
    from harness.data.manifest import load_info
    from harness.data.prepare import prepare_dataset

    options = None
    if dataset == "synthetic":
        if source is not None:
            raise UserError("prepare synthetic writes its own videos into OUT/source: leave out --source")
        options = dict(num_classes=classes, videos_per_class=videos_per_class, frames=parse_frames(frames),
                       width=width, height=height, fps=fps, seed=seed, container=container)
    elif source is None:
        raise UserError(f"prepare {dataset} needs --source DIR (the folder holding the dataset)")
    df = prepare_dataset(dataset, source, out, split=split, split_list=split_list, num_frames=num_frames,
                         frame_interval=frame_interval, sha256=sha256, check=check, synthetic_options=options)
    info = load_info(out)
    for table in summary_tables(df, info):
        console.print(table)
    console.print(f"check: {escape(info['check_text'])}")
    console.print(f"probed {df.attrs['probed']}, reused {df.attrs['reused']} from the previous manifest; "
                  f"wrote {escape(str(Path(out) / 'manifest.parquet'))}")


@bench_app.command("data")
def bench_data(
    videos: int = typer.Option(16, help="UCF101-like videos to generate (320x240, 25 fps, 5-10 s, mpeg4 .avi)"),
    clips: int = typer.Option(32, help="clips each loader reads per timed pass"),
    repeats: int = typer.Option(3, help="repeats; the table reports the median"),
    workers: int = typer.Option(2, help="DataLoader workers"),
    size: int = typer.Option(256, help="clip size (short side resize + center crop)"),
    workdir: Path | None = typer.Option(None, help="where to write the videos (default: a temporary folder)"),
    json_out: Path | None = typer.Option(None, "--json", help="also write every run's numbers here"),
    record: bool = RECORD_OPTION,
    record_dir: Path = RECORD_DIR_OPTION,
) -> None:
    """Clips/s of our loader (decord, only the needed frames) against decode-whole-video-then-slice (Latte's path)."""
    from harness.bench.data import run_data_bench, verdict

    # run_data_bench checks the counts (one-line error, exit code 2)
    console.print("with the defaults this takes about 3.5 minutes on 2 CPUs (results/benchmarks.md)")
    rows = run_data_bench(videos=videos, clips=clips, repeats=repeats, workers=workers, size=size, workdir=workdir)
    table = Table(title="data loading (medians of repeats; speed-ups: medians of paired repeats)")
    for col in ("loader", "output", "clips/s, wall", "speed-up, wall", "CPU ms/clip", "speed-up, CPU", "same pixels"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["loader"], r["output"], f"{r['median']:.2f}", f"{r['speedup']:.2f}x", f"{r['cpu_ms']:.1f}",
                      f"{r['cpu_speedup']:.2f}x", "-" if r["same_pixels"] is None else str(r["same_pixels"]))
    console.print(table)
    for r in rows:
        wall = ", ".join(f"{x:.2f}" for x in r["runs"])
        ratios = ", ".join(f"{x:.2f}x" for x in r["speedups"])
        cpu = ", ".join(f"{x:.1f}" for x in r["cpu_runs"])
        console.print(f"  {r['loader']} / {r['output']}: clips/s {wall} (speed-ups {ratios}); CPU ms/clip {cpu}")
    cpus = len(os.sched_getaffinity(0))  # what taskset / a cgroup leaves this process, not the machine's count
    console.print(f"{videos} videos, {clips} clips a run, {repeats} repeats, {workers} workers, size {size}; "
                  f"{cpus} CPUs usable, load average {os.getloadavg()[0]:.2f} at the end; wall: DataLoader with "
                  f"{workers} workers (decode only: 1 process); CPU: 1 process, 1 thread")
    summary = verdict(rows)
    console.print(summary)
    if json_out is not None:
        import torch

        meta = {"options": dict(videos=videos, clips=clips, repeats=repeats, workers=workers, size=size),
                "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "cpus_usable": cpus,
                "torch": torch.__version__, "load_average_end": os.getloadavg()[0], "verdict": summary}
        Path(json_out).write_text(json.dumps({**meta, "rows": rows}, indent=1))
        console.print(f"wrote {escape(str(json_out))}")
    record_bench("data", "cpu", dict(videos=videos, clips=clips, repeats=repeats, workers=workers, size=size), rows,
                 record, record_dir, verdict=summary,
                 details={"cpus_usable": cpus, "load_average_end": os.getloadavg()[0]})
