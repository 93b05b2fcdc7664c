"""One job per output folder (or cache entry): an exclusive lock a second job meets with one line naming the holder.

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
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from harness.errors import UserError

LOCK_NAME = ".matten-bench.lock"

# The lock descriptors this process holds. A forked child (a DataLoader worker) closes its copies at once: a
# flock belongs to the open file, so a worker that outlives its killed parent for a few seconds would otherwise
# keep the folder locked against the rerun. Closing a copy leaves the parent's lock in place.
_HELD: set[int] = set()


def _close_in_child() -> None:
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


class LockHeld(UserError):
    """Another live job holds the folder or entry (the message names it)."""


@contextlib.contextmanager
def folder_lock(path: str | Path, what: str) -> Iterator[Path]:
    """Hold ``path`` for this job (``what``: the stage, for the other job's message) until the block ends.

    Raises UserError when ``path`` cannot be created or written, or when another live job holds it.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} is a file, not a folder (choose a folder for the output)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        # a new file, as the job's atomic writes will make: the lock file of an earlier job may still open
        # for writing in a folder that no longer takes new files (permissions changed, immutable)
        fd, probe = tempfile.mkstemp(prefix=".matten-bench-write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"cannot write to {path}: {e.strerror or e} (choose a writable folder)") from e
    with _hold(path / LOCK_NAME, what, str(path)):
        yield path


@contextlib.contextmanager
def entry_lock(entry: str | Path, what: str) -> Iterator[Path]:
    """Hold one file being written (a cache entry; its lock is ``<entry>.lock`` beside it) until the block ends.
    Raises UserError as :func:`folder_lock` does."""
    entry = Path(entry)
    with _hold(entry.with_name(entry.name + ".lock"), what, str(entry)):
        yield entry


@contextlib.contextmanager
def _hold(lock_file: Path, what: str, label: str) -> Iterator[None]:
    import fcntl  # POSIX; matten-bench runs on Linux (and macOS)

    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)  # not kept by exec'ed children
    except OSError as e:
        raise UserError(f"cannot write to {lock_file.parent}: {e.strerror or e} (choose a writable folder)") from e
    _HELD.add(fd)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(f"{label} is in use by another job ({_holder(fd)}); wait for it to end or use another "
                           "folder") from None
        holder = {"what": what, "pid": os.getpid(), "host": socket.gethostname(),
                  "command": " ".join(sys.argv)[:300], "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield
    finally:
        _HELD.discard(fd)
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
