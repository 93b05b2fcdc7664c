"""Generated clips on disk: uint8 shards that `sample` writes and `fvd` reads.

A samples folder holds ``clips/clips-00000.npy``, ``clips-00001.npy``, ... each a uint8
array of shape (N, T, H, W, 3) (RGB, channels last, as FVD's detector wants), written
atomically so a finished shard is always whole. A single ``.npy`` file of that shape is
also accepted wherever a samples folder is.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from harness.errors import UserError
from harness.io import atomic_write_bytes


def shard_path(samples_dir: str | Path, index: int) -> Path:
    return Path(samples_dir) / "clips" / f"clips-{index:05d}.npy"


def write_shard(samples_dir: str | Path, index: int, clips: np.ndarray) -> Path:
    """Write one shard (N, T, H, W, 3) uint8 atomically and return its path."""
    if clips.dtype != np.uint8 or clips.ndim != 5 or clips.shape[-1] != 3:
        raise ValueError(f"a shard is uint8 (N, T, H, W, 3); got {clips.dtype} {tuple(clips.shape)}")
    buf = io.BytesIO()
    np.save(buf, clips, allow_pickle=False)
    path = shard_path(samples_dir, index)
    atomic_write_bytes(path, buf.getvalue())
    return path


def list_shards(samples: str | Path) -> list[Path]:
    """The shard files of a samples folder (or the one .npy file given), in order."""
    samples = Path(samples)
    if samples.is_file() and samples.suffix == ".npy":
        return [samples]
    if not samples.exists():
        raise UserError(f"samples not found: {samples}")
    shards = sorted((samples / "clips").glob("clips-*.npy")) if (samples / "clips").is_dir() else []
    if not shards:
        raise UserError(f"no clip shards in {samples} (expected {samples}/clips/clips-00000.npy, ...)")
    return shards


def iter_shards(samples: str | Path) -> Iterator[np.ndarray]:
    """Yield each shard as a uint8 array (N, T, H, W, 3), checking dtype and shape."""
    for path in list_shards(samples):
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as e:
            raise UserError(f"unreadable sample shard {path}: {e}") from e
        if arr.dtype != np.uint8 or arr.ndim != 5 or arr.shape[-1] != 3:
            raise UserError(
                f"sample shard {path} is {arr.dtype} {tuple(arr.shape)}; expected uint8 (N, T, H, W, 3) in 0..255"
            )
        yield arr
