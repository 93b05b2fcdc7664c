"""A private CUDA Multi-Process Service (MPS) daemon for the jobs of one `run` (``--mps``; the mini scale's default).

Processes that share a GPU without MPS take turns on it: one process's kernels never run beside another's. With
MPS their kernels run side by side. For the mini scale's eight trainings on one H200 (results/mini/README.md) that
took variant 2, the run's slowest model, from 35 to 53 samples/s and Latte-S, the fastest, from 294 to 153; the
whole run took 19.5 min under it, against 24.5 min without it and before two other changes (results/mini/README.md).
The mini preset runs under it by default (``Preset.mps``).

:func:`mps_daemon` starts ``nvidia-cuda-mps-control -d`` (it comes with the NVIDIA driver) with its pipe folder in a
fresh temporary folder (it holds Unix sockets, whose paths must be short) and its log folder where the caller says,
and points ``CUDA_MPS_PIPE_DIRECTORY`` there for the processes started inside the ``with`` block: only they use this
daemon; other CUDA programs on the machine, and this process if it already made a CUDA context, are not affected. On
leaving, also on an error or an interrupt, it sends the daemon ``quit`` (it exits once its clients have) and puts
the environment back. The commands and variables are NVIDIA's (the MPS documentation, "Starting and stopping MPS on
Linux").

Limits: a client that cannot reach the daemon runs without MPS and says nothing (NVIDIA's documentation), so a
record's ``"mps": true`` (harness.machine.mps_running) says the daemon's pipe was there, not that the job used it;
the daemon's log says which clients connected. A ``run`` killed outright (SIGKILL) leaves the daemon running: the
pipe folder printed at the start stops it (``CUDA_MPS_PIPE_DIRECTORY=<pipe> nvidia-cuda-mps-control``, then
``quit``).
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

from harness.console import console
from harness.errors import UserError

CONTROL = "nvidia-cuda-mps-control"
VARIABLES = ("CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY")
QUIT_TIMEOUT_S = 60.0  # the daemon quits once its clients have ended; the jobs have by then


def control_program(prefix: str = "--mps: ") -> str:
    """The path of ``nvidia-cuda-mps-control``; UserError (one line, starting with ``prefix``) when it is not on
    the PATH."""
    exe = shutil.which(CONTROL)
    if exe is None:
        raise UserError(f"{prefix}{CONTROL} is not on the PATH (it comes with the NVIDIA driver); run with --no-mps")
    return exe


@contextmanager
def mps_daemon(log_dir: str | Path, wait_s: float = 10.0) -> Iterator[Path]:
    """Run the block with a private MPS daemon up, its log in ``log_dir``; yields its pipe folder (also in
    ``$CUDA_MPS_PIPE_DIRECTORY``).

    Raises UserError (one line) when the control program is not on the PATH or the daemon does not come up
    within ``wait_s`` seconds (its log folder is named)."""
    exe = control_program()
    pipe, log = Path(tempfile.mkdtemp(prefix="mb-mps-")), Path(log_dir)
    log.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CUDA_MPS_PIPE_DIRECTORY": str(pipe), "CUDA_MPS_LOG_DIRECTORY": str(log)}
    started = subprocess.run([exe, "-d"], env=env, capture_output=True, text=True)
    deadline = time.monotonic() + wait_s
    while started.returncode == 0 and not (pipe / "control").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if started.returncode != 0 or not (pipe / "control").exists():
        if started.returncode == 0:  # a daemon that comes up late must not stay
            _quit(exe, env, pipe)
        reason = (started.stderr or started.stdout).strip().splitlines()[-1:] or ["no control pipe"]
        raise UserError(f"--mps: {CONTROL} -d did not start a daemon ({reason[0]}; its log: {log}); run with "
                        "--no-mps")
    console.print(f"mps     a private MPS daemon for the jobs (pipe {pipe}, log {log})", highlight=False,
                  soft_wrap=True)
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
        _quit(exe, env, pipe)


def _quit(exe: str, env: dict[str, str], pipe: Path) -> None:
    """Send the daemon ``quit``; remove its pipe folder once it has gone, else say how to stop it."""
    try:
        done = subprocess.run([exe], input="quit\n", env=env, capture_output=True, text=True,
                              timeout=QUIT_TIMEOUT_S).returncode == 0
    except subprocess.TimeoutExpired:
        done = False
    if done:
        shutil.rmtree(pipe, ignore_errors=True)
    else:
        console.print(f"[yellow]warning[/yellow] the MPS daemon did not confirm 'quit' within {QUIT_TIMEOUT_S:.0f} s; "
                      f"stop it with: CUDA_MPS_PIPE_DIRECTORY={pipe} {CONTROL}, then quit", highlight=False,
                      soft_wrap=True)
