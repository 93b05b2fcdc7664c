"""Several stage chains at once, each in a process of its own: how the mini scale fills one GPU.

A small model's eager training step is bound by the host launching kernels (at the mini shape Matten-S
keeps the H200 busy for a fraction of its 80 ms step), so one GPU trains several such models at once
about as fast as it trains one. :func:`run_jobs` runs independent tasks (here: one experiment's train and
sample stages, every evaluation point in turn) in up to ``jobs`` processes; each task's output goes to a
log file of its own, and the terminal shows one progress bar of tasks done.

Nothing changes in what a task computes: each stage is ledgered and keyed by its own inputs (data order,
noise and timesteps by position, harness.train), so ``jobs=4`` writes the same numbers as ``jobs=1``
(tests/test_run_smoke.py). A killed job loses what a killed stage loses; the next run resumes every task.
With ``jobs=1`` the tasks run one after the other in this process, their output on the terminal.

Processes are started with ``spawn`` (a fresh interpreter: CUDA cannot be used in a forked child);
a task is a module-level function and picklable arguments.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape

from harness.console import console, progress
from harness.errors import UserError


@dataclass(frozen=True)
class Task:
    """One unit of work: ``fn(*args)`` in a process of its own, its output appended to ``log``."""

    name: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    log: Path


@dataclass(frozen=True)
class Failed:
    """A task whose process did not end well: its exit code and the last line of its log (its error)."""

    task: Task
    exitcode: int

    def describe(self) -> str:
        return f"{self.task.name} (exit code {self.exitcode}: {last_line(self.task.log)}; log {self.task.log})"


def run_jobs(tasks: Sequence[Task], jobs: int, *, threads: int | None = None) -> list[Failed]:
    """Run every task, up to ``jobs`` at a time, and wait for all of them; returns the failed ones.

    ``threads``: torch's CPU threads in each process (default: the CPU count shared among the jobs).
    A task that fails does not stop the others; the caller decides what to do with what finished
    (:func:`raise_failed` makes one line of the failures). With ``jobs=1`` the tasks run here, in order,
    and an exception stops the run as any stage's does. Raises ValueError for ``jobs < 1``."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if jobs == 1:
        for task in tasks:
            task.fn(*task.args)
        return []
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    ctx = mp.get_context("spawn")
    waiting, running, failed = list(tasks), {}, []
    console.print(f"{len(tasks)} tasks, {jobs} at a time, each in its own process (its output in its log)")
    try:
        with progress() as bar:
            bar_task = bar.add_task("tasks", total=len(tasks))
            while waiting or running:
                while waiting and len(running) < jobs:
                    task = waiting.pop(0)
                    task.log.parent.mkdir(parents=True, exist_ok=True)
                    proc = ctx.Process(target=_child, args=(task.fn, task.args, str(task.log), threads),
                                       name=task.name)
                    proc.start()
                    running[task.name] = (task, proc, time.time())
                    console.print(f"start   {escape(task.name)} (log: {escape(str(task.log))})", highlight=False,
                                  soft_wrap=True)
                for name, (task, proc, t0) in list(running.items()):
                    if proc.exitcode is None:
                        continue
                    del running[name]
                    bar.update(bar_task, advance=1)
                    took = time.time() - t0
                    if proc.exitcode == 0:
                        console.print(f"done    {escape(name)} in {took:.0f} s", highlight=False)
                    else:
                        failed.append(Failed(task, proc.exitcode))
                        console.print(f"[red]failed[/red]  {escape(name)} after {took:.0f} s (exit code "
                                      f"{proc.exitcode}): {escape(last_line(task.log))}", highlight=False)
                time.sleep(0.2)
    finally:  # an interrupted run stops its tasks too (each stage resumes from its ledger next time)
        for _, proc, _ in running.values():
            proc.terminate()
        for _, proc, _ in running.values():
            proc.join()
    return failed


def raise_failed(failed: Sequence[Failed], total: int, after: str = "") -> None:
    """One ``UserError`` naming each failed task, its exit code and its error (nothing when none failed)."""
    if failed:
        raise UserError(f"{len(failed)} of {total} tasks failed: " + "; ".join(f.describe() for f in failed) + after)


def last_line(log: Path) -> str:
    """The last non-empty line of a task's log (its error), or a note that there is none."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1] if lines else "the log is empty"


def _child(fn: Callable[..., Any], args: tuple[Any, ...], log: str, threads: int) -> None:
    """In the task's process: output (also of C libraries and DataLoader workers) to the log, then ``fn``."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    import torch

    torch.set_num_threads(threads)  # the harness console sees a file now: plain lines, no live bars
    try:
        fn(*args)
    except UserError as e:  # a user-facing error: one line, as the CLI prints it
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        sys.exit(1)
    sys.stdout.flush()
    sys.stderr.flush()
