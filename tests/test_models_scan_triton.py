"""The `triton` selective-scan backend (models.scan_triton) against the `reference` backend, on outputs and every
gradient, through Triton's interpreter on the CPU (a process of its own: TRITON_INTERPRET must be set before
triton compiles anything). Skipped where triton does not import; the GPU's speed is the benchmarks' business.

Tolerances, as max|a - b| / max|b| per tensor: fp32 1e-5 (the two add the same terms in another order: the chunked
scan composes steps pairwise; 0 to 5e-7 measured), bf16 1e-2 (both take the same bf16 inputs and compute in fp32,
then round their results to bf16: one bf16 step, 2^-7 = 7.8e-3 of a value at most; 7.3e-3 measured).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[1]

GRID = """
import itertools, json, torch
from models import scan
from models.scan import selective_scan_reference
from models.scan_triton import selective_scan_triton

def inputs(b, d, L, N, G, dtype, z, D, bias, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)
    u, delta = r(b, d, L).to(dtype), (0.5 * r(b, d, L) + shift).to(dtype)
    A = -torch.rand(d, N, generator=g) * 2 - 0.1  # negative, as -exp(A_log)
    shape = (b, G, N, L) if G else (b, N, L)
    return [u, delta, A, r(*shape).to(dtype), r(*shape).to(dtype), r(d) if D else None,
            r(b, d, L).to(dtype) if z else None, 0.1 * r(d) if bias else None]

def errors(fn, ins, softplus):
    runs = []
    for f in (selective_scan_reference, fn):
        xs = [None if x is None else x.clone().requires_grad_() for x in ins]
        y = f(*xs, delta_softplus=softplus)
        w = torch.randn(y.shape, generator=torch.Generator().manual_seed(7))
        (y.float() * w).sum().backward()
        runs.append([y.detach()] + [None if x is None else x.grad for x in xs])
    names = ["out", "u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    return {n: ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()
            for n, a, b in zip(names, runs[1], runs[0]) if b is not None}

rows = []
# (b, d, L, N, G): one chunk; L not a multiple of the chunk, grouped B/C; 3 channels a group (1-channel programs);
# several chunks of the default 32 at N = 16 (the models' d_state)
shapes = [(1, 4, 8, 4, None), (2, 8, 21, 4, 2), (1, 6, 19, 8, 2), (2, 8, 70, 16, None)]
for shape, dtype, (z, D, bias, softplus) in itertools.product(
        shapes, (torch.float32, torch.bfloat16), [(True, True, True, True), (False, False, False, False)]):
    chunk, block = (8, 4) if shape[2] < 32 else (32, 8)
    fn = lambda *a, **k: selective_scan_triton(*a, **k, chunk=chunk, block=block)
    rows.append({"shape": shape, "dtype": str(dtype), "options": [z, D, bias, softplus],
                 "errors": errors(fn, inputs(*shape, dtype, z, D, bias, seed=len(rows)), softplus)})
# delta far below 0 (Mamba's dt_bias starts near -7): softplus must keep e^x's digits
for shift in (-6.9, -25.0):
    fn = lambda *a, **k: selective_scan_triton(*a, **k, chunk=8)
    rows.append({"shape": [2, 4, 19, 4, None], "dtype": "torch.float32", "options": [True, True, True, True],
                 "shift": shift, "errors": errors(fn, inputs(2, 4, 19, 4, None, torch.float32, True, True, True,
                                                           seed=len(rows), shift=shift), True)})
# steps past L in a chunk, where exp(delta A) of a negative bias would overflow: no NaN may reach dA
A = torch.full((1, 1), -100.0)
ins = [torch.ones(1, 1, 3), torch.full((1, 1, 3), 2.0), A, torch.ones(1, 1, 3), torch.ones(1, 1, 3), None, None,
       torch.tensor([-1.0])]
rows.append({"shape": "padding", "dtype": "torch.float32", "options": "no softplus, bias -1, A -100",
             "errors": errors(lambda *a, **k: selective_scan_triton(*a, **k, chunk=4), ins, False)})
# the same through the backend switch that models use
scan.set_backend("triton")
ins = inputs(2, 8, 21, 4, 2, torch.float32, True, True, True, seed=99)
rows.append({"shape": "dispatch", "dtype": "torch.float32", "options": "all",
             "errors": errors(scan.selective_scan, ins, True), "backend": scan.backend_in_use()})
print(json.dumps(rows))
"""


def run_grid() -> list[dict]:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", GRID], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_triton_scan_equals_the_reference_on_outputs_and_every_gradient():
    rows = run_grid()
    assert len(rows) == 20
    for row in rows:
        tol = 1e-5 if row["dtype"] == "torch.float32" else 1e-2
        worst = max(row["errors"].items(), key=lambda kv: kv[1])
        assert worst[1] <= tol, row  # NaN fails this too
        if row["shape"] == "padding":
            assert set(row["errors"]) == {"out", "u", "delta", "A", "B", "C", "delta_bias"}, row
            continue
        expected = {"out", "u", "delta", "A", "B", "C"} | ({"D", "z", "delta_bias"} if row["options"] != [
            False, False, False, False] else set())
        assert set(row["errors"]) == expected, row
    assert rows[-1]["backend"] == "triton"


def test_triton_backend_refuses_cpu_tensors_outside_the_interpreter_and_a_missing_triton(monkeypatch):
    import torch

    from models import scan
    from models.errors import ModelConfigError

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    before = scan.get_backend()
    scan.set_backend("triton")
    try:
        x = torch.zeros(1, 2, 4)
        with pytest.raises(ValueError, match="backend 'triton' needs CUDA tensors"):
            scan.selective_scan(x, x, torch.zeros(2, 4), torch.zeros(1, 4, 4), torch.zeros(1, 4, 4))
    finally:
        scan.set_backend(before)
    monkeypatch.setattr(scan, "triton_available", lambda: False)
    with pytest.raises(ModelConfigError, match="needs triton, which does not import"):
        scan.set_backend("triton")


def test_triton_scan_refuses_inputs_it_would_misread(monkeypatch):
    import torch

    from models.scan_triton import selective_scan_triton

    x, A, B = torch.zeros(1, 4, 6), torch.zeros(4, 2), torch.zeros(1, 2, 6)
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        selective_scan_triton(x, x, A, B, B)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    for args, message in [
        ((x, x, torch.zeros(4, 3), torch.zeros(1, 3, 6), torch.zeros(1, 3, 6)), r"power-of-two d_state \(got 3\)"),
        ((x, x, A, torch.zeros(1, 2, 2, 6), B), r"B \(1, 2, 2, 6\) and C \(1, 2, 6\): expected one shape"),
        ((x, x, A, torch.zeros(1, 3, 2, 6), torch.zeros(1, 3, 2, 6)), "split into the 3 groups"),
        ((x, x, A, torch.zeros(1, 2, 5), torch.zeros(1, 2, 5)), "batch and L must match"),
        ((x, x, torch.zeros(3, 2), B, B), r"A \(3, 2\) \(expected \(4, 2\)\)"),
        ((x.double(), x, A, B, B), "not float64"),
    ]:
        with pytest.raises(ValueError, match=message):
            selective_scan_triton(*args)
    with pytest.raises(ValueError, match=r"D \(3,\) \(expected \(4,\)\)"):
        selective_scan_triton(x, x, A, B, B, D=torch.zeros(3))


def test_both_kernels_compile_for_hopper_without_a_gpu():
    # the interpreter runs Python on numpy; this runs Triton's compiler down to an sm_90 cubin (ptxas ships in the
    # triton wheel), which catches what only compiled Triton refuses
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from models import scan_triton as S

    consts = {"HAS_D": True, "HAS_Z": True, "HAS_BIAS": True, "SOFTPLUS": True, "N": 16, "BD": 4, "K": 32}
    fp32 = {"A", "D", "BIAS", "HS", "DB_P", "DC_P", "DA_P", "DD_P", "DBIAS_P"}
    ints = {"dim", "L", "n_chunks", "d_per_group", "groups", "n_blocks"}
    for kernel in (S._fwd_kernel, S._bwd_kernel):
        signature = {n: "constexpr" if n in consts else "i32" if n in ints else "*fp32" if n in fp32 else "*bf16"
                     for n in kernel.arg_names}
        compiled = triton.compile(ASTSource(kernel, signature, constexprs=consts), target=GPUTarget("cuda", 90, 32))
        assert compiled.asm["cubin"] and ".target sm_90a" in compiled.asm["ptx"]
