"""`bench gpu`'s parts that the CPU can check: the scan's floor (the bytes it must move, against a hand count, and
the table's arithmetic), and the whole command as a tiny dry run that writes its record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.bench import models as M

ROOT = Path(__file__).resolve().parents[1]


def test_scan_bytes_against_a_hand_count():
    # batch 2, 8 channels, 16 steps, N 4, B/C in 2 groups, bf16: u, delta, z, out are 2·8·16 = 256 elements,
    # B and C 2·2·4·16 = 256 elements, A 8·4 fp32, D and delta_bias 8 fp32 each
    seq, bc, params = 256 * 2, 256 * 2, (32 + 16) * 4
    got = M.scan_bytes(batch=2, d=8, L=16, N=4, groups=2, elem=2)
    assert got["forward"] == 3 * seq + 2 * bc + params + seq  # read the inputs, write the output
    assert got["backward"] == (3 * seq + 2 * bc + params) + seq + (3 * seq + 2 * bc + params)  # + dout, + grads
    # Matten-XL/2's fused scan in bf16: 4 × 5·4608·4096·2 = 754,974,720 B of u, delta, z and the output,
    # 2 × 5·2·16·4096·2 = 2,621,440 of B and C, (4608·16 + 2·4608)·4 = 331,776 of A, D and delta_bias
    assert M.scan_bytes(**M.XL_SCAN)["forward"] == 754_974_720 + 2_621_440 + 331_776


def test_the_floor_table_on_the_cpu():
    shape = {"batch": 1, "d": 8, "L": 32, "N": 4, "groups": 2}
    rows = M.scan_floor("cpu", shape, torch.float32, repeats=2, mib=4)
    assert [(r["pass"], r["backend"]) for r in rows] == [("fwd", "torch"), ("fwd+bwd", "torch")]
    nbytes = M.scan_bytes(**shape, elem=4)
    for r in rows:
        need = nbytes["forward"] + (nbytes["backward"] if r["pass"] == "fwd+bwd" else 0)
        assert r["bytes (GB)"] == need / 1e9
        assert r["floor ms"] == pytest.approx(need / (r["copy GB/s"] * 1e9) * 1e3)
        assert r["× floor"] == pytest.approx(r["median ms"] / r["floor ms"])
    assert M.scan_floor("cpu", shape, torch.float32, repeats=2, mib=4, with_torch=False) == []  # torch alone here


def test_bench_gpu_tiny_on_the_cpu_writes_its_four_tables(tmp_path):
    out = subprocess.run([sys.executable, "-m", "harness.cli", "bench", "gpu", "--device", "cpu", "--tiny",
                          "--record-dir", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    (path,) = tmp_path.glob("*-gpu-cpu.json")
    tables = {r["table"] for r in json.loads(path.read_text())["rows"]}
    assert tables == set(M.GPU_PARTS) == {"agreement", "models", "mixer", "floor"}
    assert "(d) the fused bidirectional scan" in out.stdout
