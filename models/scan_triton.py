"""Selective scan in Triton (forward and backward), mamba-ssm's signature: the `triton` backend of models.scan.

Status: correct against the `reference` backend on every output and gradient (tests/test_models_scan_triton.py,
through Triton's interpreter on the CPU). Slower than mamba-ssm's kernel on an H200 at Matten-XL/2's scan shape
(results/benchmarks.md, history, 2026-11-30 eighth session, every chunk 16-128 and block 1-8: at best forward
5.92 ms against 1.76, forward + backward 28.2 ms against 9.19), so `auto` never picks it (`set_backend("triton")`
does). Shapes as models.scan: u, delta, z
(batch, d, L); A (d, N); B, C (batch, N, L) or (batch, G, N, L); D, delta_bias (d,). N and the chunk K must be
powers of two (tl.arange).

Each program scans one batch row and BD channels (all in one B/C group) over the whole sequence, K steps at a
time: the K steps' recurrences h_t = a_t h_{t-1} + b_t (a = exp(delta A), b = delta B u) are composed with a
parallel associative scan inside the chunk, and the state carried from chunk to chunk in registers. The forward
keeps only each chunk's starting state (fp32, (batch, d, N, L/K)); the backward recomputes the states inside a
chunk from it, runs the adjoint recurrence g_t = dy_t C_t + a_{t+1} g_{t+1} with a reverse associative scan, and
writes per-program partial sums for the gradients that several programs share (dB, dC, dA, dD, ddelta_bias),
summed afterwards in a fixed order: the backward is deterministic, unlike mamba-ssm's atomic adds.
Inputs in fp32, bf16 or fp16; arithmetic in fp32. The function is mamba-ssm's `selective_scan_ref` (models.scan's
`reference`); the backward is its adjoint, written out here (dh_t = g_t; da_t = g_t h_{t-1}; db_t = g_t).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _compose(a1, b1, a2, b2):
    # (x -> a1 x + b1) then (x -> a2 x + b2): the forward recurrence, earliest step on the left
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _softplus(x):
    # log(1 + e^x) as torch's softplus (threshold 20), with log1p's accuracy for small e^x: log(w) e / (w - 1) with
    # w = 1 + e stays accurate where w rounds (Goldberg, "What every computer scientist should know about
    # floating-point arithmetic", 1991, theorem 4); log(1 + e) alone loses e's digits below fp32's 1e-7, and Mamba's
    # dt_bias starts near -7
    e = tl.exp(tl.minimum(x, 20.0))
    w = 1.0 + e
    return tl.where(x > 20.0, x, tl.where(w == 1.0, e, tl.log(w) * e / (w - 1.0)))


@triton.jit
def _fwd_kernel(U, DELTA, A, B, C, D, Z, BIAS, OUT, HS,
                dim, L, n_chunks, d_per_group, groups,
                HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                N: tl.constexpr, BD: tl.constexpr, K: tl.constexpr):
    bi = tl.program_id(0).to(tl.int64)  # 64-bit offsets: the partial sums of a large batch pass 2^31 elements
    blk = tl.program_id(1).to(tl.int64)
    offs_d = blk * BD + tl.arange(0, BD)  # (BD,)
    offs_n = tl.arange(0, N)
    offs_k = tl.arange(0, K)
    g = (blk * BD) // d_per_group
    row = (bi * dim + offs_d)[:, None] * L  # (BD, 1)
    bc = ((bi * groups + g) * N + offs_n)[:, None] * L  # (N, 1)
    A_dn = tl.load(A + offs_d[:, None] * N + offs_n[None, :])  # (BD, N): A (negative, -exp(A_log))
    dd = tl.load(D + offs_d) if HAS_D else tl.zeros((BD,), tl.float32)
    bias = tl.load(BIAS + offs_d) if HAS_BIAS else tl.zeros((BD,), tl.float32)
    h = tl.zeros((BD, N), tl.float32)
    for c in range(0, n_chunks):
        t = c * K + offs_k  # (K,)
        m = t < L
        tl.store(HS + ((bi * dim + offs_d)[:, None] * N + offs_n[None, :]) * n_chunks + c, h)
        u = tl.load(U + row + t[None, :], mask=m[None, :], other=0.0).to(tl.float32)  # (BD, K)
        dl = tl.load(DELTA + row + t[None, :], mask=m[None, :], other=0.0).to(tl.float32) + bias[:, None]
        dt = _softplus(dl) if SOFTPLUS else dl
        bt = tl.load(B + bc + t[None, :], mask=m[None, :], other=0.0).to(tl.float32)  # (N, K)
        ct = tl.load(C + bc + t[None, :], mask=m[None, :], other=0.0).to(tl.float32)
        a = tl.exp(dt[:, None, :] * A_dn[:, :, None])  # (BD, N, K)
        b = (dt * u)[:, None, :] * bt[None, :, :]
        a = tl.where(m[None, None, :], a, 1.0)
        b = tl.where(m[None, None, :], b, 0.0)
        aa, hh = tl.associative_scan((a, b), 2, _compose)
        h_all = hh + aa * h[:, :, None]  # (BD, N, K): h_t for the chunk's steps
        y = tl.sum(h_all * ct[None, :, :], axis=1) + dd[:, None] * u  # (BD, K)
        if HAS_Z:
            z = tl.load(Z + row + t[None, :], mask=m[None, :], other=0.0).to(tl.float32)
            y = y * z * tl.sigmoid(z)
        tl.store(OUT + row + t[None, :], y.to(OUT.dtype.element_ty), mask=m[None, :])
        last = tl.minimum(K, L - c * K) - 1
        h = tl.sum(tl.where((offs_k == last)[None, None, :], h_all, 0.0), axis=2)  # the state after the chunk


@triton.jit
def _bwd_kernel(U, DELTA, A, B, C, D, Z, BIAS, DOUT, HS,
                DU, DDELTA, DZ, DB_P, DC_P, DA_P, DD_P, DBIAS_P,
                dim, L, n_chunks, d_per_group, groups, n_blocks,
                HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                N: tl.constexpr, BD: tl.constexpr, K: tl.constexpr):
    bi = tl.program_id(0).to(tl.int64)  # 64-bit offsets: the partial sums of a large batch pass 2^31 elements
    blk = tl.program_id(1).to(tl.int64)
    offs_d = blk * BD + tl.arange(0, BD)
    offs_n = tl.arange(0, N)
    offs_k = tl.arange(0, K)
    g = (blk * BD) // d_per_group
    row = (bi * dim + offs_d)[:, None] * L
    bc = ((bi * groups + g) * N + offs_n)[:, None] * L
    A_dn = tl.load(A + offs_d[:, None] * N + offs_n[None, :])
    dd = tl.load(D + offs_d) if HAS_D else tl.zeros((BD,), tl.float32)
    bias = tl.load(BIAS + offs_d) if HAS_BIAS else tl.zeros((BD,), tl.float32)
    g_next = tl.zeros((BD, N), tl.float32)  # g at the first step of the chunk after this one
    da_acc = tl.zeros((BD, N), tl.float32)
    dd_acc = tl.zeros((BD,), tl.float32)
    dbias_acc = tl.zeros((BD,), tl.float32)
    part = (bi * n_blocks + blk) * N  # this program's rows of the dB / dC partial sums
    for cc in range(0, n_chunks):
        c = n_chunks - 1 - cc
        t = c * K + offs_k
        m = t < L
        h0 = tl.load(HS + ((bi * dim + offs_d)[:, None] * N + offs_n[None, :]) * n_chunks + c)  # (BD, N)
        u = tl.load(U + row + t[None, :], mask=m[None, :], other=0.0).to(tl.float32)
        dl = tl.load(DELTA + row + t[None, :], mask=m[None, :], other=0.0).to(tl.float32) + bias[:, None]
        dt = _softplus(dl) if SOFTPLUS else dl
        bt = tl.load(B + bc + t[None, :], mask=m[None, :], other=0.0).to(tl.float32)
        ct = tl.load(C + bc + t[None, :], mask=m[None, :], other=0.0).to(tl.float32)
        a = tl.where(m[None, None, :], tl.exp(dt[:, None, :] * A_dn[:, :, None]), 1.0)  # past L: no inf, no NaN
        bu = (dt * u)[:, None, :] * bt[None, :, :]
        # h_{t-1} for each step: the same scan over the steps before it (inputs read one step earlier)
        tp = t - 1
        mp = m & (tp >= c * K)
        up = tl.load(U + row + tp[None, :], mask=mp[None, :], other=0.0).to(tl.float32)
        dlp = tl.load(DELTA + row + tp[None, :], mask=mp[None, :], other=0.0).to(tl.float32) + bias[:, None]
        dtp = _softplus(dlp) if SOFTPLUS else dlp
        btp = tl.load(B + bc + tp[None, :], mask=mp[None, :], other=0.0).to(tl.float32)
        ap = tl.where(mp[None, None, :], tl.exp(dtp[:, None, :] * A_dn[:, :, None]), 1.0)
        bp = tl.where(mp[None, None, :], (dtp * up)[:, None, :] * btp[None, :, :], 0.0)
        aa, hh = tl.associative_scan((ap, bp), 2, _compose)
        h_prev = hh + aa * h0[:, :, None]  # (BD, N, K)
        h_cur = a * h_prev + bu
        y = tl.sum(h_cur * ct[None, :, :], axis=1) + dd[:, None] * u
        dout = tl.load(DOUT + row + t[None, :], mask=m[None, :], other=0.0).to(tl.float32)
        if HAS_Z:
            z = tl.load(Z + row + t[None, :], mask=m[None, :], other=0.0).to(tl.float32)
            sz = tl.sigmoid(z)
            dy = dout * z * sz
            dz = dout * y * sz * (1.0 + z * (1.0 - sz))
            tl.store(DZ + row + t[None, :], dz.to(DZ.dtype.element_ty), mask=m[None, :])
        else:
            dy = dout
        dy = tl.where(m[None, :], dy, 0.0)
        # the adjoint g_t = dy_t C_t + a_{t+1} g_{t+1}: a_{t+1} read one step later (0 past the end)
        tn = t + 1
        mn = tn < L
        dln = tl.load(DELTA + row + tn[None, :], mask=mn[None, :], other=0.0).to(tl.float32) + bias[:, None]
        dtn = _softplus(dln) if SOFTPLUS else dln
        an = tl.where(mn[None, None, :], tl.exp(dtn[:, None, :] * A_dn[:, :, None]), 0.0)
        cterm = dy[:, None, :] * ct[None, :, :]
        # reverse=True scans from the last step with the same combine as a flipped forward scan (the composition
        # runs from the right): gb_t = sum_s>=t cterm_s prod_{t<=r<s} an_r, ga_t = prod_{r>=t} an_r
        ga, gb = tl.associative_scan((an, cterm), 2, _compose, reverse=True)
        gg = gb + ga * g_next[:, :, None]  # (BD, N, K)
        gg = tl.where(m[None, None, :], gg, 0.0)
        # gradients
        dd_acc += tl.sum(dy * u, axis=1)
        du = dy * dd[:, None] + tl.sum(gg * bt[None, :, :], axis=1) * dt
        da = gg * h_prev * a  # d(loss)/d(a) · a
        ddt = tl.sum(da * A_dn[:, :, None], axis=1) + tl.sum(gg * bt[None, :, :], axis=1) * u
        da_acc += tl.sum(da * dt[:, None, :], axis=2)
        if SOFTPLUS:
            ddl = ddt * tl.where(dl > 20.0, 1.0, tl.sigmoid(dl))
        else:
            ddl = ddt
        ddl = tl.where(m[None, :], ddl, 0.0)
        dbias_acc += tl.sum(ddl, axis=1)
        tl.store(DU + row + t[None, :], du.to(DU.dtype.element_ty), mask=m[None, :])
        tl.store(DDELTA + row + t[None, :], ddl.to(DDELTA.dtype.element_ty), mask=m[None, :])
        db = tl.sum(gg * (dt * u)[:, None, :], axis=0)  # (N, K), this program's channels
        dc = tl.sum(dy[:, None, :] * h_cur, axis=0)
        tl.store(DB_P + (part + offs_n)[:, None] * L + t[None, :], db, mask=m[None, :])
        tl.store(DC_P + (part + offs_n)[:, None] * L + t[None, :], dc, mask=m[None, :])
        g_next = tl.sum(tl.where((offs_k == 0)[None, None, :], gg, 0.0), axis=2)
    tl.store(DA_P + (bi * dim + offs_d)[:, None] * N + offs_n[None, :], da_acc)
    tl.store(DD_P + bi * dim + offs_d, dd_acc)
    tl.store(DBIAS_P + bi * dim + offs_d, dbias_acc)


def _block(d_per_group: int, limit: int = 4) -> int:  # 4 channels x N 16 x K 32: 2,048 fp32 values a tile
    """The largest power of two <= limit dividing the channels of a group (a program stays in one group)."""
    bd = limit
    while d_per_group % bd:
        bd //= 2
    return bd


class _Scan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk, block):
        batch, dim, L = u.shape
        grouped = B.dim() == 4
        Bg, Cg = (B, C) if grouped else (B.unsqueeze(1), C.unsqueeze(1))
        groups, N = Bg.shape[1], Bg.shape[2]
        u, delta, Bg, Cg = (x.contiguous() for x in (u, delta, Bg, Cg))
        z = None if z is None else z.contiguous()
        A32 = A.float().contiguous()
        D32 = None if D is None else D.float().contiguous()
        bias32 = None if delta_bias is None else delta_bias.float().contiguous()
        d_per_group = dim // groups
        bd = _block(d_per_group, block)
        n_chunks = triton.cdiv(L, chunk)
        out = torch.empty_like(u)
        hs = torch.empty(batch, dim, N, n_chunks, device=u.device, dtype=torch.float32)
        dummy = A32
        _fwd_kernel[(batch, dim // bd)](
            u, delta, A32, Bg, Cg, D32 if D32 is not None else dummy, z if z is not None else u,
            bias32 if bias32 is not None else dummy, out, hs, dim, L, n_chunks, d_per_group, groups,
            HAS_D=D32 is not None, HAS_Z=z is not None, HAS_BIAS=bias32 is not None, SOFTPLUS=bool(delta_softplus),
            N=N, BD=bd, K=chunk)
        ctx.save_for_backward(u, delta, A32, Bg, Cg, D32, z, bias32, hs)
        ctx.meta = (grouped, bool(delta_softplus), chunk, bd, A.dtype, None if D is None else D.dtype,
                    None if delta_bias is None else delta_bias.dtype, B.dtype, C.dtype)
        return out

    @staticmethod
    def backward(ctx, dout):
        u, delta, A32, Bg, Cg, D32, z, bias32, hs = ctx.saved_tensors
        grouped, softplus, chunk, bd, a_dtype, d_dtype, bias_dtype, b_dtype, c_dtype = ctx.meta
        batch, dim, L = u.shape
        groups, N = Bg.shape[1], Bg.shape[2]
        n_chunks, n_blocks = hs.shape[-1], dim // bd
        dout = dout.contiguous()
        du, ddelta = torch.empty_like(u), torch.empty_like(delta)
        dz = torch.empty_like(z) if z is not None else None
        f32 = dict(device=u.device, dtype=torch.float32)
        db_p = torch.empty(batch, n_blocks, N, L, **f32)
        dc_p = torch.empty(batch, n_blocks, N, L, **f32)
        da_p = torch.empty(batch, dim, N, **f32)
        dd_p = torch.empty(batch, dim, **f32)
        dbias_p = torch.empty(batch, dim, **f32)
        dummy = A32
        _bwd_kernel[(batch, n_blocks)](
            u, delta, A32, Bg, Cg, D32 if D32 is not None else dummy, z if z is not None else u,
            bias32 if bias32 is not None else dummy, dout, hs,
            du, ddelta, dz if dz is not None else du, db_p, dc_p, da_p, dd_p, dbias_p,
            dim, L, n_chunks, dim // groups, groups, n_blocks,
            HAS_D=D32 is not None, HAS_Z=z is not None, HAS_BIAS=bias32 is not None, SOFTPLUS=softplus,
            N=N, BD=bd, K=chunk)
        # the programs' partial sums, added in a fixed order (blocks of one group, then the batch where shared)
        per_group = n_blocks // groups
        dB = db_p.view(batch, groups, per_group, N, L).sum(2)
        dC = dc_p.view(batch, groups, per_group, N, L).sum(2)
        if not grouped:
            dB, dC = dB.squeeze(1), dC.squeeze(1)
        dA = da_p.sum(0).to(a_dtype)
        dD = dd_p.sum(0).to(d_dtype) if D32 is not None else None
        dbias = dbias_p.sum(0).to(bias_dtype) if bias32 is not None else None
        return du, ddelta, dA, dB.to(b_dtype), dC.to(c_dtype), dD, dz, dbias, None, None, None


def _check(u, delta, A, B, C, D, z, delta_bias) -> None:
    """ValueError (one line) for inputs the kernels would read out of bounds or round silently."""
    import os

    if u.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError("the triton scan needs CUDA tensors (or TRITON_INTERPRET=1, Triton's interpreter)")
    if torch.float64 in (u.dtype, delta.dtype, B.dtype, C.dtype):
        raise ValueError("the triton scan computes in fp32: pass fp32, bf16 or fp16 inputs, not float64")
    if A.is_complex():
        raise ValueError("the triton scan takes a real A")
    batch, dim, L = u.shape
    if B.shape != C.shape or B.dim() not in (3, 4):
        raise ValueError(f"B {tuple(B.shape)} and C {tuple(C.shape)}: expected one shape, (batch, N, L) or "
                         "(batch, G, N, L)")
    groups = B.shape[1] if B.dim() == 4 else 1
    if B.shape[0] != batch or B.shape[-1] != L or dim % groups:
        raise ValueError(f"B/C {tuple(B.shape)} do not fit u {tuple(u.shape)}: batch and L must match, and the "
                         f"{dim} channels split into the {groups} groups")
    want = {"delta": (delta, u.shape), "A": (A, (dim, B.shape[-2])), "D": (D, (dim,)), "z": (z, u.shape),
            "delta_bias": (delta_bias, (dim,))}
    wrong = [f"{k} {tuple(t.shape)} (expected {tuple(s)})" for k, (t, s) in want.items()
             if t is not None and tuple(t.shape) != tuple(s)]
    if wrong:
        raise ValueError("the triton scan's inputs do not fit u " + str(tuple(u.shape)) + ": " + ", ".join(wrong))


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, chunk=32,
                          block=4):
    """models.scan's selective scan (same signature and shapes) in Triton, forward and backward. Tuning (both
    powers of two, not yet tuned on a GPU): ``chunk``, the steps composed at once; ``block``, the most channels a
    program scans (fewer where a B/C group's channel count needs it; more channels mean fewer partial dB/dC sums,
    larger tiles). Returns (batch, d, L) in u's dtype. Raises ValueError for a d_state, chunk or block that is
    not a power of two, or channels that do not split into the B/C groups."""
    _check(u, delta, A, B, C, D, z, delta_bias)
    N = B.shape[-2]
    if any(v < 1 or v & (v - 1) for v in (N, chunk, block)):
        raise ValueError(f"the triton scan needs a power-of-two d_state (got {N}), chunk ({chunk}) and block ({block})")
    return _Scan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk, block)
