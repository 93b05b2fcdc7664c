"""`matten-bench bench data`: clips per second of our loader against decode-the-whole-video-then-slice.

Latte's UCF101 dataset calls ``torchvision.io.read_video`` (which decodes every frame of the file
with PyAV and stacks them) and then picks 16 of them. torchvision has no CPU build here, so the
reference side decodes the whole video with PyAV the same way, then slices; everything else
(the windows, the resize and crop, the DataLoader) is shared, so the ratio measures decoding only.
Both loaders read the same clips (same seed), on the same files, in one process, alternating,
``repeats`` times; the table reports the median.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.data.clips import ClipDataset


class WholeVideoClipDataset(ClipDataset):
    """The reference: decode every frame of the video with PyAV (like torchvision.io.read_video), then slice."""

    def read_frames(self, i: int, indices: np.ndarray) -> np.ndarray:
        import av

        with av.open(str(self.source / self.paths[i])) as container:
            frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])  # (N, H, W, 3)
        return frames[indices]


def clips_per_second(ds: ClipDataset, clips: int, workers: int, batch_size: int = 4) -> float:
    """Clips/s reading ``clips`` clips (cycling over the videos) through a DataLoader.

    Timed: the second pass of persistent workers, so worker start-up is left out (as in a long epoch).
    """
    subset = torch.utils.data.Subset(ds, [j % len(ds) for j in range(clips)])
    loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, num_workers=workers, shuffle=False,
                                         persistent_workers=workers > 0)
    for _ in loader:  # warm-up pass: start the workers
        pass
    t0 = time.perf_counter()
    n = sum(batch["video"].shape[0] for batch in loader)
    return n / (time.perf_counter() - t0)


def frames_per_second_decode_only(ds: ClipDataset, clips: int) -> float:
    """Clips/s of ``read_frames`` alone (the decode, no resize, no DataLoader), in this process."""
    t0 = time.perf_counter()
    for j in range(clips):
        i = j % len(ds)
        ds.read_frames(i, ds.sample_plan(i)[0])
    return clips / (time.perf_counter() - t0)


def make_ucf_like(workdir: Path, videos: int) -> Path:
    """UCF101-like files (320x240, 25 fps, 5-10 s, mpeg4 in .avi, keyframe every 12 frames), prepared as ucf101."""
    from harness.data.prepare import prepare_dataset
    from harness.data.synthetic import generate_synthetic

    classes = min(4, videos)
    source = generate_synthetic(workdir, num_classes=classes, videos_per_class=-(-videos // classes),
                                frames=(125, 250), width=320, height=240, fps=25, seed=0, container="avi")
    prepare_dataset("ucf101", source, workdir / "prepared", progress=False)
    return workdir / "prepared"


def run_data_bench(
    *, videos: int = 16, clips: int = 32, repeats: int = 3, workers: int = 2, size: int = 256,
    workdir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Both loaders, ``repeats`` times alternating; rows with the runs, the median and the speed-up."""
    with tempfile.TemporaryDirectory(prefix="matten-bench-data-") as tmp:
        prepared = make_ucf_like(Path(workdir) if workdir else Path(tmp), videos)
        rows = []
        ours, whole = ClipDataset(prepared, seed=0), WholeVideoClipDataset(prepared, seed=0)
        runs_decode: list[list[float]] = [[], []]
        for _ in range(repeats):  # decoding alone: where the difference comes from
            runs_decode[0].append(frames_per_second_decode_only(ours, clips))
            runs_decode[1].append(frames_per_second_decode_only(whole, clips))
        ref = statistics.median(runs_decode[1])
        for name, r in zip(("decord get_batch (ours)", "decode whole video, then slice"), runs_decode, strict=True):
            rows.append({"loader": name, "output": "decode only, 1 process", "runs": r,
                         "median": statistics.median(r), "speedup": statistics.median(r) / ref, "same_pixels": None})
        for uint8 in (False, True):  # float32 [-1, 1] (T, C, H, W) for training; uint8 (T, H, W, 3) as eval_clips gives
            ours = ClipDataset(prepared, size=size, seed=0, uint8=uint8)
            whole = WholeVideoClipDataset(prepared, size=size, seed=0, uint8=uint8)
            same = all(torch.equal(ours[i]["video"], whole[i]["video"]) for i in range(len(ours)))
            runs: list[list[float]] = [[], []]
            for _ in range(repeats):
                runs[0].append(clips_per_second(ours, clips, workers))
                runs[1].append(clips_per_second(whole, clips, workers))
            ref = statistics.median(runs[1])
            output = f"{'uint8' if uint8 else 'float32'} clips, DataLoader"
            for name, r in zip(("decord get_batch (ours)", "decode whole video, then slice"), runs, strict=True):
                rows.append({"loader": name, "output": output, "runs": r, "median": statistics.median(r),
                             "speedup": statistics.median(r) / ref, "same_pixels": same})
    return rows
