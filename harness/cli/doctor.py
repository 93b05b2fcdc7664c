"""`matten-bench doctor`: what this machine can do, each line with the command that fixes it."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
from dataclasses import dataclass

from rich.markup import escape
from rich.table import Table

from harness import paths
from harness.cli.app import app
from harness.console import console


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def check_torch() -> Check:
    import torch

    if torch.cuda.is_available():
        dev = f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}, CUDA {torch.version.cuda}"
    else:
        dev = f"CPU only, {torch.get_num_threads()} threads"
    return Check("torch", True, f"{torch.__version__} · {dev}", "MATTEN_BENCH_TORCH='torch==X' nox -s ... (GPU build)")


def check_scan_backend() -> Check:
    """mamba-ssm's CUDA kernel if it imports and a GPU is present, else our PyTorch scan."""
    import torch

    try:
        importlib.import_module("mamba_ssm.ops.selective_scan_interface")
        kernel_error = None
    except Exception as e:  # an ImportError, or an OSError from a missing compiled extension
        kernel_error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    fix = 'pip install -e ".[cuda]"  (GPU machines; or a prebuilt mamba-ssm wheel)'
    if kernel_error is None and torch.cuda.is_available():
        return Check("selective scan", True, f"cuda kernel (mamba-ssm {_version('mamba-ssm')})", "-")
    if kernel_error is None:
        return Check("selective scan", True, "torch (mamba-ssm imports, but no GPU: CPU uses the PyTorch scan)", "-")
    return Check("selective scan", True, f"torch (PyTorch scan; mamba-ssm: {kernel_error})", fix)


def check_module(name: str, dist: str, fix: str) -> Check:
    try:
        importlib.import_module(name)
    except Exception as e:
        return Check(dist, False, f"not importable: {type(e).__name__}", fix)
    return Check(dist, True, _version(dist) or "installed", "-")


def check_i3d() -> Check:
    path = paths.i3d_weights_path()
    if path.exists():
        return Check("I3D weights", True, f"cached at {path}", "-")
    return Check("I3D weights", False, f"not cached ({path})", "matten-bench i3d fetch")


def check_vae() -> Check:
    vae = paths.vae_dir()
    fix = "download Stable Diffusion v1-4's vae/ folder, then pass --vae sd-v1-4:PATH (or set MATTEN_BENCH_VAE)"
    if vae is None:
        return Check("SD v1-4 VAE", False, "not set (MATTEN_BENCH_VAE); pixel space (--vae identity) works", fix)
    if (vae / "config.json").exists():
        return Check("SD v1-4 VAE", True, f"found at {vae}", "-")
    return Check("SD v1-4 VAE", False, f"{vae} has no config.json (expected a diffusers vae/ folder)", fix)


def run_checks() -> list[Check]:
    return [
        check_torch(),
        check_scan_backend(),
        check_module("decord", "decord", "pip install decord"),
        check_module("av", "av", "pip install av"),
        check_module("fvcore", "fvcore", "pip install fvcore"),
        check_module("diffusers", "diffusers", "pip install diffusers"),
        check_i3d(),
        check_vae(),
    ]


@app.command()
def doctor() -> None:
    """One table of what this machine can do, with the command that fixes each missing piece."""
    table = Table(title="matten-bench doctor")
    for col in ("check", "ok", "detail", "fix"):
        table.add_column(col, overflow="fold")
    for c in run_checks():
        ok = "[green]yes[/green]" if c.ok else "[yellow]no[/yellow]"
        table.add_row(escape(c.name), ok, escape(c.detail), escape(c.fix))
    console.print(table)
    env = os.environ.get("MATTEN_BENCH_CACHE", "")
    console.print(f"cache directory: {escape(str(paths.cache_dir()))}  (MATTEN_BENCH_CACHE={escape(repr(env))})")
