"""Atomic file writes and fingerprints: nothing half-written survives a killed job."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def atomic_write_with(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a temporary file in the same folder, fsync it, then rename it over ``path``:
    a reader (or a job killed half-way) sees the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """``data`` to ``path`` atomically (:func:`atomic_write_with`)."""
    atomic_write_with(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json_object(path: str | Path, fix: str) -> dict[str, Any]:
    """The JSON object in ``path``. Raises UserError (ending in ``fix``, what the user should do) when the file
    cannot be read, is not JSON (a copy cut short) or holds something other than an object."""
    from harness.errors import UserError

    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path} cannot be read as JSON ({type(e).__name__}); {fix}") from e
    if not isinstance(obj, dict):
        raise UserError(f"{path} holds JSON but not an object; {fix}")
    return obj


def atomic_save_torch(path: str | Path, obj: Any) -> None:
    """``torch.save`` streamed into a temporary file, fsync and rename (checkpoints; no second copy in memory)."""
    import torch

    atomic_write_with(path, lambda f: torch.save(obj, f))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
