"""Selective-scan backends: `torch` (ours) equals `reference` (mamba-ssm's sequential loop) in outputs and
gradients, and backend selection never falls back silently."""

import pytest
import torch

from models import scan
from models.errors import ModelConfigError


def make_inputs(b, d, L, N, groups=None, c_groups="same", seed=0):
    g = torch.Generator().manual_seed(seed)
    shape_b = (b, N, L) if groups is None else (b, groups, N, L)
    shape_c = shape_b if c_groups == "same" else ((b, N, L) if c_groups is None else (b, c_groups, N, L))
    return {
        "u": torch.randn(b, d, L, generator=g),
        "delta": torch.randn(b, d, L, generator=g) * 0.5,
        "A": -torch.exp(torch.randn(d, N, generator=g) * 0.5),
        "B": torch.randn(*shape_b, generator=g),
        "C": torch.randn(*shape_c, generator=g),
        "D": torch.randn(d, generator=g),
        "z": torch.randn(b, d, L, generator=g),
        "delta_bias": torch.randn(d, generator=g) * 0.3,
    }


def run_with_grads(fn, inputs, use, softplus, weight):
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    kwargs = {k: leaves[k] for k in ("D", "z", "delta_bias") if k in use}
    if not softplus:  # keep delta positive so exp(delta·A) stays a contraction, as in real use
        leaves_delta = leaves["delta"].abs() + 0.01
    else:
        leaves_delta = leaves["delta"]
    out = fn(leaves["u"], leaves_delta, leaves["A"], leaves["B"], leaves["C"], delta_softplus=softplus, **kwargs)
    (out * weight).sum().backward()
    grads = {k: v.grad for k, v in leaves.items() if v.grad is not None}
    return out.detach(), grads


def assert_close_rel(a, b, rtol=1e-5, what=""):
    err = (a - b).abs().max().item()
    scale = b.abs().max().item()
    assert err <= rtol * max(scale, 1e-12), f"{what}: max abs err {err:.3g} vs scale {scale:.3g}"


CASES = [
    # (b, d, L, N, groups, c_groups, optional inputs used, softplus)
    (2, 8, 40, 4, None, "same", ("D", "z", "delta_bias"), True),
    (1, 6, 33, 3, None, "same", (), False),
    (2, 8, 37, 5, 2, "same", ("D",), True),
    (1, 12, 50, 4, 3, "same", ("z", "delta_bias"), False),
    (2, 8, 29, 4, 2, None, ("D", "z"), True),  # B grouped, C not
    (1, 4, 1, 16, None, "same", ("D", "z", "delta_bias"), True),  # a single step
]


@pytest.mark.parametrize("b,d,L,N,groups,c_groups,use,softplus", CASES)
def test_torch_backend_matches_reference(monkeypatch, b, d, L, N, groups, c_groups, use, softplus):
    monkeypatch.setattr(scan, "CHUNK", 16)  # several chunks, so the chunk boundaries are exercised
    inputs = make_inputs(b, d, L, N, groups, c_groups)
    weight = torch.randn(b, d, L, generator=torch.Generator().manual_seed(1))
    out_ref, g_ref = run_with_grads(scan.selective_scan_reference, inputs, use, softplus, weight)
    out_ours, g_ours = run_with_grads(scan.selective_scan_torch, inputs, use, softplus, weight)
    assert_close_rel(out_ours, out_ref, what="output")
    assert set(g_ours) == set(g_ref)
    for k in g_ref:
        assert_close_rel(g_ours[k], g_ref[k], what=f"grad {k}")


def test_torch_backend_matches_reference_at_default_chunk():
    inputs = make_inputs(1, 4, scan.CHUNK + 7, 4)  # crosses one chunk boundary at the shipped chunk size
    weight = torch.randn(1, 4, scan.CHUNK + 7, generator=torch.Generator().manual_seed(2))
    use = ("D", "z", "delta_bias")
    out_ref, g_ref = run_with_grads(scan.selective_scan_reference, inputs, use, True, weight)
    out_ours, g_ours = run_with_grads(scan.selective_scan_torch, inputs, use, True, weight)
    assert_close_rel(out_ours, out_ref, what="output")
    for k in g_ref:
        assert_close_rel(g_ours[k], g_ref[k], what=f"grad {k}")


def test_scan_against_hand_computation():
    # d=1, N=1, L=3: h_t = exp(δA) h_{t-1} + δ B_t u_t, y_t = C_t h_t
    u = torch.tensor([[[1.0, 2.0, 3.0]]])
    delta = torch.full((1, 1, 3), 0.5)
    A = torch.tensor([[-2.0]])
    B = torch.tensor([[[1.0, 1.0, 2.0]]])
    C = torch.tensor([[[1.0, 3.0, 1.0]]])
    a = torch.exp(torch.tensor(-1.0))
    h1 = 0.5 * 1 * 1
    h2 = a * h1 + 0.5 * 1 * 2
    h3 = a * h2 + 0.5 * 2 * 3
    expected = torch.tensor([[[h1 * 1, h2 * 3, h3 * 1]]])
    for fn in (scan.selective_scan_torch, scan.selective_scan_reference):
        torch.testing.assert_close(fn(u, delta, A, B, C), expected)


def test_bf16_inputs_return_bf16():
    inputs = make_inputs(1, 4, 10, 4)
    u = inputs["u"].bfloat16()
    out = scan.selective_scan_torch(u, inputs["delta"].bfloat16(), inputs["A"], inputs["B"].bfloat16(),
                                    inputs["C"].bfloat16(), inputs["D"], inputs["z"].bfloat16())
    assert out.dtype == torch.bfloat16


def test_backend_selection_is_explicit():
    inputs = make_inputs(1, 4, 8, 4)
    try:
        scan.set_backend("reference")
        scan.selective_scan(inputs["u"], inputs["delta"], inputs["A"], inputs["B"], inputs["C"])
        assert scan.backend_in_use() == "reference"
        scan.set_backend("auto")
        scan.selective_scan(inputs["u"], inputs["delta"], inputs["A"], inputs["B"], inputs["C"])
        assert scan.backend_in_use() == "torch"  # CPU tensors: never the CUDA kernel
        assert scan.resolve_backend("cpu") == "torch"
        with pytest.raises(ModelConfigError, match="unknown selective-scan backend"):
            scan.set_backend("cudnn")
        if not scan.cuda_available():
            assert scan.resolve_backend("cuda") in ("torch", "cuda")
        try:
            import mamba_ssm  # noqa: F401
        except Exception:
            with pytest.raises(ModelConfigError, match="mamba-ssm"):
                scan.set_backend("cuda")
    finally:
        scan.set_backend("auto")


def test_complex_A_is_refused():
    inputs = make_inputs(1, 4, 8, 4)
    with pytest.raises(NotImplementedError):
        scan.selective_scan_torch(inputs["u"], inputs["delta"], inputs["A"].to(torch.complex64),
                                  inputs["B"], inputs["C"])


def test_agreement_benchmark_table_on_cpu():
    from harness.bench.models import markdown_table, scan_agreement

    rows = scan_agreement("cpu", shapes=((1, 8, 20, 4, None), (1, 8, 20, 4, 2)), dtypes=(torch.float32,))
    assert all(r["out"] < 1e-5 and r["worst grad"] < 1e-5 for r in rows)
    table = markdown_table(rows).splitlines()
    assert table[0].startswith("| compare |") and len(table) == 2 + len(rows)


def test_scan_benchmark_command_small(tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    args = ["bench", "scan", "--compare", "16", "--torch-only", "32", "--d-inner", "8", "--d-state", "4",
            "--repeats", "1", "--reference-repeats", "1", "--record-dir", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 4  # header; reference and torch at L=16; torch fwd and fwd+bwd at L=32
    assert "| 32 | torch | fwd+bwd |" in result.stdout
    assert "Command: `matten-bench" in result.stdout and "Machine:" in result.stdout
    assert len(list(tmp_path.glob("*-scan-cpu.json"))) == 1  # its record, where --record-dir said
