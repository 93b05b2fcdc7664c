"""Where the harness keeps things outside the repository (weights, caches)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$MATTEN_BENCH_CACHE`` or ``~/.cache/matten-bench``; weights and real-statistics caches live here."""
    root = os.environ.get("MATTEN_BENCH_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "matten-bench"


def i3d_weights_path() -> Path:
    """The converted Kinetics-400 I3D state dict written by ``matten-bench i3d fetch``."""
    return cache_dir() / "i3d" / "i3d-kinetics-400.safetensors"


def vae_dir() -> Path | None:
    """A local SD v1-4 ``vae/`` folder (diffusers layout) named by ``$MATTEN_BENCH_VAE``, if set."""
    root = os.environ.get("MATTEN_BENCH_VAE")
    return Path(root).expanduser() if root else None
