"""FLOPs: fvcore handles against hand counts, the analytic cross-check, the thop procedure, the CLI's JSON."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from flops_standins import ScanFn, TinyLatte, TinyMatten
from torch import nn
from typer.testing import CliRunner

from harness import flops
from harness.cli import app

flops.SCAN_FUNCTIONS.add("prim::PythonOp.ScanFn")  # the stand-in scan has mamba-ssm's argument order


# ------------------------------------------------------------------------------------------------
# analytic formulas (FMA), written from the definitions, not from the code under test
# ------------------------------------------------------------------------------------------------


def self_attention_fma(j: int, d: int) -> int:
    """One sequence of J tokens: QKV and output projections 4·J·D², QKᵀ and AV 2·J²·D."""
    return 4 * j * d * d + 2 * j * j * d


def ffn_fma(j: int, d: int) -> int:
    return 8 * j * d * d  # D -> 4D -> D


def scan_fma(b: int, length: int, channels: int, state: int, with_d: bool = True, with_z: bool = True) -> int:
    return 9 * b * length * channels * state + (with_d + with_z) * b * channels * length


def standin_expected(model: TinyLatte, batch: int) -> dict[str, int]:
    """Per-category FMA of the stand-ins, from their configuration."""
    f, d, p, c = model.frames, model.x_embedder.out_channels, model.patch, model.channels
    n = (model.size // p) ** 2  # tokens per frame
    depth = len(model.blocks)
    spatial = temporal = depth // 2
    e = {k: 0 for k in flops.CATEGORIES}
    # attention blocks: spatial ones see B·T sequences of N tokens, temporal ones B·N sequences of T tokens
    attn = spatial * batch * f * self_attention_fma(n, d) + temporal * batch * n * self_attention_fma(f, d)
    e["attention products"] = spatial * batch * f * 2 * n * n * d + temporal * batch * n * 2 * f * f * d
    e["attention projections"] = attn - e["attention products"]
    e["MLP"] = spatial * batch * f * ffn_fma(n, d) + temporal * batch * n * ffn_fma(f, d)
    # adaLN modulation on the condition repeated per frame (spatial) or per token (temporal), as Latte does
    e["modulation"] = spatial * batch * f * d * 6 * d + temporal * batch * n * d * 6 * d
    e["embedder"] = batch * f * n * (c * p * p) * d + batch * (256 * d + d * d)
    e["final layer"] = batch * f * n * d * (p * p * 2 * c) + batch * f * d * 2 * d
    norms = 2 * depth + 1
    if isinstance(model, TinyMatten):
        m = model.mamba_blocks[0].mamba
        inner, rank, state, k = m.in_proj.out_features // 2, m.rank, m.state, m.conv1d[0].kernel_size[0]
        length, blocks = f * n, len(model.mamba_blocks)
        e["modulation"] += blocks * batch * d * 3 * d  # M-AdaN: one (shift, scale, gate) per clip
        per_direction = length * inner * (rank + 2 * state) + length * rank * inner  # x_proj, dt_proj
        e["Mamba projections"] = blocks * batch * (length * d * 2 * inner + length * inner * d + 2 * per_direction)
        e["conv1d"] = blocks * 2 * batch * inner * k * (length + k - 1)  # depthwise, padded by k-1 then cut
        e["selective scan"] = blocks * 2 * scan_fma(batch, length, inner, state)
        norms += blocks
    e["norms"] = norms * batch * f * n * d * 4  # fvcore: 4 per element for a LayerNorm without affine
    return e


# ------------------------------------------------------------------------------------------------
# handles on tiny shapes
# ------------------------------------------------------------------------------------------------


class SdpaOnly(nn.Module):
    def forward(self, q, k, v):  # noqa: ANN001
        return F.scaled_dot_product_attention(q, k, v)


def test_sdpa_handle_counts_both_products():
    q, k, v = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 7, 4), torch.randn(2, 3, 7, 6)
    result = flops.fvcore_count(SdpaOnly(), (q, k, v))
    assert result.fma == 2 * 3 * 5 * 7 * 4 + 2 * 3 * 5 * 7 * 6  # QKᵀ + AV
    assert result.by_category["attention products"] == result.fma


class ScanOnly(nn.Module):
    def __init__(self, with_d: bool, with_z: bool):
        super().__init__()
        self.with_d, self.with_z = with_d, with_z

    def forward(self, u, delta, A, B, C, D, z):  # noqa: ANN001
        return ScanFn.apply(u, delta, A, B, C, D if self.with_d else None, z if self.with_z else None, None, True)


@pytest.mark.parametrize("with_d,with_z", [(True, True), (True, False), (False, True), (False, False)])
def test_scan_handle_hand_count(with_d, with_z):
    b, d, length, n = 2, 3, 5, 4
    args = (
        torch.randn(b, d, length), torch.rand(b, d, length), -torch.rand(d, n), torch.randn(b, n, length),
        torch.randn(b, n, length), torch.ones(d), torch.randn(b, d, length),
    )
    result = flops.fvcore_count(ScanOnly(with_d, with_z), args)
    expected = 9 * 2 * 5 * 3 * 4 + (with_d + with_z) * 2 * 3 * 5  # 9·B·L·D·N (+ B·D·L per D skip / z gate)
    assert result.fma == expected == flops.selective_scan_fma(b, length, d, n, with_d=with_d, with_z=with_z)
    assert result.by_category["selective scan"] == expected


def test_depthwise_conv1d_count():
    conv = nn.Conv1d(6, 6, 4, groups=6, padding=3)
    result = flops.fvcore_count(conv, (torch.randn(2, 6, 10),))
    assert result.fma == 2 * 6 * 4 * 13  # batch · channels · kernel · output length (10 + 3)
    assert result.by_category["conv1d"] == result.fma


class BroadcastMatmul(nn.Module):
    def forward(self, w, x):  # noqa: ANN001
        return w @ x  # (D, R) @ (B, R, L) -> (B, D, L)


def test_matmul_handle_counts_the_broadcast_batch():
    result = flops.fvcore_count(BroadcastMatmul(), (torch.randn(6, 3), torch.randn(5, 3, 7)))
    assert result.fma == 5 * 6 * 7 * 3  # fvcore's own handle says 6·3·7, forgetting the batch of 5


def test_element_wise_ops_are_listed_not_hidden():
    result = flops.fvcore_count(TinyLatte(), flops.example_inputs(1, 4, 8, device="cpu"))
    for op in ("aten::gelu", "aten::silu", "aten::add", "aten::mul"):
        assert result.unsupported_ops.get(op, 0) > 0, op


# ------------------------------------------------------------------------------------------------
# the analytic cross-check and the meta device
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [TinyLatte, TinyMatten])
@pytest.mark.parametrize("batch", [1, 2])
def test_breakdown_equals_analytic_formulas(cls, batch):
    model = cls(frames=4, size=8, dim=32, depth=4, heads=2)
    result = flops.fvcore_count(model, flops.example_inputs(batch, 4, 8, device="cpu"))
    expected = standin_expected(model, batch)
    assert result.by_category == expected
    assert result.fma == sum(expected.values())


def test_meta_device_count_equals_cpu_count():
    counts = []
    for device in ("cpu", "meta"):
        with torch.device(device):
            model = TinyMatten(frames=4, size=8, dim=32, depth=2, heads=2)
        counts.append(flops.fvcore_count(model, flops.example_inputs(2, 4, 8, device=device)))
    assert counts[0] == counts[1]
    assert counts[0].by_category["conv1d"] > 0 and counts[0].by_category["embedder"] > 0  # convolutions on meta


# ------------------------------------------------------------------------------------------------
# the paper's procedure (thop)
# ------------------------------------------------------------------------------------------------


def test_thop_procedure_on_tiny_latte_matches_hand_count():
    model = TinyLatte(frames=4, size=8, dim=32, depth=2, heads=2)
    record = flops.count_flops("latte-tiny", protocol="paper", model=model, frames=4, size=64)
    b, f, n, d, c, p = 3, 4, 16, 32, 4, 2
    linear = (
        2 * b * f * n * 12 * d * d  # qkv, proj, fc1, fc2 (attention products are not modules: not counted)
        + b * f * d * 6 * d + b * n * d * 6 * d  # adaLN on the per-frame / per-token condition
        + b * (256 * d + d * d)  # timestep MLP
        + b * f * n * d * p * p * 2 * c + b * f * d * 2 * d  # final layer
    )
    conv = b * f * n * c * p * p * d
    layer_norm = 5 * b * f * n * d * 2  # thop: 2 per element for a LayerNorm without affine parameters
    assert record["batch"] == 3
    assert record["fma"] == linear + conv + layer_norm
    assert record["params"] == sum(p.numel() for p in model.parameters())


def test_thop_does_not_see_the_scan():
    model = TinyMatten(frames=4, size=8, dim=32, depth=2, heads=2)
    paper = flops.count_flops("matten-tiny", protocol="paper", model=model, frames=4, size=64)
    honest = flops.count_flops("matten-tiny", model=model, frames=4, size=64, batch=3)
    scan = honest["by_category"]["selective scan"]
    assert scan > 0
    # thop's count (3 clips) lacks the scan, the attention products and the x/dt projections (functional matmul)
    missing = scan + honest["by_category"]["attention products"]
    assert paper["fma"] < honest["fma"] - missing + honest["by_category"]["norms"]


# ------------------------------------------------------------------------------------------------
# CLI and table
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def standin_models(monkeypatch):
    def build(name, *, variant=3, frames=16, size=256, **kw):  # noqa: ANN001
        family, _ = flops.parse_model_name(name)
        cls = TinyMatten if family == "matten" else TinyLatte
        with torch.device("meta"):
            return cls(frames=frames, size=flops.latent_size(size), dim=32, depth=2, heads=2)

    monkeypatch.setattr(flops, "build_on_meta", build)


def test_cli_json_schema(standin_models):
    result = CliRunner().invoke(app, ["flops", "--model", "matten-tiny", "--frames", "4", "--size", "64", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    for key in ("model", "protocol", "batch", "fma", "flop", "params", "by_category", "unsupported_ops"):
        assert key in record
    assert record["protocol"] == "fvcore" and record["batch"] == 1
    assert record["flop"] == 2 * record["fma"]
    assert set(record["by_category"]) == set(flops.CATEGORIES)
    assert sum(record["by_category"].values()) == record["fma"]
    assert record["latent_size"] == 8 and record["input_shape"] == [1, 4, 4, 8, 8]
    assert isinstance(record["params"], int) and record["params"] > 0

    paper = json.loads(
        CliRunner().invoke(app, ["flops", "--model", "latte-tiny", "--protocol", "paper", "--frames", "4",
                                 "--size", "64", "--json"]).stdout
    )
    assert paper["protocol"] == "paper" and paper["batch"] == 3 and math.isclose(paper["printed_gflops"],
                                                                                paper["fma"] / 1e9)


def test_cli_table_output_labels_units(standin_models):
    result = CliRunner().invoke(app, ["flops", "--model", "matten-tiny", "--frames", "4", "--size", "64"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # rich wraps lines at the terminal width
    assert "GFMA" in out and "GFLOP" in out and "FLOP = 2 x" in out and "selective scan" in out


def test_bad_input_is_a_user_error():
    from models.errors import ModelConfigError

    with pytest.raises(ModelConfigError, match="unknown model 'gpt-xl'"):  # the CLI prints it as one line, exit 2
        flops.parse_model_name("gpt-xl")
    with pytest.raises(flops.UserError, match="multiple of 8"):
        flops.latent_size(250)
    with pytest.raises(flops.UserError, match="protocol"):
        flops.count_flops("latte-xl", protocol="ptflops")


def test_flops_table_has_both_protocols_and_the_paper_column(standin_models):
    records = [
        flops.count_flops(name, protocol=protocol, frames=4, size=64)
        for name in ("latte-xl", "matten-xl")
        for protocol in ("fvcore", "paper")
    ]
    df = flops.flops_table(records)
    assert list(df["model"]) == ["latte-xl", "matten-xl"]
    assert list(df["paper GFLOPs (as printed)"]) == [5572.0, 4008.0]
    by = {(r["model"], r["protocol"]): r for r in records}
    assert df.loc[1, "paper procedure: thop GMACs, batch 3"] == round(by["matten-xl", "paper"]["fma"] / 1e9, 3)
    assert df.loc[0, "fvcore GFMA / clip"] == round(by["latte-xl", "fvcore"]["fma"] / 1e9, 3)
    assert df.loc[0, "of which selective scan (GFMA)"] == 0  # Latte has no scan
    markdown = flops.flops_table_markdown(records)
    assert "| latte-xl" in markdown and "thop" in markdown and "FMA" in markdown


# ------------------------------------------------------------------------------------------------
# the real models (models/): analytic cross-check on small configs, and the paper's Latte-XL number
# ------------------------------------------------------------------------------------------------


def models_expected(model: nn.Module, batch: int, frames: int, latent: int) -> dict[str, int]:
    """Per-category FMA of models.Latte / models.Matten from their configuration (any variant, fused scan)."""
    d, p, c = model.hidden, model.patch, model.in_channels
    n = (latent // p) ** 2
    kinds = getattr(model, "kinds", ["spatial_attn", "temporal_attn"] * (len(model.blocks) // 2))
    sequences = {"spatial": (batch * frames, n), "temporal": (batch * n, frames), "global": (batch, frames * n)}
    e = {k: 0 for k in flops.CATEGORIES}
    norms = 1  # the final layer's
    for kind, block in zip(kinds, model.blocks, strict=True):
        s, j = sequences[kind.split("_")[0]]
        if kind.endswith("attn"):
            e["attention products"] += s * 2 * j * j * d
            e["attention projections"] += s * (self_attention_fma(j, d) - 2 * j * j * d)
            e["MLP"] += s * ffn_fma(j, d)
            e["modulation"] += s * d * 6 * d
            norms += 2
        else:
            m = block.mixer
            inner, rank, state, k = m.d_inner, m.dt_rank, m.d_state, m.d_conv
            e["modulation"] += s * d * 3 * d  # M-AdaN
            in_out = d * 2 * inner + inner * d  # in_proj, out_proj
            x_dt = inner * (rank + 2 * state) + rank * inner  # x_proj, dt_proj, per direction
            e["Mamba projections"] += s * j * (in_out + 2 * x_dt)
            e["conv1d"] += s * 2 * inner * k * (j + k - 1)  # both directions' depthwise convs, one fused call
            e["selective scan"] += 2 * scan_fma(s, j, inner, state)  # forward + backward direction
            norms += 1
    e["embedder"] = batch * frames * n * c * p * p * d + batch * (256 * d + d * d)
    e["final layer"] = batch * frames * n * d * p * p * 2 * c + batch * frames * d * 2 * d
    e["norms"] = norms * batch * frames * n * d * 4
    return e


@pytest.mark.parametrize("family,variant", [("latte", 3), ("matten", 3), ("matten", 2)])
def test_models_breakdown_equals_analytic_formulas(family, variant):
    pytest.importorskip("models")
    frames, size = 4, 64  # latents 8×8
    model = flops.build_on_meta(f"{family}-tiny", variant=variant, frames=frames, size=size)
    record = flops.count_flops(f"{family}-tiny", variant=variant, model=model, frames=frames, size=size, batch=2)
    assert record["by_category"] == models_expected(model, 2, frames, 8)
    assert record["unsupported_ops"].get("prim::PythonOp._SelectiveScanCore") is None  # the scan is one counted op


def test_latte_xl_paper_procedure_reproduces_5572():
    pytest.importorskip("models")
    record = flops.count_flops("latte-xl", protocol="paper")
    assert record["batch"] == 3 and record["input_shape"] == [3, 16, 4, 32, 32]
    assert abs(record["printed_gflops"] - 5572) / 5572 < 0.005
    assert record["fma"] == 5_572_695_048_192  # Latte's public code prints 5572.695 G


def test_the_flops_report_is_computed_from_its_records():
    """results/flops.md's numbers come from the records it is given (made-up records here), never typed in."""
    from harness.flops import flops_report

    def rec(model, protocol, fma, scan=0.0):
        r = {"model": model, "protocol": protocol, "fma": fma, "batch": 3 if protocol == "paper" else 1,
             "params": 1e6, "paper_gflops": None}
        if protocol == "fvcore":
            r["by_category"] = {"attention products": 1e9, "selective scan": scan}
        return r

    text = flops_report([rec("latte-xl", "fvcore", 1000e9), rec("latte-xl", "paper", 3000e9),
                         rec("matten-xl", "fvcore", 1500e9, scan=30e9), rec("matten-xl", "paper", 3600e9)],
                        command="matten-bench flops --report x.md")
    assert "3,000.000 G by Latte's procedure" in text and "-46.16 % from the printed number" in text
    assert "3,600.000 G by the same procedure" in text and "It is 600.000 G above" in text
    assert "1,500.00 GFMA (3.00 TFLOP), 1.50× Latte-XL/2's 1,000.00" in text and "30.00 GFMA of it (2.0 %)" in text
    assert "`matten-bench flops --report x.md`" in text


def test_a_name_that_spells_its_variant_sets_it():
    assert flops.model_variant("matten-xl-v2") == 2 and flops.model_variant("Matten-XL/2", 4) == 4
    assert flops.model_variant("latte-xl", 3) == 3
    with pytest.raises(flops.UserError, match="is variant 2, but --variant 4"):
        flops.model_variant("matten-xl-v2", 4)


def test_a_name_counts_the_model_it_names():
    """Variant and conditioning come from the name (also from a printed label); the paper's GFLOPs only for
    the model the paper counted (Matten-XL/2 variant 3 with M-AdaN, Latte-XL/2)."""
    v4 = flops.count_flops("Matten-S/2 v4", frames=4, size=64)
    assert v4["variant"] == 4 and v4["fma"] == flops.count_flops("matten-s", variant=4, frames=4, size=64)["fma"]
    tokens = flops.count_flops("matten-s-v3-tokens", frames=4, size=64)
    madan = flops.count_flops("matten-s", frames=4, size=64)
    assert tokens["conditioning"] == "tokens" and madan["conditioning"] == "madan" and tokens["fma"] != madan["fma"]
    assert flops.paper_gflops("matten-xl-v3") == flops.paper_gflops("Matten-XL/2") == 4008.0
    assert flops.paper_gflops("matten-xl-v2") is None and flops.paper_gflops("matten-xl-v3-tokens") is None
    assert flops.paper_gflops("latte-xl") == 5572.0
