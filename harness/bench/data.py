"""`matten-bench bench data`: clips per second of our loader against decode-the-whole-video-then-slice.

Latte's UCF101 dataset calls ``torchvision.io.read_video`` (which decodes every frame of the file
with PyAV and stacks them) and then picks 16 of them. torchvision has no CPU build here, so the
reference side decodes the whole video with PyAV the same way, then slices; everything else
(the windows, the resize and crop, the DataLoader) is shared, so the ratio measures decoding only.
Both loaders read the same clips (same seed), on the same files, in one process, alternating,
``repeats`` times; the table reports medians, and the speed-ups are medians of the paired repeats.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.data.clips import ClipDataset, clips_to_float
from harness.errors import UserError


class WholeVideoClipDataset(ClipDataset):
    """The reference: decode every frame of the video with PyAV (like torchvision.io.read_video), then slice."""

    def read_frames(self, i: int, indices: np.ndarray) -> tuple[np.ndarray, bool]:
        """uint8 (T, H, W, 3) frames ``indices``, and False (ClipDataset's "read by PyAV after decord failed")."""
        import av

        with av.open(str(self.source / self.paths[i])) as container:
            frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])  # (N, H, W, 3)
        return frames[indices], False


def cycled(ds: ClipDataset, clips: int) -> torch.utils.data.Subset:
    """``clips`` items of ``ds``, cycling over its videos."""
    return torch.utils.data.Subset(ds, [j % len(ds) for j in range(clips)])


def clips_per_second(ds: ClipDataset, clips: int, workers: int, batch_size: int = 4, convert: bool = False) -> float:
    """Clips/s reading ``clips`` clips (cycling over the videos) through a DataLoader.

    Timed: the second pass of persistent workers, so worker start-up is left out (as in a long epoch).
    ``convert``: the consumer turns each uint8 batch into float32 clips (the trainer's path on a CPU).
    """
    loader = torch.utils.data.DataLoader(cycled(ds, clips), batch_size=batch_size, num_workers=workers, shuffle=False,
                                         persistent_workers=workers > 0)
    for _ in loader:  # warm-up pass: start the workers
        pass
    t0 = time.perf_counter()
    n = sum((clips_to_float(batch["video"]) if convert else batch["video"]).shape[0] for batch in loader)
    return n / (time.perf_counter() - t0)


def read_clips(
    ds: ClipDataset, clips: int, *, decode_only: bool, workers: int = 0, batch_size: int = 4, convert: bool = False
) -> None:
    """Read ``clips`` clips (cycling over the videos): through a DataLoader, or ``read_frames`` alone."""
    if decode_only:
        for i in cycled(ds, clips).indices:
            ds.read_frames(i, ds.sample_plan(i)[0])
        return
    for batch in torch.utils.data.DataLoader(cycled(ds, clips), batch_size=batch_size, num_workers=workers):
        if convert:
            clips_to_float(batch["video"])


def cpu_ms_per_clip(ds: ClipDataset, clips: int, *, decode_only: bool, convert: bool = False) -> float:
    """CPU milliseconds a clip costs in this process on one torch thread (decord also runs one thread).

    CPU time, unlike wall time, hardly changes when other jobs share the machine's cores.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.process_time()
        read_clips(ds, clips, decode_only=decode_only, convert=convert)
        return (time.process_time() - t0) / clips * 1000
    finally:
        torch.set_num_threads(threads)


def make_ucf_like(workdir: Path, videos: int, frames: tuple[int, int] = (125, 250)) -> Path:
    """UCF101-like files (320x240, 25 fps, 5-10 s, mpeg4 in .avi, keyframe every 12 frames), prepared as ucf101."""
    from harness.data.prepare import prepare_dataset
    from harness.data.synthetic import generate_synthetic

    classes = min(4, videos)
    source = generate_synthetic(workdir, num_classes=classes, videos_per_class=-(-videos // classes),
                                frames=frames, width=320, height=240, fps=25, seed=0, container="avi")
    prepare_dataset("ucf101", source, workdir / "prepared", progress=False)
    return workdir / "prepared"


LOADERS = ("decord get_batch (ours)", "decode whole video, then slice")
# What comes out of the loader. The trainer's path is the last: its workers send uint8 clips and the
# consumer makes the float32 frames (on the GPU when there is one; here on the CPU, and timed).
MODES = ("decode only", "float32 clips", "uint8 clips", "uint8 clips, float32 on the consumer")
# The target (>= 5x, wall, 2 cores, DataLoader workers) is judged on what the trainer's DataLoader
# delivers: uint8 clips (harness/train.py builds ClipDataset(uint8=True); the float32 frames are made on the GPU).
TARGET, TARGET_MODE = 5.0, "uint8 clips"


def verdict(rows: list[dict[str, Any]]) -> str:
    """One line: the target against our loader's paired wall speed-ups in TARGET_MODE."""
    row = next(r for r in rows if r["loader"] == LOADERS[0] and r["output"] == TARGET_MODE)
    met = "met" if row["speedup"] >= TARGET else "not met"
    return (f"target >= {TARGET:g}x (wall, {TARGET_MODE}, the trainer's loader): {met}: median {row['speedup']:.2f}x, "
            f"repeats {min(row['speedups']):.2f}x to {max(row['speedups']):.2f}x")


def run_data_bench(
    *, videos: int = 16, clips: int = 32, repeats: int = 3, workers: int = 2, size: int = 256,
    workdir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Both loaders, ``repeats`` times alternating, in the four MODES.

    Each row: wall-clock clips/s (DataLoader with ``workers``; decode only: this process) and CPU ms per
    clip (this process, one thread), each run's value and the medians. Speed-ups are paired: repeat k of
    ours against repeat k of the reference, which ran right after it, then the median over repeats; a
    slow spell of a shared machine then hits both sides of a pair instead of one side's median.
    """
    for name, value, least in (("videos", videos, 1), ("clips", clips, 1), ("repeats", repeats, 1),
                               ("workers", workers, 0), ("size", size, 1)):
        if value < least:
            raise UserError(f"--{name} must be at least {least}; got {value}")
    from harness.console import progress

    with tempfile.TemporaryDirectory(prefix="matten-bench-data-") as tmp, progress() as bar:
        prepared = make_ucf_like(Path(workdir) if workdir else Path(tmp), videos)
        rows = []
        task = bar.add_task("bench data (repeats x loaders x outputs)", total=len(MODES) * repeats * 2)
        for mode in MODES:
            decode_only, convert = mode == "decode only", mode == MODES[3]
            kw = dict(size=size, seed=0, uint8=mode in ("uint8 clips", MODES[3]))
            pair = (ClipDataset(prepared, **kw), WholeVideoClipDataset(prepared, **kw))
            same = None if decode_only else all(
                torch.equal(pair[0][i]["video"], pair[1][i]["video"]) for i in range(len(pair[0])))
            wall: list[list[float]] = [[], []]
            cpu: list[list[float]] = [[], []]
            for _ in range(repeats):
                for k, ds in enumerate(pair):
                    if decode_only:
                        t0 = time.perf_counter()
                        read_clips(ds, clips, decode_only=True)
                        wall[k].append(clips / (time.perf_counter() - t0))
                    else:
                        wall[k].append(clips_per_second(ds, clips, workers, convert=convert))
                    cpu[k].append(cpu_ms_per_clip(ds, clips, decode_only=decode_only, convert=convert))
                    bar.advance(task)
            for k, name in enumerate(LOADERS):
                wall_ratios = [a / b for a, b in zip(wall[k], wall[1], strict=True)]
                cpu_ratios = [b / a for a, b in zip(cpu[k], cpu[1], strict=True)]
                rows.append({
                    "loader": name,
                    "output": mode,
                    "runs": wall[k], "median": statistics.median(wall[k]),
                    "speedups": wall_ratios, "speedup": statistics.median(wall_ratios),
                    "cpu_runs": cpu[k], "cpu_ms": statistics.median(cpu[k]),
                    "cpu_speedup": statistics.median(cpu_ratios),
                    "same_pixels": same,
                })
    return rows
