"""One job per output folder: an exclusive lock that a second job meets with one line naming the holder.

``with folder_lock(path, "train"):`` creates ``path`` (an unwritable folder is a one-line error here,
before any work), then takes an exclusive ``flock`` on ``path/.matten-bench.lock`` and writes who holds it
(pid, host, command, start time) into that file. The kernel drops a ``flock`` when its process dies, so a
lock left by a killed job never blocks a rerun: the file stays, the lock does not. Locks are advisory
(they bind matten-bench jobs) and per host on a local file system; NFSv4 carries them across hosts.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from harness.errors import UserError

LOCK_NAME = ".matten-bench.lock"


@contextlib.contextmanager
def folder_lock(path: str | Path, what: str) -> Iterator[Path]:
    """Hold ``path`` for this job (``what``: the stage, for the other job's message) until the block ends.

    Raises UserError when ``path`` cannot be created or written, or when another live job holds it.
    """
    import fcntl  # POSIX; matten-bench runs on Linux (and macOS)

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise UserError(f"cannot write to {path}: {e.strerror or e} (choose a writable folder)") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{path} is in use by another job ({_holder(fd)}); wait for it to end or use another "
                            "folder") from None  # fmt: skip
        holder = {"what": what, "pid": os.getpid(), "host": socket.gethostname(),
                  "command": " ".join(sys.argv)[:300], "since": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the flock


def _holder(fd: int) -> str:
    """Who holds the lock, from what it wrote into the file (best effort: it may be mid-write)."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "holder unknown"
    return (f"{info.get('what', '?')}, pid {info.get('pid', '?')} on {info.get('host', '?')} since "
            f"{info.get('since', '?')}: {info.get('command', '')}")
