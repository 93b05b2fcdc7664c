"""harness.mps: a private CUDA MPS daemon for a run's jobs, started and stopped around them (a stand-in for
nvidia-cuda-mps-control on the PATH: the CI machine has no GPU)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from harness.errors import UserError
from harness.machine import mps_running
from harness.mps import mps_daemon

FAKE = """#!/bin/sh
# a stand-in for nvidia-cuda-mps-control: '-d' makes the control pipe, 'quit' on stdin removes it
echo "$@ pipe=$CUDA_MPS_PIPE_DIRECTORY log=$CUDA_MPS_LOG_DIRECTORY" >> "{calls}"
if [ "$1" = "-d" ]; then {start}; exit 0; fi
read line; echo "stdin=$line" >> "{calls}"; rm -f "$CUDA_MPS_PIPE_DIRECTORY/control"
"""


def fake_control(tmp_path, monkeypatch, start='touch "$CUDA_MPS_PIPE_DIRECTORY/control"', quit_status=0):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the pipe folder: no /tmp/mb-mps-* left by tests
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.txt"
    bin_dir.mkdir()
    exe = bin_dir / "nvidia-cuda-mps-control"
    exe.write_text(FAKE.format(calls=calls, start=start) + f"exit {quit_status}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY", raising=False)
    return calls


def test_the_daemon_is_private_to_the_block_and_quit_after_it(tmp_path, monkeypatch):
    calls = fake_control(tmp_path, monkeypatch)
    monkeypatch.setenv("CUDA_MPS_LOG_DIRECTORY", "/somewhere/else")
    with mps_daemon(tmp_path / "log") as pipe:
        assert os.environ["CUDA_MPS_PIPE_DIRECTORY"] == str(pipe) and (pipe / "control").exists()
        assert mps_running()  # and so every record's machine description says "mps": true
        child = subprocess.run([sys.executable, "-c", "import os; print(os.environ['CUDA_MPS_PIPE_DIRECTORY'])"],
                               capture_output=True, text=True, check=True)
        assert child.stdout.strip() == str(pipe)  # the jobs' processes inherit it
    assert "CUDA_MPS_PIPE_DIRECTORY" not in os.environ and os.environ["CUDA_MPS_LOG_DIRECTORY"] == "/somewhere/else"
    assert not pipe.exists()  # its temporary folder is gone
    lines = calls.read_text().splitlines()
    assert lines[0] == f"-d pipe={pipe} log={tmp_path / 'log'}" and lines[1].startswith(f" pipe={pipe}")
    assert lines[2] == "stdin=quit"


def test_a_daemon_that_does_not_come_up_is_a_one_line_error(tmp_path, monkeypatch):
    fake_control(tmp_path, monkeypatch, start="echo 'cannot open the device' >&2; exit 1")
    with pytest.raises(UserError, match=r"^--mps: nvidia-cuda-mps-control -d did not start a daemon \(cannot open "
                                        r"the device; its log: .*\); run with --no-mps$"):
        with mps_daemon(tmp_path / "log", wait_s=0.5):
            pass
    assert "CUDA_MPS_PIPE_DIRECTORY" not in os.environ


def test_no_control_program_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="^--mps: nvidia-cuda-mps-control is not on the PATH"):
        with mps_daemon(tmp_path / "log"):
            pass


def test_run_refuses_mps_without_several_gpu_jobs(tmp_path):
    from harness.run import run

    with pytest.raises(UserError, match=r"^--mps is for several jobs on one GPU; this run has 1 job\(s\) on cpu"):
        run(["variants"], "smoke", run_dir=tmp_path / "run", results_dir=tmp_path / "r", mps=True)


def test_an_interrupt_still_quits_the_daemon_and_a_daemon_that_stays_is_named(tmp_path, monkeypatch, capsys):
    calls = fake_control(tmp_path, monkeypatch, quit_status=1)  # 'quit' not confirmed
    with pytest.raises(KeyboardInterrupt):
        with mps_daemon(tmp_path / "log") as pipe:
            raise KeyboardInterrupt
    assert "CUDA_MPS_PIPE_DIRECTORY" not in os.environ and calls.read_text().splitlines()[-1] == "stdin=quit"
    assert pipe.exists()  # kept: the only way to reach a daemon that did not quit
    out = " ".join(capsys.readouterr().err.split())  # the console writes to stderr
    assert f"stop it with: CUDA_MPS_PIPE_DIRECTORY={pipe} nvidia-cuda-mps-control, then quit" in out


def test_run_says_a_missing_control_program_before_any_stage(tmp_path, monkeypatch):
    import torch

    from harness.run import PRESETS, replace, run

    monkeypatch.setenv("PATH", str(tmp_path))
    gpu = replace(PRESETS["smoke"], jobs=2, train=replace(PRESETS["smoke"].train, device="cuda"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # no GPU: that is the problem named, not MPS
    with pytest.raises(UserError, match="^the smoke scale trains and samples on a GPU and torch sees none"):
        run(["variants"], "smoke", run_dir=tmp_path / "run", results_dir=tmp_path / "r", preset=gpu, mps=True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(UserError, match="^--mps: nvidia-cuda-mps-control is not on the PATH"):
        run(["variants"], "smoke", run_dir=tmp_path / "run", results_dir=tmp_path / "r", preset=gpu, mps=True)
    assert not (tmp_path / "run").exists()
    # a table that trains nothing starts no daemon, so it needs no control program (nor a GPU)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = run(["params"], "smoke", run_dir=tmp_path / "run2", results_dir=tmp_path / "r2", preset=gpu, mps=True)
    assert out.exists()


def gpu_preset(jobs: int = 2, mps: bool = True):
    from harness.run import PRESETS, replace

    return replace(PRESETS["smoke"], jobs=jobs, mps=mps, train=replace(PRESETS["smoke"].train, device="cuda"))


def test_a_scale_that_runs_under_mps_says_so_and_names_no_mps(tmp_path, monkeypatch):
    import torch

    from harness.run import run

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # without a GPU, that is the one problem named
    with pytest.raises(UserError, match="^MPS: the smoke scale runs its jobs under CUDA MPS; nvidia-cuda-mps-control "
                                        r"is not on the PATH \(it comes with the NVIDIA driver\); run with --no-mps$"):
        run(["variants"], "smoke", run_dir=tmp_path / "run", results_dir=tmp_path / "r", preset=gpu_preset())
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("mps, jobs, daemon", [(None, 2, True), (False, 2, False), (None, 1, False)])
def test_the_preset_decides_unless_told(tmp_path, monkeypatch, mps, jobs, daemon):
    # the preset's MPS for several GPU jobs; --no-mps, and --jobs 1, need no daemon (so no control program)
    import torch

    import harness.run as R

    def stop_at_the_input_check(*args, mps, mps_asked):
        seen.append(mps)
        raise RuntimeError("past")

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(R, "check_inputs", stop_at_the_input_check)
    seen = []
    with pytest.raises(RuntimeError, match="past"):
        R.run(["variants"], "smoke", run_dir=tmp_path / "run", results_dir=tmp_path / "r", preset=gpu_preset(jobs),
              mps=mps)
    assert seen == [daemon]


def test_the_mini_scale_runs_under_mps_by_default():
    from harness.run import PRESETS

    assert PRESETS["mini"].mps and PRESETS["mini"].jobs > 1 and not PRESETS["smoke"].mps and not PRESETS["paper"].mps
