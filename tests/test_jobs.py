"""harness.jobs: tasks in processes of their own, their output in their logs, failures named afterwards."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.jobs import Task, describe_failures, last_line, run_jobs, task_error


def write_threads(out: str) -> None:
    import torch

    Path(out).write_text(str(torch.get_num_threads()))


def sleep_forever(out: str) -> None:
    Path(out).write_text(str(os.getpid()))
    import time

    time.sleep(600)


def write_pid(out: str, text: str) -> None:
    print(f"task {text} says hello")  # to the task's log, not the terminal
    print("and to stderr", file=sys.stderr)
    Path(out).write_text(f"{text} {os.getpid()}")


def fail(kind: str) -> None:
    print("working ...")
    if kind == "user":
        raise UserError("the data folder is missing")
    raise RuntimeError("a bug")


def test_tasks_run_in_their_own_processes_with_their_output_in_their_logs(tmp_path, capfd):
    tasks = [Task(f"t{k}", write_pid, (str(tmp_path / f"out{k}"), f"#{k}"), tmp_path / f"t{k}" / "task.log")
             for k in range(3)]
    assert run_jobs(tasks, jobs=2, threads=1) == []
    pids = set()
    for k in range(3):
        text, pid = (tmp_path / f"out{k}").read_text().split()
        assert text == f"#{k}"
        pids.add(int(pid))
        log = (tmp_path / f"t{k}" / "task.log").read_text()
        assert f"task #{k} says hello" in log and "and to stderr" in log
    assert len(pids) == 3 and os.getpid() not in pids
    out, err = capfd.readouterr()
    assert "says hello" not in out + err and "done    t2" in err


def test_a_failed_task_is_named_with_its_last_line_after_the_others_finished(tmp_path):
    tasks = [Task("bad-user", fail, ("user",), tmp_path / "a.log"), Task("bad-bug", fail, ("bug",), tmp_path / "b.log"),
             Task("good", write_pid, (str(tmp_path / "good"), "ok"), tmp_path / "c.log")]
    failed = run_jobs(tasks, jobs=3, threads=1)
    assert sorted(f.task.name for f in failed) == ["bad-bug", "bad-user"]
    msg = describe_failures(failed, len(tasks))
    assert msg.startswith("2 of 3 tasks failed: ")
    assert "bad-user (exit code 2: error: the data folder is missing; log " in msg
    assert "bad-bug (exit code 1: RuntimeError: a bug; log " in msg
    assert (tmp_path / "good").exists()  # the others ran to the end
    assert "Traceback" in (tmp_path / "b.log").read_text()  # the bug's traceback is in its log
    assert last_line(tmp_path / "missing.log") == "no log"


def test_one_job_runs_the_tasks_here_in_order(tmp_path):
    seen = []
    assert run_jobs([Task(str(k), seen.append, (k,), tmp_path / "unused.log") for k in range(3)], jobs=1) == []
    assert seen == [0, 1, 2] and not (tmp_path / "unused.log").exists()
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        run_jobs([], jobs=0)


def test_each_task_gets_this_process_torch_threads(tmp_path):
    """CPU arithmetic depends on torch's thread count: each job gets this process's, so jobs > 1 computes the same
    numbers as jobs = 1 (a new user found a 7e-7 difference in an FVD when each job got cores / jobs)."""
    import torch

    tasks = [Task(f"t{k}", write_threads, (str(tmp_path / f"n{k}"),), tmp_path / f"t{k}.log") for k in range(2)]
    assert run_jobs(tasks, jobs=5) == []  # more jobs than tasks: two processes
    assert [int((tmp_path / f"n{k}").read_text()) for k in range(2)] == [torch.get_num_threads()] * 2


def test_the_error_is_the_tasks_own_line_and_a_task_that_cannot_log_fails_alone(tmp_path):
    (tmp_path / "clash").write_text("a file where the task's folder goes")
    tasks = [Task("bad", fail, ("user",), tmp_path / "a.log"),
             Task("clash", fail, ("user",), tmp_path / "clash" / "x.log"),
             Task("good", write_pid, (str(tmp_path / "good"), "ok"), tmp_path / "c.log")]
    failed = {f.task.name: f for f in run_jobs(tasks, jobs=2, threads=1)}
    assert failed["bad"].error == "error: the data folder is missing"
    with open(tmp_path / "a.log", "a") as f:  # later output in the log (e.g. another process) does not change it
        f.write("run    sample something @ 5\n")
    assert task_error(tasks[0]) == "error: the data folder is missing"
    assert failed["clash"].error.startswith("cannot write its log ") and (tmp_path / "good").exists()


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_tasks_stop_when_the_process_that_started_them_is_killed(tmp_path, how):
    """A scheduler's SIGTERM runs the clean-up that stops the tasks; after a SIGKILL (no clean-up) each task stops
    by itself: no task keeps a GPU or a folder after its run is gone."""
    import signal
    import subprocess
    import time

    task = f"Task('s', test_jobs.sleep_forever, ({str(tmp_path / 'pid')!r},), Path({str(tmp_path / 's.log')!r}))"
    code = (f"import sys; sys.path[:0] = {sys.path!r}\n"
            "from pathlib import Path\nfrom harness.jobs import Task, run_jobs\nimport test_jobs\n"
            f"run_jobs([{task}], jobs=2, threads=1)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parent)
    deadline = time.time() + 60
    while not (tmp_path / "pid").exists() and time.time() < deadline:
        time.sleep(0.2)
    child = int((tmp_path / "pid").read_text())
    os.kill(parent.pid, getattr(signal, how))
    code = parent.wait(timeout=30)
    if how == "SIGTERM":  # it went through the clean-up (an interrupt), not killed by the signal's default action
        assert code != -signal.SIGTERM, code
    deadline = time.time() + 15
    while _alive(child) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaps counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_meanwhile_runs_here_while_tasks_run_with_the_count_still_running(tmp_path):
    # a quick task and a slow one (it waits for a file that meanwhile writes once the quick one has ended)
    go = tmp_path / "go"
    tasks = [Task("quick", write_pid, (str(tmp_path / "q"), "q"), tmp_path / "q.log"),
             Task("slow", wait_for, (str(go),), tmp_path / "s.log")]
    seen = []

    def meanwhile(running: int) -> None:
        seen.append(running)
        if running == 1:
            go.write_text("go")

    assert run_jobs(tasks, jobs=2, threads=1, meanwhile=meanwhile) == []
    assert seen[0] == 2 and 1 in seen and set(seen) <= {1, 2} and go.exists()
    assert seen == sorted(seen, reverse=True)  # never called after the last task ended, never more than running


def wait_for(path: str) -> None:
    import time

    deadline = time.time() + 60
    while not Path(path).exists():
        if time.time() > deadline:
            raise RuntimeError("meanwhile never ran")
        time.sleep(0.05)


def test_meanwhile_waits_until_every_task_has_started(tmp_path, capsys):
    # three tasks, two at a time: meanwhile's work must not hold back the third task's start
    from harness.console import console

    go = tmp_path / "go"
    tasks = [Task(f"quick{k}", write_pid, (str(tmp_path / f"q{k}"), "q"), tmp_path / f"q{k}.log") for k in range(2)]
    tasks.append(Task("third", wait_for, (str(go),), tmp_path / "t.log"))

    def meanwhile(running: int) -> None:
        if not go.exists():
            console.print("meanwhile's first call")
            go.write_text("go")

    assert run_jobs(tasks, jobs=2, threads=1, meanwhile=meanwhile) == []
    err = capsys.readouterr().err
    assert "meanwhile's first call" in err and err.index("start   third") < err.index("meanwhile's first call")
