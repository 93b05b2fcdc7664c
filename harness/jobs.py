"""Several stage chains at once, each in a process of its own: how the mini scale fills one GPU.

A small model's eager training step is bound by the host launching kernels (at the mini shape Matten-S
keeps the H200 busy for a fraction of its 80 ms step), so one GPU trains several such models at once
about as fast as it trains one. :func:`run_jobs` runs independent tasks (here: one experiment's train and
sample stages, every evaluation point in turn) in up to ``jobs`` processes; each task's output goes to a
log file of its own, and the terminal shows one progress bar of tasks done.

Nothing changes in what a task computes: each stage is ledgered and keyed by its own inputs (data order,
noise and timesteps by position, harness.train), so ``jobs=2`` writes the same numbers as ``jobs=1``
(tests/test_run_smoke.py). A killed job loses what a killed stage loses; the next run resumes every task.
With ``jobs=1`` the tasks run one after the other in this process, their output on the terminal.

Processes are started with ``spawn`` (a fresh interpreter: CUDA cannot be used in a forked child);
a task is a module-level function and picklable arguments.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
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
    """A task whose process did not end well: its exit code and its error (the line its process wrote last as
    its error, else the last line of its log)."""

    task: Task
    exitcode: int
    error: str

    def describe(self) -> str:
        return f"{self.task.name} (exit code {self.exitcode}: {self.error}; log {self.task.log})"


def run_jobs(tasks: Sequence[Task], jobs: int, *, threads: int | None = None,
             meanwhile: Callable[[int], None] | None = None) -> list[Failed]:
    """Run every task, up to ``jobs`` at a time, and wait for all of them; returns the failed ones.

    ``meanwhile(running)``, if given, is called here between two looks at the tasks (every 0.2 s, with the number
    of tasks still running) once every task has started, for work of this process's own, e.g. measuring what a
    finished part of a task left; it should return within seconds, as tasks that end are noticed only after it
    returns. An exception it raises stops every task, as an interrupt does.

    ``threads``: torch's CPU threads in each process (default: this process's, so that CPU arithmetic, whose
    results depend on the thread count, is the same as with ``jobs=1``; on a CPU, jobs then share the cores).
    A task that fails does not stop the others; the caller decides what to do with what finished
    (:func:`describe_failures` makes one line of them). An interrupt or SIGTERM stops every task (their
    stages resume next time), and a task stops by itself if this process is killed outright (SIGKILL). With
    ``jobs=1`` the tasks run here, in order, and an exception stops the run as any stage's does.
    Raises ValueError for ``jobs < 1``."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"task names must be unique: {sorted({n for n in names if names.count(n) > 1})}")
    if not tasks:
        return []
    if jobs == 1:
        for task in tasks:
            task.fn(*task.args)
        return []
    import torch

    threads = threads or torch.get_num_threads()
    jobs = min(jobs, len(tasks))
    ctx = mp.get_context("spawn")
    waiting, running, failed = list(tasks), {}, []
    console.print(f"{len(tasks)} tasks, {jobs} at a time, each in its own process (its output in its log)")
    main = threading.current_thread() is threading.main_thread()  # signal handlers belong to the main thread
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt) if main else None  # a scheduler's SIGTERM
    try:
        with progress() as bar:
            bar_task = bar.add_task("tasks", total=len(tasks))
            while waiting or running:
                while waiting and len(running) < jobs:
                    task = waiting.pop(0)
                    try:
                        task.log.parent.mkdir(parents=True, exist_ok=True)
                        _error_file(task).unlink(missing_ok=True)
                    except OSError as e:  # e.g. a file where its folder should be: this task fails, not the run
                        failed.append(Failed(task, 2, f"cannot write its log {task.log}: {e.strerror or e}"))
                        console.print(f"[red]failed[/red]  {escape(task.name)}: {escape(failed[-1].error)}",
                                      highlight=False, soft_wrap=True)
                        bar.update(bar_task, advance=1)
                        continue
                    proc = ctx.Process(target=_child, args=(task.fn, task.args, str(task.log), threads, os.getpid()),
                                       name=task.name)
                    running[task.name] = (task, proc, time.time())  # listed before it starts: an interrupt stops it
                    proc.start()
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
                        failed.append(Failed(task, proc.exitcode, task_error(task)))
                        console.print(f"[red]failed[/red]  {escape(name)} after {took:.0f} s (exit code "
                                      f"{proc.exitcode}): {escape(failed[-1].error)}", highlight=False,
                                      soft_wrap=True)
                if meanwhile is not None and running and not waiting:
                    meanwhile(len(running))
                time.sleep(0.2)
    finally:  # an interrupted run stops its tasks too (each stage resumes from its ledger next time)
        if main:
            signal.signal(signal.SIGTERM, previous_term)
        started = [proc for _, proc, _ in running.values() if proc.pid is not None]
        for proc in started:
            proc.terminate()
        for proc in started:
            proc.join(timeout=30)
            if proc.is_alive():  # e.g. stuck in a device call: SIGKILL (its stages resume from their ledgers)
                proc.kill()
                proc.join()
    return failed


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def describe_failures(failed: Sequence[Failed], total: int, noun: str = "tasks") -> str:
    """One line naming each failed task, its exit code and its error: ``2 of 8 <noun> failed: ...``."""
    return f"{len(failed)} of {total} {noun} failed: " + "; ".join(f.describe() for f in failed)


def _error_file(task: Task) -> Path:
    return task.log.with_name(task.log.name + ".error")


def task_error(task: Task) -> str:
    """The error a failed task's process wrote (one line), else the last line of its log."""
    try:
        return " ".join(_error_file(task).read_text().split()) or last_line(task.log)
    except OSError:
        return last_line(task.log)


def last_line(log: Path) -> str:
    """The last non-empty line of a task's log (its error), or a note that there is none."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1] if lines else "the log is empty"


def _die_with_parent(parent: int) -> None:
    """Stop this task when the process that started it is gone, also after a SIGKILL (which runs no cleanup):
    Linux's parent-death signal, else a thread that checks once a second."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGTERM, 0, 0, 0) == 0:  # PR_SET_PDEATHSIG
            if os.getppid() != parent:  # it died before the call
                os._exit(1)
            return
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _child(fn: Callable[..., Any], args: tuple[Any, ...], log: str, threads: int, parent: int) -> None:
    """In the task's process: output (also of C libraries and DataLoader workers) to the log, then ``fn``; on
    failure its error as one line in ``<log>.error`` too (the log may end with other output)."""
    _die_with_parent(parent)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    import torch

    torch.set_num_threads(threads)
    console.no_color = True  # made before the dup2, maybe for a terminal: the log gets plain text (its bars: no
    # live updates, as the console now writes to a file)
    try:
        fn(*args)
    except UserError as e:  # a user-facing error: one line, as the CLI prints it
        _fail(log, f"error: {e}", 2)
    except BaseException as e:  # its traceback in the log; its message, on one line, is the task's error
        traceback.print_exc()
        _fail(log, " ".join(f"{type(e).__name__}: {e}".split()), 1)
    sys.stdout.flush()
    sys.stderr.flush()


def _fail(log: str, line: str, code: int) -> None:
    print(line, file=sys.stderr, flush=True)
    Path(log + ".error").write_text(line + "\n")
    sys.exit(code)
