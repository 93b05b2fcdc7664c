"""Which torch device a command runs on: one rule for every stage."""

from __future__ import annotations

from harness.errors import UserError


def resolve_device(spec: str | None) -> str:
    """``auto`` (or None) -> ``cuda`` when torch sees a GPU, else ``cpu``; a CUDA device asked for on a machine
    without one is a UserError (one line, exit code 2), never a torch traceback later on."""
    import torch

    if spec in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {spec} but torch sees no GPU (matten-bench doctor)")
    return spec
