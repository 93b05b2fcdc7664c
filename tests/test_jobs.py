"""harness.jobs: tasks in processes of their own, their output in their logs, failures named afterwards."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.jobs import Task, last_line, raise_failed, run_jobs


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
    with pytest.raises(UserError) as e:
        raise_failed(failed, len(tasks))
    msg = str(e.value)
    assert msg.startswith("2 of 3 tasks failed: ")
    assert "bad-user (exit code 2: error: the data folder is missing; log " in msg
    assert "bad-bug (exit code 1: RuntimeError: a bug; log " in msg
    assert (tmp_path / "good").exists()  # the others ran to the end
    assert "Traceback" in (tmp_path / "b.log").read_text()  # the bug's traceback is in its log
    assert last_line(tmp_path / "missing.log") == "no log"


def test_one_job_runs_the_tasks_here_in_order(tmp_path):
    seen = []
    assert run_jobs([Task(str(k), seen.append, (k,), tmp_path / "unused.log") for k in range(3)], jobs=1) == []
    raise_failed([], 3)  # nothing failed: nothing raised
    assert seen == [0, 1, 2] and not (tmp_path / "unused.log").exists()
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        run_jobs([], jobs=0)
