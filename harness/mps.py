"""A private CUDA Multi-Process Service (MPS) daemon for the jobs of one `run --mps`.

Processes that share a GPU without MPS take turns on it: one process's kernels never run beside another's. With
MPS their kernels run side by side. For the mini scale's eight trainings on one H200 (results/mini/README.md, a
65-s probe) that took variant 2, the run's slowest model, from 23 to 52 samples/s, v1 from 48 to 67 and Matten-B
from 63 to 102, while Latte-S, the fastest, went from 259 to 152.

:func:`mps_daemon` starts ``nvidia-cuda-mps-control -d`` (it comes with the NVIDIA driver) with its pipe and log
folders in a fresh temporary folder, and points ``CUDA_MPS_PIPE_DIRECTORY`` there for the processes started
inside the ``with`` block: only they use this daemon; other CUDA programs on the machine, and this process if it
already made a CUDA context, are not affected. On leaving, it sends the daemon ``quit`` (it exits once its clients
have) and puts the environment back. The commands and variables are NVIDIA's (the MPS documentation, "Starting
and stopping MPS on Linux").
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.errors import UserError

CONTROL = "nvidia-cuda-mps-control"
VARIABLES = ("CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY")


@contextmanager
def mps_daemon(wait_s: float = 10.0) -> Iterator[Path]:
    """Run the block with a private MPS daemon up; yields its pipe folder (also in ``$CUDA_MPS_PIPE_DIRECTORY``).

    Raises UserError (one line) when the control program is not on the PATH or the daemon does not come up
    within ``wait_s`` seconds (its log folder is named)."""
    exe = shutil.which(CONTROL)
    if exe is None:
        raise UserError(f"--mps: {CONTROL} is not on the PATH (it comes with the NVIDIA driver); run without --mps")
    # a short path: the pipe folder holds Unix sockets, whose paths are limited to about 100 characters
    root = Path(tempfile.mkdtemp(prefix="mb-mps-"))
    pipe, log = root / "pipe", root / "log"
    pipe.mkdir()
    log.mkdir()
    env = {**os.environ, "CUDA_MPS_PIPE_DIRECTORY": str(pipe), "CUDA_MPS_LOG_DIRECTORY": str(log)}
    started = subprocess.run([exe, "-d"], env=env, capture_output=True, text=True)
    deadline = time.monotonic() + wait_s
    while started.returncode == 0 and not (pipe / "control").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if started.returncode != 0 or not (pipe / "control").exists():
        reason = (started.stderr or started.stdout).strip().splitlines()[-1:] or ["no control pipe"]
        raise UserError(f"--mps: {CONTROL} -d did not start a daemon ({reason[0]}; its log: {log}); run without "
                        "--mps")
    before = {k: os.environ.get(k) for k in VARIABLES}
    os.environ.update({k: env[k] for k in VARIABLES})
    try:
        yield pipe
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        subprocess.run([exe], input="quit\n", env=env, capture_output=True, text=True)
        shutil.rmtree(root, ignore_errors=True)
