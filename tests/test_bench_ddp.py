"""`matten-bench bench ddp` on the CPU (gloo): the real `train` under torchrun, 1 vs 2 processes, one step's equality,
and a rank killed and resumed. The GPU numbers (NCCL, two H200s) come from the same command (results/bench/)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_ddp_on_the_cpu(tmp_path):
    cmd = [sys.executable, "-m", "harness.cli", "bench", "ddp", "--device", "cpu", "--models", "latte",
           "--size", "tiny", "--batch", "1", "--frames", "2", "--latent", "8", "--steps", "3", "--log-every", "1",
           "--skip", "1",
           "--no-compile", "--precision", "fp32", "--kill-steps", "300", "--kill-after", "20", "--kill-ckpt-every",
           "10", "--workdir", str(tmp_path / "work"), "--record-dir", str(tmp_path / "rec")]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    (path,) = (tmp_path / "rec").glob("*-ddp-cpu.json")
    rec = json.loads(path.read_text())
    scaling, equality, kill = rec["rows"]
    # the efficiency is the two measured rates' ratio, as the record holds them
    assert scaling["efficiency"] == scaling["samples/s, 2 processes"] / (2 * scaling["samples/s, 1 process"])
    assert rec["verdict"].startswith("target: scaling efficiency >= 0.95: latte-tiny ")
    # one fp32 step on two ranks of batch 1 equals one step of batch 2 (the same samples, the same noise)
    assert equality["max |weight difference|"] < 1e-6 * equality["max |weight|"]
    assert equality["loss, ranks"] == equality["loss, one process"]
    # killed part way, resumed with the same command: every logged loss equals the uninterrupted run's
    assert 20 <= kill["killed after step"] < 300  # it interrupted the run (a run that finished is an error)
    assert kill["resumed from step"] in range(10, 300, 10)  # a checkpoint (every 10 steps) before the end
    assert kill["logged steps compared"] == 300 and kill["bit for bit"] is True, kill
    assert kill["max |loss difference| before the resume"] == kill["max |loss difference| after the resume"] == 0
    assert kill["resumed on 1 process, warned"] is True and kill["1-process run reached"] == 302, kill


def test_bench_ddp_with_every_check_off_is_a_one_line_error():
    cmd = [sys.executable, "-m", "harness.cli", "bench", "ddp", "--device", "cpu", "--no-scaling", "--no-equality",
           "--no-kill"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2 and "leave nothing to run" in out.stderr + out.stdout
    assert "Traceback" not in out.stderr


def test_bench_ddp_hands_its_ddp_options_to_train_and_names_their_runs():
    from harness.bench.ddp import Setup, train_command

    default, tuned = Setup(device="cpu"), Setup(device="cpu", ddp_bucket_mb=100, ddp_static_graph=True)
    cmd = train_command(2, Path("cache"), Path("run"), "latte", tuned, 10)
    assert cmd[cmd.index("--ddp-bucket-mb") + 1] == "100" and "--ddp-static-graph" in cmd
    assert "--no-ddp-static-graph" in train_command(2, Path("cache"), Path("run"), "latte", default, 10)
    assert default.ddp_suffix() == "" and tuned.ddp_suffix() == "-bucket100-static"
