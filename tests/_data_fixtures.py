"""Tiny datasets the data tests build for themselves (real video files and frame folders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from harness.video import write_video


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


def set_rotation(path: Path, degrees: float) -> Path:
    """Tag an mp4 as a phone does ("rotate 90"): write the display matrix of a ``degrees`` clockwise turn into
    its track header (tkhd), leaving the coded frames as they are."""
    import math
    import struct

    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    version = data[at + 4]
    # tkhd: version/flags, times and track id (v0: 4-byte fields, v1: 8-byte times), reserved, layer, group, volume
    offset = at + 4 + 4 + (8 + 8 + 4 + 4 + 8 if version == 1 else 4 * 5) + 8 + 2 + 2 + 2 + 2
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    fixed = [round(v * 65536) & 0xFFFFFFFF for v in (c, s, 0, -s, c, 0)]
    data[offset : offset + 36] = struct.pack(">9I", *fixed[:2], 0, *fixed[3:5], 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))
    return path


def damage_middle(path: Path, fraction: float = 0.15) -> Path:
    """Zero ``fraction`` of a file's bytes in its middle (the header and the last frames stay intact)."""
    data = bytearray(path.read_bytes())
    lo = int(len(data) * (0.5 - fraction / 2))
    hi = lo + int(len(data) * fraction)
    data[lo:hi] = bytes(hi - lo)
    path.write_bytes(bytes(data))
    return path


def marker_video(path: Path, frames: int, *, size: tuple[int, int] = (64, 32)) -> Path:
    """A dark video with a bright 8x8 square in its top-left corner (where it ends up shows how frames are turned)."""
    w, h = size
    pixels = np.full((frames, h, w, 3), 20, dtype=np.uint8)
    pixels[:, :8, :8] = 235
    write_video(path, pixels, fps=25)
    return path


def noise_video(path: Path, frames: int, *, size: tuple[int, int] = (96, 64), container: str = "mp4", seed: int = 0):
    """A video of random pixels (every decoder difference shows)."""
    w, h = size
    pixels = np.random.default_rng(seed).integers(0, 256, size=(frames, h, w, 3), dtype=np.uint8)
    write_video(path, pixels, fps=25, container=container)
    return path
