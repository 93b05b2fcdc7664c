"""FLOPs and parameters: an honest per-sample fvcore count, and the paper's own (thop) procedure.

Two protocols, always labelled:

* ``fvcore`` (default). fvcore's FlopCountAnalysis on the model's JIT trace. Its unit is the fused
  multiply-add (FMA, = MAC): a (m×k)·(k×n) matmul counts m·k·n. We report FMA and FLOP = 2×FMA.
  Handles are registered for what fvcore does not see by itself:
    - ``aten::scaled_dot_product_attention``: the QKᵀ and AV products, batch·heads·Lq·Lk·(E + Ev) FMA;
    - the selective scan (our PyTorch backend is a custom autograd Function, so the trace holds one
      ``prim::PythonOp``): 9·B·L·D·N + B·D·L (D skip) + B·D·L (z gate), per direction — see
      :func:`selective_scan_fma` for where the formula comes from and what unit it is in;
    - ``aten::matmul``: numel(output) · K, correct under broadcasting (fvcore's own handle is not);
    - ``aten::_convolution`` is fvcore's own handle (grouped/depthwise conv1d counted correctly:
      batch · prod(weight shape) · prod(output length)); a test pins the depthwise case.
  Element-wise ops (add, mul, softmax, SiLU, GELU, exp, ...) have no handle in fvcore and count zero;
  they are *listed* (op name and how many times it ran) in ``unsupported_ops``, never hidden.

* ``paper``: Latte's public procedure, which the Matten paper's 4008 / 5572 GFLOPs follow:
  ``thop.profile`` on a batch of 3 (3×16×4×32×32) and the returned MACs printed as "FLOPs". thop counts
  only registered module types (Linear, Conv, norms, ...) through forward hooks: the attention matrix
  products (functional ops) and the selective scan (a Function, or a fused CUDA kernel) count zero.

Both protocols run on the *meta* device: the model is built without weights in memory and no
arithmetic is done, so Matten-XL/2 and Latte-XL/2 count in seconds on a CPU. fvcore needs a JIT trace,
and tracing works on meta tensors except for convolution, whose Python meta kernel reads traced sizes;
:func:`_traceable_meta_convolution` fixes that for the duration of a count. A test checks that the meta
count equals a count on real CPU tensors, exactly, on a small model with every op kind.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harness.errors import UserError
from harness.machine import count_params

VAE_DOWNSAMPLE = 8  # SD v1-4 VAE: 256×256 pixels -> 32×32 latents with 4 channels
LATENT_CHANNELS = 4
PAPER_BATCH = 3  # Latte's `thop.profile` call uses a batch of 3

FAMILIES = ("matten", "latte")
SIZES = ("tiny", "s", "b", "l", "xl")

# Categories of the per-module breakdown, in the order they are printed.
CATEGORIES = (
    "attention projections",
    "attention products",
    "MLP",
    "Mamba projections",
    "selective scan",
    "conv1d",
    "modulation",
    "embedder",
    "final layer",
    "norms",
    "other",
)


# --------------------------------------------------------------------------------------------------
# fvcore handles (each returns FMA, fvcore's unit)
# --------------------------------------------------------------------------------------------------


def _shape(value: Any) -> list[int] | None:
    """Shape of a JIT value if it is a tensor with a known shape, else None."""
    t = value.type()
    if not isinstance(t, torch._C.TensorType):
        return None
    sizes = t.sizes()
    return list(sizes) if sizes is not None else None


def sdpa_fma(inputs: list[Any], outputs: list[Any]) -> int:
    """``scaled_dot_product_attention(q, k, v)``: QKᵀ is batch·Lq·Lk·E FMA, AV is batch·Lq·Lk·Ev FMA.

    q (..., Lq, E), k (..., Lk, E), v (..., Lk, Ev); "..." is batch × heads (broadcast). The softmax,
    the scale and the mask are element-wise and not counted (as fvcore does for every element-wise op).
    """
    q, k, v = (_shape(x) for x in inputs[:3])
    batch = math.prod(torch.broadcast_shapes(tuple(q[:-2]), tuple(k[:-2]), tuple(v[:-2])))
    lq, e = q[-2], q[-1]
    lk, ev = k[-2], v[-1]
    return batch * lq * lk * (e + ev)


def matmul_fma(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::matmul`` with broadcasting: every output element is one K-long dot product -> numel(out) · K FMA.

    Replaces fvcore's handle, which multiplies the *first* operand's size by the last dimension and so misses
    the batch when only the second operand is batched (``W (D, R) @ x (B, R, L)``, as Mamba's dt projection is
    sometimes written): a test pins that case.
    """
    k = _shape(inputs[0])[-1]
    return math.prod(_shape(outputs[0])) * k


def selective_scan_fma(batch: int, length: int, channels: int, state: int, *, with_d: bool, with_z: bool) -> int:
    """Work of one selective scan (one direction), in the unit we add to fvcore's FMA total.

    9·B·L·D·N is Albert Gu's count for the scan (state-spaces/mamba issue #110): discretization
    (ΔA, ΔB·u: 3·L·N), the associative scan (2·L combine steps of a multiply and an add: 4·L·N) and the
    read-out C·h (2·L·N), per channel. Gu counts multiplies and adds separately, i.e. FLOP-like units,
    and includes the 2× extra work of a work-efficient *parallel* scan. The community convention
    (VMamba's ``flops_selective_scan_fn``, followed by Vim, LocalMamba and others) adds this number
    unchanged to fvcore's FMA total, plus B·D·L for the D skip (D·u + y) and B·D·L for the z gate
    (y·SiLU(z)). We follow that convention so our numbers compare with published Mamba FLOPs; in
    strict FMA units a sequential recurrence needs about 4·B·L·D·N (ΔA, ΔB·u, h = Āh + B̄u, y = C·h),
    so this count is an upper bound — the report states how much of the total the scan is.
    """
    fma = 9 * batch * length * channels * state
    if with_d:
        fma += batch * channels * length
    if with_z:
        fma += batch * channels * length
    return fma


def scan_handle(inputs: list[Any], outputs: list[Any]) -> int:
    """fvcore handle for a scan Function applied as ``apply(u, delta, A, B, C, D=None, z=None, delta_bias=None, ...)``.

    u is (B, D, L) and A is (D, N) (mamba-ssm's layout; B and C may be grouped, which does not change the work).
    Which optional arguments are tensors is read from the node's calling convention ('d' = traced tensor
    argument, 'c' = a constant such as None), argument by argument.
    """
    batch, channels, length = _shape(inputs[0])
    state = _shape(inputs[2])[-1]
    cconv = outputs[0].node().cconv()  # e.g. "ddddddddc": one letter per positional argument of apply()
    with_d = len(cconv) > 5 and cconv[5] == "d"
    with_z = len(cconv) > 6 and cconv[6] == "d"
    return selective_scan_fma(batch, length, channels, state, with_d=with_d, with_z=with_z)


class CountedSelectiveScan(torch.autograd.Function):
    """The whole ``selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)`` as ONE traced op.

    While counting, the models' ``selective_scan`` is routed through this Function, so the JIT trace holds one
    ``prim::PythonOp.CountedSelectiveScan`` per scan call whatever the backend does inside (our PyTorch backend
    applies D and z outside its own Function; mamba-ssm's kernel fuses them), and :func:`scan_handle` counts it
    the way mamba-ssm's fused kernel works: scan + D skip + z gate. It returns zeros of the right shape and is only
    ever used while counting.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):  # noqa: ANN001
        # Counting needs the output's shape only (the scan's output is (B, D, L) like u), not its values: running
        # the real scan here would loop over all T·H·W steps in Python, minutes for Matten-XL even on meta tensors.
        return torch.zeros_like(u)


def counted_selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):  # noqa: ANN001
    return CountedSelectiveScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


# Scan Functions the handle counts: ours, plus stand-ins that tests register (same argument order).
SCAN_FUNCTIONS: set[str] = {"prim::PythonOp.CountedSelectiveScan"}


def fvcore_handles() -> dict[str, Callable]:
    handles: dict[str, Callable] = {"aten::scaled_dot_product_attention": sdpa_fma, "aten::matmul": matmul_fma}
    for name in SCAN_FUNCTIONS:
        handles[name] = scan_handle
    return handles


# --------------------------------------------------------------------------------------------------
# Counting on the meta device
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _traceable_meta_convolution() -> Iterator[None]:
    """Let ``torch.jit`` trace convolutions on meta tensors (for the duration of the block).

    Why: on meta tensors, aten::convolution's Python meta kernel does arithmetic on sizes, which the JIT
    tracer turns into tensors, and it fails ("cond must be a bool"). Eager CPU convolution goes through
    aten::_convolution, which is what the tracer records and fvcore counts. So we register two Meta kernels
    in a private library that is destroyed on exit: ``convolution`` forwards to ``_convolution`` (so the trace
    records the same node as on CPU), and ``_convolution`` runs torch's own meta kernel with tracing paused.
    """
    import torch._meta_registrations as meta_registrations

    def convolution(x, w, b, stride, padding, dilation, transposed, output_padding, groups):  # noqa: ANN001
        return torch.ops.aten._convolution(
            x, w, b, stride, padding, dilation, transposed, output_padding, groups, False, False, False, False
        )

    def underscore_convolution(*args):  # noqa: ANN002
        state = torch._C._get_tracing_state()
        torch._C._set_tracing_state(None)
        try:
            return meta_registrations.meta__conv(*args)
        finally:
            torch._C._set_tracing_state(state)

    lib = torch.library.Library("aten", "IMPL")
    with _quiet_kernel_override_warning():
        lib.impl("convolution", convolution, "Meta")
        lib.impl("_convolution", underscore_convolution, "Meta")
    try:
        yield
    finally:
        lib._destroy()


@contextlib.contextmanager
def _quiet_kernel_override_warning() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Overriding a previously registered kernel.*")
        yield


def _scan_as_one_op() -> contextlib.AbstractContextManager:
    """Every ``selective_scan`` call of the models goes through :class:`CountedSelectiveScan` inside the block
    (``models.scan.routed_through``: a setting of the scan module, not a rebinding of names in loaded modules)."""
    from models.scan import routed_through

    return routed_through(counted_selective_scan)


@dataclass
class FvcoreCount:
    fma: int  # total FMA (fvcore's unit), handles included
    by_operator: dict[str, int]  # FMA per fvcore operator name (linear, conv, scan, sdpa, ...)
    by_category: dict[str, int]  # FMA per category of CATEGORIES
    by_module: dict[str, int]  # FMA per module (exclusive of its children), leaf modules that did work
    unsupported_ops: dict[str, int]  # operators fvcore counted as zero, with how many times each ran


def fvcore_count(
    model: nn.Module, inputs: tuple, *, classify: Callable[[str, str, str], str] | None = None
) -> FvcoreCount:
    """Run fvcore's FlopCountAnalysis on ``model(*inputs)`` with our handles; works on meta and CPU tensors."""
    from fvcore.nn import FlopCountAnalysis

    classify = classify or classify_op
    model.eval()
    with _traceable_meta_convolution(), _scan_as_one_op(), torch.no_grad():
        analysis = FlopCountAnalysis(model, inputs).set_op_handle(**fvcore_handles())
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        analysis.tracer_warnings("none")
        total = analysis.total()
        per_module_op = analysis.by_module_and_operator()
        unsupported = dict(analysis.unsupported_ops())

    types = {name: type(m).__name__ for name, m in model.named_modules()}
    exclusive = _exclusive_counts(per_module_op, list(types))
    by_category: Counter[str] = Counter({c: 0 for c in CATEGORIES})
    by_module: Counter[str] = Counter()
    by_operator: Counter[str] = Counter()
    for module_name, ops in exclusive.items():
        for op, fma in ops.items():
            if fma == 0:
                continue
            by_category[classify(module_name, types.get(module_name, ""), op)] += fma
            by_module[module_name] += fma
            by_operator[op] += fma
    assert sum(by_category.values()) == total, "per-category counts must add up to fvcore's total"
    return FvcoreCount(int(total), dict(by_operator), dict(by_category), dict(by_module), unsupported)


def _exclusive_counts(per_module_op: dict[str, Counter], module_names: list[str]) -> dict[str, Counter]:
    """fvcore's per-module counts include the children; subtract them so each op is counted once, where it ran."""
    exclusive: dict[str, Counter] = {}
    for name in module_names:
        counts = Counter(per_module_op.get(name, {}))
        prefix = f"{name}." if name else ""
        for child in module_names:
            if child != name and child.startswith(prefix) and "." not in child[len(prefix) :]:
                counts.subtract(per_module_op.get(child, {}))
        exclusive[name] = +counts  # drop zeros
    return exclusive


# Module-name fragments -> category. Rules are tried in this order against every part of the module path
# (so ``t_embedder.mlp`` is an embedder, ``final_layer.adaLN_modulation`` the final layer, and
# ``blocks.3.adaLN_modulation`` modulation); the first rule that matches any part wins.
_NAME_RULES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("final_layer", "final"), "final layer"),
    (("x_embedder", "t_embedder", "y_embedder", "embedder", "patch_embed", "time_embed", "label_embed"), "embedder"),
    (("adaln", "modulation", "madan", "ada_ln"), "modulation"),
    (("mlp", "ffn", "feed_forward"), "MLP"),
    (("in_proj", "out_proj", "x_proj", "dt_proj", "mamba", "mixer", "ssm"), "Mamba projections"),
    (("attn", "attention"), "attention projections"),
)


def classify_op(module_name: str, module_type: str, op: str) -> str:
    """The breakdown category of ``op`` run directly inside ``module_name``.

    ``op`` is fvcore's operator name, which drops the ``aten::``/``prim::`` prefix: ``linear``, ``conv``,
    ``matmul``, ``scaled_dot_product_attention``, ``PythonOp.<Function>`` (the scan), ``layer_norm``, ...
    """
    if op.startswith("PythonOp"):
        return "selective scan"
    if op == "scaled_dot_product_attention":
        return "attention products"
    if op in ("layer_norm", "group_norm", "batch_norm", "instance_norm"):
        return "norms"
    category = _category_from_path(module_name)
    if op == "conv":
        return category if category in ("embedder", "final layer") else "conv1d"
    if op in ("matmul", "bmm", "einsum") and category == "attention projections":
        return "attention products"  # QKᵀ and AV written out as matmuls
    return category or "other"


def _category_from_path(module_name: str) -> str | None:
    parts = [p.lower() for p in module_name.split(".")] if module_name else []
    for fragments, category in _NAME_RULES:
        if any(f in part for part in parts for f in fragments):
            return category
    return None


# --------------------------------------------------------------------------------------------------
# thop: the paper's procedure
# --------------------------------------------------------------------------------------------------


def thop_count(model: nn.Module, inputs: tuple) -> tuple[int, int]:
    """``thop.profile(model, inputs)`` exactly as Latte calls it: returns (MACs, params) as thop reports them.

    Runs on meta tensors too: thop's hooks only read shapes (``y.numel()``, weight shapes).
    """
    import thop

    with contextlib.redirect_stdout(_Null()), _scan_as_one_op(), torch.no_grad():
        macs, params = thop.profile(model, inputs=inputs, verbose=False)
    _remove_thop_buffers(model)
    return int(macs), int(params)


class _Null:
    def write(self, _s: str) -> int:
        return 0

    def flush(self) -> None:
        pass


def _remove_thop_buffers(model: nn.Module) -> None:
    # thop.profile leaves its bookkeeping buffers on every module; take them off so the model stays as built.
    for m in model.modules():
        for key in ("total_ops", "total_params"):
            m._buffers.pop(key, None)


# --------------------------------------------------------------------------------------------------
# Models by name
# --------------------------------------------------------------------------------------------------


def parse_model_name(name: str) -> tuple[str, str]:
    """``matten-xl`` -> ("matten", "xl") through models.registry.ModelSpec (also ``Latte-XL/2``, ``matten-xl-v2``;
    the variant and conditioning a name spells are what :func:`build_on_meta` counts)."""
    from models.registry import ModelSpec

    spec = ModelSpec.parse(name)
    return spec.family, spec.size


def model_spec(model_name: str, variant: int = 3):
    """The model a count counts (models.registry.ModelSpec): the name's family, size, variant and conditioning,
    ``variant`` where the name spells none (Latte has none); a name's variant and another ``variant`` is a
    one-line error."""
    from models.registry import ModelSpec

    family, size, spelled, conditioning = ModelSpec.parse_parts(model_name)
    if family == "latte":
        return ModelSpec(family, size)
    if spelled is not None and variant not in (3, spelled):
        raise UserError(f"{model_name!r} is variant {spelled}, but --variant {variant} was given")
    return ModelSpec(family, size, spelled if spelled is not None else variant, conditioning)


def model_variant(model_name: str, variant: int = 3) -> int:
    """The Matten variant to count: the one a name spells (``matten-xl-v2``), else ``variant`` (:func:`model_spec`)."""
    spec = model_spec(model_name, variant)
    return spec.variant if spec.family == "matten" else variant


def paper_gflops(model_name: str, variant: int = 3) -> float | None:
    """The paper's printed GFLOPs of the named model (Matten-XL/2 variant 3 with M-AdaN, Latte-XL/2), else None."""
    spec = model_spec(model_name, variant)
    if spec.family == "matten" and (spec.variant, spec.conditioning) != (3, "madan"):
        return None
    from harness.baselines import paper_gflops_table  # the paper's Table, from baselines/gflops.csv

    return paper_gflops_table().get(spec.key)


def latent_size(pixel_size: int) -> int:
    if pixel_size <= 0 or pixel_size % VAE_DOWNSAMPLE:
        raise UserError(f"--size {pixel_size} must be a positive multiple of {VAE_DOWNSAMPLE} (the SD VAE's factor)")
    return pixel_size // VAE_DOWNSAMPLE


def build_on_meta(
    model_name: str, *, variant: int = 3, frames: int = 16, size: int = 256, **overrides: Any
) -> nn.Module:
    """Build the named model on the meta device (no weights in memory), unconditional as in Latte's count.

    S-/T-mamba's packed scan rows are turned off: packing (models/mamba.py) computes the same function with one
    separator step per sequence, 1/L more scan work that is the implementation's, not the model's arithmetic."""
    spec = model_spec(model_name, variant)
    with torch.device("meta"):
        model = spec.build(num_frames=frames, input_size=latent_size(size), num_classes=0, **overrides)
    if hasattr(model, "pack_sequences"):
        model.pack_sequences = False
    return model.to("meta")  # buffers made from numpy tables land on the CPU even inside torch.device("meta")


def example_inputs(batch: int, frames: int, latent: int, *, device: str | torch.device = "meta") -> tuple:
    """(x (B, T, C, H, W), t (B,), y=None): the model's forward signature, unconditional."""
    x = torch.zeros(batch, frames, LATENT_CHANNELS, latent, latent, device=device)
    t = torch.zeros(batch, device=device)
    return (x, t, None)


# --------------------------------------------------------------------------------------------------
# The public entry point
# --------------------------------------------------------------------------------------------------

PROTOCOLS = ("fvcore", "paper")


def count_flops(
    model_name: str,
    *,
    protocol: str = "fvcore",
    variant: int = 3,
    batch: int | None = None,
    frames: int = 16,
    size: int = 256,
    model: nn.Module | None = None,
) -> dict[str, Any]:
    """Count one model under one protocol; the record that ``matten-bench flops --json`` prints.

    ``model`` may be passed in (tests do, with small stand-ins); otherwise it is built on the meta device.
    ``batch`` defaults to 1 for fvcore (per sample) and to 3 for the paper's procedure.
    """
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown protocol {protocol!r}; expected one of: {', '.join(PROTOCOLS)}")
    if batch is None:
        batch = 1 if protocol == "fvcore" else PAPER_BATCH
    if batch < 1 or frames < 1:
        raise UserError("--batch and --frames must be at least 1")
    latent = latent_size(size)
    conditioning = "madan"
    if model is None:  # the record says the variant and conditioning counted
        spec = model_spec(model_name, variant)
        variant, conditioning = spec.variant or variant, spec.conditioning
    start = time.perf_counter()
    if model is None:
        model = build_on_meta(model_name, variant=variant, frames=frames, size=size)
    device = next(model.parameters()).device
    inputs = example_inputs(batch, frames, latent, device=device)
    record: dict[str, Any] = {
        "model": model_name,
        "variant": variant,
        "conditioning": conditioning,
        "protocol": protocol,
        "batch": batch,
        "frames": frames,
        "pixel_size": size,
        "latent_size": latent,
        "input_shape": list(inputs[0].shape),
        "params": count_params(model),
        "paper_gflops": paper_gflops(model_name, variant),
    }
    if protocol == "fvcore":
        result = fvcore_count(model, inputs)
        record.update(
            unit="fvcore: 1 FMA (multiply-add) = 1; FLOP = 2 x FMA",
            fma=result.fma,
            flop=2 * result.fma,
            fma_per_sample=result.fma / batch,
            by_category=result.by_category,
            by_operator=result.by_operator,
            by_module=result.by_module,
            unsupported_ops=result.unsupported_ops,
            scan_share=result.by_category.get("selective scan", 0) / result.fma if result.fma else 0.0,
        )
    else:
        macs, thop_params = thop_count(model, inputs)
        record.update(
            unit="thop MACs, printed by Latte's code (and the paper) as 'FLOPs'",
            fma=macs,
            flop=2 * macs,
            printed_gflops=macs / 1e9,
            thop_params=thop_params,
            note="thop counts Linear/Conv/norm modules only: no attention products, no selective scan",
        )
    record["seconds"] = round(time.perf_counter() - start, 2)
    return record


# --------------------------------------------------------------------------------------------------
# The table for the report (`matten-bench run --table flops`)
# --------------------------------------------------------------------------------------------------

TABLE_EXPLANATION = (
    "**How to read this table.** The paper's GFLOPs follow Latte's code: `thop.profile` on a batch of 3 "
    "clips (3×16×4×32×32 latents), with thop's multiply-accumulate count (MACs) printed as \"FLOPs\". "
    "thop only sees `nn.Linear`/`nn.Conv`/norm modules, so it leaves out the attention matrix products "
    "(QKᵀ and AV) and everything inside the selective scan. The *paper procedure* column repeats that "
    "procedure on our models; it is 3 clips' worth of MACs. The *fvcore* columns count one clip: fvcore's "
    "unit is one fused multiply-add (FMA = MAC); FLOP = 2 × FMA. They include the attention products and "
    "the selective scan (9·B·L·D·N + 2·B·D·L per direction, VMamba's convention), and still leave out "
    "element-wise ops (softmax, activations, residual adds), which are listed by `matten-bench flops`. "
    "Divide the paper column by 3 to compare it with fvcore's per-clip FMA."
)


def flops_table(records: list[dict[str, Any]]) -> Any:
    """Both protocols side by side, one row per model: a pandas DataFrame.

    ``records`` are :func:`count_flops` results (any mix of protocols); rows are grouped by model.
    """
    import pandas as pd

    rows: dict[str, dict[str, Any]] = {}
    for r in records:
        key = r["model"]
        row = rows.setdefault(
            key,
            {
                "model": key,
                "params (M)": round(r["params"] / 1e6, 2),
                "paper GFLOPs (as printed)": r.get("paper_gflops"),
            },
        )
        if r["protocol"] == "paper":
            row["paper procedure: thop GMACs, batch 3"] = round(r["fma"] / 1e9, 3)
        else:
            per_sample = r["fma"] / r["batch"]
            row["fvcore GFMA / clip"] = round(per_sample / 1e9, 3)
            row["fvcore GFLOP / clip (2×FMA)"] = round(2 * per_sample / 1e9, 3)
            for part in ("attention products", "selective scan"):
                row[f"of which {part} (GFMA)"] = round(r["by_category"][part] / r["batch"] / 1e9, 3)
    columns = [
        "model",
        "params (M)",
        "paper GFLOPs (as printed)",
        "paper procedure: thop GMACs, batch 3",
        "fvcore GFMA / clip",
        "fvcore GFLOP / clip (2×FMA)",
        "of which attention products (GFMA)",
        "of which selective scan (GFMA)",
    ]
    return pd.DataFrame(list(rows.values())).reindex(columns=columns)


def flops_table_markdown(records: list[dict[str, Any]]) -> str:
    """The table as Markdown, with the plain-language explanation under it."""
    df = flops_table(records)
    return df.to_markdown(index=False) + "\n\n" + TABLE_EXPLANATION + "\n"


def breakdown_rows(record: dict[str, Any]) -> list[tuple[str, int]]:
    """(category, FMA) in print order, for the CLI's table."""
    return [(c, record["by_category"].get(c, 0)) for c in CATEGORIES]


# --------------------------------------------------------------------------------------------------
# results/flops.md, regenerated from the counts (`matten-bench flops --report PATH`)
# --------------------------------------------------------------------------------------------------

THOP_SEES = (
    "thop counts a module only when the module is *called*: its hooks sit on `nn.Linear`, `nn.Conv*` and the norms. "
    "A projection computed as a matrix product on a module's weight (`torch.matmul(self.in_proj.weight, h)`) does "
    "the same arithmetic, and thop does not see it. Our bidirectional Mamba computes `in_proj`, `x_proj` and "
    "`dt_proj` that way (the fused one-call scan layout, commit 536794f), and still calls `out_proj`, its "
    "LayerNorm and the M-AdaN Linear as modules. So the paper-procedure count of our Matten moves with how the "
    "code calls its projections, not with the work: before 536794f, when `in_proj` was called as a module, the "
    "same model counted 6,943.085 G. That is one more reason the harness reports fvcore's count, which follows "
    "the operators, beside the paper's."
)

SCAN_UNIT = (
    "The scan is counted as 9·B·L·D·N + B·D·L (D skip) + B·D·L (z gate) per direction (state-spaces/mamba issue "
    "#110; VMamba's `flops_selective_scan_fn`), added to fvcore's FMA total as VMamba and the Mamba-vision papers "
    "do. Gu's 9·L·N counts multiplies and adds separately and includes the 2× work of a parallel scan, so in strict "
    "FMA units it is an upper bound: a sequential recurrence needs about 4·B·L·D·N."
)

HOW_COUNTED = (
    "Both counts run on the **meta device**: no weights are allocated and no arithmetic is done. fvcore needs a "
    "JIT trace; for the duration of a count `harness.flops` registers two Meta kernels so that "
    "`aten::convolution` traces as the `aten::_convolution` node a CPU run records. Tests hold the meta count "
    "equal to a count on real CPU tensors, and the per-category counts of small Latte and Matten configurations "
    "equal the analytic formulas (self-attention 4JD² + 2J²D, FFN 8JD², the Mamba projections, conv and scan)."
)


def flops_report(records: list[dict[str, Any]], command: str) -> str:
    """``results/flops.md`` from :func:`count_flops` records of Latte-XL and Matten-XL under both protocols: the
    table, what it shows (every number computed here from the records), how thop's count depends on how code
    calls its projections, the scan's unit and how the counts are made."""
    import datetime

    from harness.baselines import paper_gflops_table
    from harness.machine import machine_description

    printed = paper_gflops_table()  # the paper's GFLOPs as printed (baselines/gflops.csv)
    matten_xl, latte_xl = printed["matten-xl-v3-madan"], printed["latte-xl"]
    m_printed, l_printed = f"{matten_xl:.0f}", f"{latte_xl:.0f}"
    by = {(r["model"], r["protocol"]): r for r in records}
    latte_paper, matten_paper = by[("latte-xl", "paper")]["fma"] / 1e9, by[("matten-xl", "paper")]["fma"] / 1e9
    matten_fv = by[("matten-xl", "fvcore")]
    per_clip = {m: by[(m, "fvcore")]["fma"] / by[(m, "fvcore")]["batch"] / 1e9 for m in ("latte-xl", "matten-xl")}
    scan = matten_fv["by_category"].get("selective scan", 0) / matten_fv["batch"] / 1e9
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    versions = ", ".join(f"{k} {_version(k)}" for k in ("torch", "fvcore", "thop"))
    lines = [
        "# FLOPs: Matten-XL/2 and Latte-XL/2, under two protocols", "",
        f"Generated {date} by `{command}` on {machine_description('cpu')}; {versions}. Every number below comes "
        "from the counts of that run; the JSON records are in `results/flops/`.", "",
        "Input: 16 frames at 256×256 pixels → 16×4×32×32 SD-VAE latents (the VAE downsamples by 8), patch 2, "
        "unconditional (as Latte's count), learned sigma (8 output channels).", "",
        flops_table_markdown(records),
        "## What this shows", "",
        f"- **Latte: the paper's {l_printed} is reproduced**: {latte_paper:,.3f} G by Latte's procedure (thop MACs, "
        f"batch 3), {100 * (latte_paper / latte_xl - 1):+.2f} % from the printed number; per clip "
        f"{latte_paper / 3:,.1f} G MACs "
        f"against fvcore's {per_clip['latte-xl']:,.2f} GFMA (the difference: the attention products thop does not "
        "see, and norms counted differently).",
        f"- **Matten: {matten_paper:,.3f} G by the same procedure on our reconstruction, not {m_printed}.** It is "
        f"{matten_paper - latte_paper:,.3f} G above Latte-XL/2's {latte_paper:,.3f} G: what thop sees of the 14 Mamba "
        f"blocks. A Matten-XL that keeps Latte-XL's 28 attention blocks already counts Latte's {l_printed} G this way "
        f"before any Mamba work, so {m_printed} cannot come from the described architecture counted this way; the "
        "paper does not say how it was counted, and we do not claim to reproduce it.",
        f"- **Per clip, honestly (fvcore):** Matten-XL/2 costs {per_clip['matten-xl']:,.2f} GFMA "
        f"({2 * per_clip['matten-xl'] / 1e3:,.2f} TFLOP), {per_clip['matten-xl'] / per_clip['latte-xl']:.2f}× "
        f"Latte-XL/2's {per_clip['latte-xl']:,.2f}, not the {matten_xl / latte_xl:.2f}× that "
        f"{m_printed}/{l_printed} suggests; the selective scan is "
        f"{scan:,.2f} GFMA of it ({100 * scan / per_clip['matten-xl']:.1f} %).", "",
        "## Why the paper's procedure moves with the code", "", THOP_SEES, "",
        "## The selective scan's unit", "", SCAN_UNIT, "",
        "## How it is counted", "", HOW_COUNTED, "",
    ]
    return "\n".join(lines)


def _version(package: str) -> str:
    import importlib.metadata as md

    try:
        return md.version(package)
    except md.PackageNotFoundError:
        return "not installed"
