"""Selective scan (Mamba's S6 recurrence) with mamba-ssm's signature and three backends.

    selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False)

    u, delta : (batch, d, L)            A : (d, N), real
    B, C     : (batch, N, L) or (batch, G, N, L)   (G groups; channel block g·d/G ... uses group g)
    D        : (d,)   z : (batch, d, L)   delta_bias : (d,)
    returns  : (batch, d, L) in u's dtype

    delta  <- softplus(delta + delta_bias)            (each optional)
    h_t     = exp(delta_t A) h_{t-1} + delta_t B_t u_t  (h: (batch, d, N), h_0 = 0)
    y_t     = <h_t, C_t> + D u_t,   out = y * silu(z)

Backends:
  cuda       mamba_ssm.ops.selective_scan_interface.selective_scan_fn (GPU; mamba-ssm installed)
  torch      ours: a custom autograd Function with its own backward scan, chunked along L so memory
             stays O(chunk); fast on CPU and differentiable. The CPU default.
  reference  a plain sequential loop, written the way mamba-ssm's `selective_scan_ref` is: what
             mamba's authors point CPU users to. Slow (autograd records every step); for tests and as
             the benchmark's anchor.
  triton     ours in Triton (models.scan_triton): chunked associative scans, a deterministic backward.
             Needs triton and CUDA tensors (CPU tensors under TRITON_INTERPRET=1, for tests). Not measured
             on a GPU yet, so only chosen by name.

`set_backend("auto")` (the default) uses `cuda` for CUDA tensors when mamba_ssm imports, else `torch`.
Nothing falls back silently: the backend is logged once the first time it is used, and
`backend_in_use()` returns it so training runs can record it.
"""

from __future__ import annotations

import contextlib
import logging

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

from models.errors import ModelConfigError

log = logging.getLogger("models.scan")  # the harness shows the models' INFO lines on its console

BACKENDS = ("auto", "cuda", "torch", "reference", "triton")
_backend = "auto"
_last_used: str | None = None
_logged: set[str] = set()
_cuda_fn = None  # mamba_ssm's selective_scan_fn once imported
_cuda_import_error: str | None = None


def _import_cuda_kernel():
    """mamba_ssm's kernel, or None (the import error is kept for the log line)."""
    global _cuda_fn, _cuda_import_error
    if _cuda_fn is None and _cuda_import_error is None:
        try:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

            _cuda_fn = selective_scan_fn
        except Exception as e:  # ImportError, or an OSError from a wheel built for another torch/CUDA
            _cuda_import_error = f"{type(e).__name__}: {e}"
    return _cuda_fn


def cuda_available() -> bool:
    return torch.cuda.is_available() and _import_cuda_kernel() is not None


def triton_available() -> bool:
    """Whether the `triton` backend can run here: triton imports (the GPU's check is the caller's)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def triton_kernel():
    """models.scan_triton.selective_scan_triton where triton imports, else None (the GPU's check is the caller's)."""
    if not triton_available():
        return None
    from models.scan_triton import selective_scan_triton

    return selective_scan_triton


def set_backend(name: str) -> None:
    """Choose the backend for every later call: 'auto' | 'cuda' | 'torch' | 'reference' | 'triton'.

    Raises ModelConfigError for an unknown name, 'cuda' without mamba-ssm, or 'triton' without triton."""
    global _backend
    if name not in BACKENDS:
        raise ModelConfigError(f"unknown selective-scan backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "cuda" and _import_cuda_kernel() is None:
        raise ModelConfigError(
            f"selective-scan backend 'cuda' needs mamba-ssm ({_cuda_import_error}); pip install mamba-ssm"
        )
    if name == "triton" and not triton_available():
        raise ModelConfigError("selective-scan backend 'triton' needs triton, which does not import: pip install "
                               "triton")
    _backend = name


def get_backend() -> str:
    """The configured backend ('auto' unless set_backend changed it)."""
    return _backend


def resolve_backend(device: torch.device | str) -> str:
    """The backend a call on `device` uses under the current setting."""
    device = torch.device(device)
    if _backend != "auto":
        return _backend
    if device.type == "cuda" and _import_cuda_kernel() is not None:
        return "cuda"
    return "torch"


def backend_in_use() -> str:
    """The backend of the last call (or, before any call, the one a call on the default device would use)."""
    if _last_used is not None:
        return _last_used
    return resolve_backend("cuda" if torch.cuda.is_available() else "cpu")


def _note_use(name: str, device: torch.device) -> None:
    global _last_used
    if device.type == "meta":  # shape-only passes (FLOP counts, the memory preflight) run no backend
        return
    _last_used = name
    if name not in _logged:
        _logged.add(name)
        why = ""
        if name == "torch" and device.type == "cuda":
            why = f" (CUDA tensors, but mamba_ssm is not importable: {_cuda_import_error})" if _cuda_import_error \
                else " (set explicitly)"
        log.info("selective scan backend: %s on %s%s", name, device.type, why)


_routed_to = None  # a function with selective_scan's signature that takes every call (routed_through)


@contextlib.contextmanager
def routed_through(fn):
    """Send every ``selective_scan`` call inside the block to ``fn`` (same signature), e.g. one op a FLOP counter
    can see (harness.flops); the previous routing is back afterwards. Callers never rebind names in modules."""
    global _routed_to
    before, _routed_to = _routed_to, fn
    try:
        yield
    finally:
        _routed_to = before


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Mamba's selective scan; see the module docstring for shapes. Dispatches to the chosen backend (or to the
    function of an enclosing ``routed_through``)."""
    if _routed_to is not None:
        return _routed_to(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    name = resolve_backend(u.device)
    _note_use(name, u.device)
    if name == "cuda":
        if u.device.type != "cuda":
            raise ValueError("selective-scan backend 'cuda' needs CUDA tensors; use set_backend('torch') on CPU")
        return _cuda_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    if name == "reference":
        return selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    if name == "triton":
        import os

        if u.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            raise ValueError("selective-scan backend 'triton' needs CUDA tensors (or TRITON_INTERPRET=1, Triton's "
                             "interpreter); use set_backend('torch') on CPU")
        from models.scan_triton import selective_scan_triton

        return selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def _check_shapes(u, A, B, C) -> None:
    if A.is_complex():
        raise NotImplementedError("complex A is not supported (Matten uses real A, as Mamba does for real inputs)")
    if B.dim() not in (3, 4) or C.dim() not in (3, 4):
        raise NotImplementedError("only input-dependent B and C, shaped (batch, N, L) or (batch, G, N, L)")
    for M in (B, C):
        if M.dim() == 4 and u.shape[1] % M.shape[1]:
            raise ValueError(f"d={u.shape[1]} channels cannot be split into {M.shape[1]} groups")


# ---------------------------------------------------------------------------------------------
# reference: the sequential loop (as mamba-ssm's selective_scan_ref computes it)
# ---------------------------------------------------------------------------------------------


def selective_scan_reference(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    _check_shapes(u, A, B, C)
    dtype_in = u.dtype
    u, delta, B, C = u.float(), delta.float(), B.float(), C.float()
    if delta_bias is not None:
        delta = delta + delta_bias[..., None].float()
    if delta_softplus:
        delta = F.softplus(delta)
    batch, d, L = u.shape
    if B.dim() == 4:
        B = repeat(B, "b g n l -> b (g h) n l", h=d // B.shape[1])
    if C.dim() == 4:
        C = repeat(C, "b g n l -> b (g h) n l", h=d // C.shape[1])
    deltaA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    if B.dim() == 3:
        deltaB_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    else:
        deltaB_u = torch.einsum("bdl,bdnl,bdl->bdln", delta, B, u)
    h = A.new_zeros((batch, d, A.shape[1]))
    ys = []
    for i in range(L):
        h = deltaA[:, :, i] * h + deltaB_u[:, :, i]
        if C.dim() == 3:
            ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, i]))
        else:
            ys.append(torch.einsum("bdn,bdn->bd", h, C[:, :, :, i]))
    y = torch.stack(ys, dim=2)  # (batch, d, L)
    out = y if D is None else y + u * D[:, None]
    if z is not None:
        out = out * F.silu(z)
    return out.to(dtype_in)


# ---------------------------------------------------------------------------------------------
# torch: a custom autograd Function, chunked along L
# ---------------------------------------------------------------------------------------------
#
# Layout inside the Function: time first, channels split into groups, so one step is a contiguous slab:
#   u, delta: (L, b, G, H)   B, C: (L, b, G, N)   A: (G, H, N)   h: (b, G, H, N)   (d = G·H)
# Forward, per chunk of T steps: dA = exp(delta A) and the input term delta·B·u are (T, b, G, H, N);
# one fused multiply-add per step runs the recurrence in place; y = h @ C is a batched matmul.
# Only u, delta, A, B, C and the state at each chunk boundary are saved. Backward walks the chunks
# last to first: it recomputes the chunk's states from the saved boundary state, runs the adjoint
# recurrence  g_t = C_t dy_t + dA_{t+1} g_{t+1}  (g = dLoss/dh_t), and reduces with matmuls/einsums.
# Why not autograd through a loop (the reference): autograd keeps a graph node per step, and each
# step's backward of `deltaA[:, :, i]` materialises a full-size zero tensor — quadratic in L.

CHUNK = 128


def _chunk_inputs(delta, u, A, B, s, e):
    """dA = exp(delta A) and the input term delta·B·u for steps s..e-1, each (T, b, G, H, N)."""
    dt = delta[s:e]  # (T, b, G, H)
    dA = torch.exp(dt[..., None] * A)  # (T, b, G, H, N)
    dBu = (dt * u[s:e])[..., None] * B[s:e, :, :, None, :]  # (T, b, G, H, N)
    return dA, dBu


def _run_states(dA, dBu, h):
    """In place: dBu[t] <- h_t = dA[t] h_{t-1} + dBu[t], starting from h = h_{s-1}. Returns the states."""
    for t in range(dA.shape[0]):
        h = dBu[t].addcmul_(dA[t], h)
    return dBu


def _no_autocast(device: torch.device):
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()  # e.g. the meta device (shape checks), where autocast does not exist


class _SelectiveScanCore(torch.autograd.Function):
    """y_t = <h_t, C_t>, h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t, in the time-first layout."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C):
        with _no_autocast(u.device):  # fp32 throughout, even inside an autocast region
            return _SelectiveScanCore._forward(ctx, u, delta, A, B, C)

    @staticmethod
    def backward(ctx, dy):
        with _no_autocast(dy.device):
            return _SelectiveScanCore._backward(ctx, dy.float())

    @staticmethod
    def _forward(ctx, u, delta, A, B, C):
        L, b, G, H = u.shape
        N = A.shape[-1]
        h = u.new_zeros(b, G, H, N)
        boundaries = []  # h_{s-1} for each chunk start s
        ys = []
        for s in range(0, L, CHUNK):
            e = min(s + CHUNK, L)
            boundaries.append(h)
            dA, dBu = _chunk_inputs(delta, u, A, B, s, e)
            hs = _run_states(dA, dBu, h)
            h = hs[-1].clone()
            ys.append(torch.matmul(hs, C[s:e, :, :, :, None]).squeeze(-1))  # (T, b, G, H)
        ctx.save_for_backward(u, delta, A, B, C, torch.stack(boundaries))
        return torch.cat(ys)

    @staticmethod
    def _backward(ctx, dy):
        u, delta, A, B, C, boundaries = ctx.saved_tensors
        L = u.shape[0]
        dy = dy.contiguous()
        du, ddelta = torch.empty_like(u), torch.empty_like(delta)
        dB, dC = torch.empty_like(B), torch.empty_like(C)
        dA_total = torch.zeros_like(A)
        carry = None  # dA_{e} g_{e}: the adjoint flowing into the last step of the chunk before
        starts = list(range(0, L, CHUNK))
        for k in reversed(range(len(starts))):
            s = starts[k]
            e = min(s + CHUNK, L)
            dA, hs = _chunk_inputs(delta, u, A, B, s, e)
            hs = _run_states(dA, hs, boundaries[k])  # h_t for t in s..e-1
            dy_c = dy[s:e]  # (T, b, G, H)
            # g_t = C_t dy_t + dA_{t+1} g_{t+1}, run backwards in place
            g = dy_c[..., None] * C[s:e, :, :, None, :]  # (T, b, G, H, N)
            if carry is not None:
                g[-1] += carry
            for t in range(e - s - 2, -1, -1):
                g[t].addcmul_(dA[t + 1], g[t + 1])
            carry = dA[0] * g[0]
            # y = <h, C>:  dC_t = sum_H dy_t h_t
            dC[s:e] = torch.matmul(dy_c[..., None, :], hs).squeeze(-2)  # (T, b, G, N)
            # h_t gets delta_t B_t u_t:  d(delta u) = <g_t, B_t>,  dB_t = sum_H g_t delta_t u_t
            dtu = delta[s:e] * u[s:e]
            g_B = torch.matmul(g, B[s:e, :, :, :, None]).squeeze(-1)  # (T, b, G, H)
            dB[s:e] = torch.matmul(dtu[..., None, :], g).squeeze(-2)  # (T, b, G, N)
            du[s:e] = g_B * delta[s:e]
            ddelta[s:e] = g_B * u[s:e]
            # h_t gets exp(delta_t A) h_{t-1}:  X = g_t h_{t-1} dA_t = dLoss/d(delta_t A)
            X = dA.mul_(g)
            X[1:].mul_(hs[:-1])
            X[0].mul_(boundaries[k])
            ddelta[s:e] += (X * A).sum(-1)
            # dA = sum over (t, b) of X·delta, as one batched matmul over channels: (G, H, 1, T·b) @ (G, H, T·b, N)
            dA_total += torch.matmul(
                rearrange(delta[s:e], "t b g h -> g h 1 (t b)"), rearrange(X, "t b g h n -> g h (t b) n")
            ).view(A.shape)
        return du, ddelta, dA_total, dB, dC


def selective_scan_torch(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    _check_shapes(u, A, B, C)
    dtype_in = u.dtype
    u, delta = u.float(), delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias[..., None].float()
    if delta_softplus:
        delta = F.softplus(delta)
    batch, d, L = u.shape
    G = B.shape[1] if B.dim() == 4 else 1
    if C.dim() == 4 and C.shape[1] != G:  # B and C grouped differently: bring both to per-channel groups
        G = d
    Bg = _grouped(B.float(), G, d)  # (L, b, G, N)
    Cg = _grouped(C.float(), G, d)
    y = _SelectiveScanCore.apply(
        rearrange(u, "b (g h) l -> l b g h", g=G).contiguous(),
        rearrange(delta, "b (g h) l -> l b g h", g=G).contiguous(),
        rearrange(A.float(), "(g h) n -> g h n", g=G).contiguous(),
        Bg,
        Cg,
    )
    y = rearrange(y, "l b g h -> b (g h) l")
    out = y if D is None else y + u * D[:, None].float()
    if z is not None:
        out = out * F.silu(z.float())
    return out.to(dtype_in)


def _grouped(M, G, d):
    """(b, N, L) or (b, g, N, L) -> (L, b, G, N), repeating groups when G is finer than M's."""
    if M.dim() == 3:
        M = M[:, None]
    if M.shape[1] != G:
        M = repeat(M, "b g n l -> b (g r) n l", r=G // M.shape[1])
    return rearrange(M, "b g n l -> l b g n").contiguous()
