"""Tiny datasets the data tests build for themselves (real video files and frame folders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from harness.data.synthetic import write_video


def gray_video(path: Path, frames: int, *, size: tuple[int, int] = (32, 24), step: int = 4, container: str = "mp4"):
    """A video whose frame t is uniformly grey at value ``step * t``: decoded means tell which frame was read."""
    w, h = size
    pixels = np.stack([np.full((h, w, 3), min(255, step * t), dtype=np.uint8) for t in range(frames)])
    write_video(path, pixels, fps=25, container=container)
    return path


def frame_folder(folder: Path, frames: int, *, size: tuple[int, int] = (20, 16), ext: str = "png") -> Path:
    """A frame folder ``img_1.ext, img_2.ext, ...`` (not zero-padded) whose frame t is grey at value t (exact)."""
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    for t in range(frames):
        Image.fromarray(np.full((h, w, 3), t, dtype=np.uint8)).save(folder / f"img_{t + 1}.{ext}")
    return folder


def ucf_layout(root: Path, videos: dict[str, list[int]], *, ext: str = "avi", test_groups: tuple[int, ...] = (1,)):
    """UCF101's layout by hand: ``videos`` maps class → frame counts (one video per group g01, g02, ...)."""
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    classes = sorted(videos)
    (lists / "classInd.txt").write_text("".join(f"{k + 1} {c}\n" for k, c in enumerate(classes)))
    train, test = [], []
    for k, c in enumerate(classes):
        for g, n in enumerate(videos[c], 1):
            name = f"v_{c}_g{g:02d}_c01.{ext}"
            gray_video(root / "UCF-101" / c / name, n, container="mp4" if ext == "mp4" else "avi")
            # the official lists name .avi files, whatever the copy on disk holds
            rel = f"{c}/v_{c}_g{g:02d}_c01.avi"
            (test if g in test_groups else train).append(rel if g in test_groups else f"{rel} {k + 1}")
    for s in (1, 2, 3):
        (lists / f"trainlist0{s}.txt").write_text("".join(f"{line}\n" for line in train))
        (lists / f"testlist0{s}.txt").write_text("".join(f"{line}\n" for line in test))
    return root
