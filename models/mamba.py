"""The bidirectional Mamba mixer (Vision Mamba's "v2") and Matten's Mamba block.

BiMamba: one in_proj and one out_proj shared by a forward and a backward scan; each direction has its
own depthwise causal conv1d, x_proj, dt_proj, A_log and D (d_state N=16, expand E=2, d_conv 4):

    x, z = in_proj(h).chunk(2)                      (B, L, E·D) each
    fwd  = S6_f(silu(conv_f(x)))        · silu(z)      scanning 0 → L-1
    bwd  = S6_b(silu(conv_b(flip x)))   · silu(flip z) scanning L-1 → 0, flipped back
    out  = out_proj((fwd + bwd) / 2)                   (Vim divides the sum by 2: `if_devide_out`)

`fused=True` (default) runs both directions as ONE selective-scan call over 2·d_inner channels: the
backward half is flipped along L and B/C are passed grouped, (batch, 2, N, L), so channel block 0 reads
the forward B/C and block 1 the backward ones (mamba-ssm's kernel accepts grouped B/C). `fused=False`
makes two calls, as Vim does; kept for the benchmark. Both compute the same function of the same weights.
The conv runs through F.conv1d (causal-conv1d is not required).

Packed short sequences (`pack=k`; Matten packs where the scan is mamba-ssm's, in fp32 or bf16): mamba-ssm's
kernel runs one thread block per (sequence, channel), so many short sequences cost far more per token than a few
long ones (on the H200, variant 2's 1,024 sequences of 16 tokens: 6.8 ms forward + 18.1 ms backward per fused
call, against 0.43 + 2.1 ms for variant 3's 64 sequences of 256 tokens, the same number of elements;
results/benchmarks.md). With `pack=k`, k consecutive sequences of the batch become one scan row, each preceded
by a separator step that resets the state: u = B = C = z = 0 there and delta = SEPARATOR_DELTA, so exp(delta·A)
underflows to exactly 0 (A < 0) and the input term delta·B·u is exactly 0: the state after the separator is 0,
as at the start of a sequence, and no gradient crosses it. The outputs at the separators are dropped. The
convolution runs before packing, per sequence. Same function, same gradients as `pack=1`
(tests/test_models_networks.py, on the torch and reference backends; bit-identical with mamba-ssm on an H200).

MambaBlock wraps the mixer with its conditioning:
    madan:   x + gate · BiMamba(LN(x)·(1 + scale) + shift),  (shift, scale, gate) = Linear(SiLU(c)), zero-init
    tokens:  x + BiMamba(LN([cond tokens; x]))[n_cond:]      (condition tokens prepended, removed after; as DiS)
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from models.blocks import modulate
from models.scan import selective_scan

# exp(delta·A) is exactly 0 in fp32 for |A| ≥ 1.1e-18, i.e. A_log ≥ -41 (trained A_log stays within about -20..10;
# below that the state would leak across the separator); finite in bf16 and fp32 (no inf·0), not in fp16
SEPARATOR_DELTA = 1e20
PACKABLE_DTYPES = (torch.float32, torch.bfloat16)  # fp16 cannot hold SEPARATOR_DELTA


def selective_scan_packed(pack: int, u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """models.scan.selective_scan over (batch, ..., L) inputs, ``pack`` consecutive sequences of the batch scanned
    as one row of pack·(L + 1) steps with a resetting separator before each (see the module docstring); returns
    (batch, d, L) like selective_scan. ``pack=1`` is selective_scan itself. batch must be a multiple of pack."""
    if pack == 1:
        return selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    if u.shape[0] % pack:
        raise ValueError(f"{u.shape[0]} sequences cannot be packed {pack} to a row")
    if delta.dtype not in PACKABLE_DTYPES:
        raise ValueError(f"packed scan rows need fp32 or bf16 delta (the separator's {SEPARATOR_DELTA:g}), "
                         f"not {delta.dtype}")

    def packed(t: torch.Tensor, separator: float = 0.0) -> torch.Tensor:
        return rearrange(F.pad(t, (1, 0), value=separator), "(b k) ... l -> b ... (k l)", k=pack)

    y = selective_scan(packed(u), packed(delta, SEPARATOR_DELTA), A, packed(B), packed(C), D,
                       None if z is None else packed(z), delta_bias, delta_softplus)  # (batch / pack, d, pack·(L+1))
    return rearrange(y, "b d (k l) -> (b k) d l", k=pack)[..., 1:]  # (batch, d, L)


class BiMamba(nn.Module):
    def __init__(
        self,
        dim: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
        fused: bool = True,
    ):
        super().__init__()
        self.dim, self.d_state, self.d_conv = dim, d_state, d_conv
        self.d_inner = expand * dim
        self.dt_rank = math.ceil(dim / 16)
        self.dt_min, self.dt_max, self.dt_init_floor = dt_min, dt_max, dt_init_floor
        self.fused = fused
        di = self.d_inner
        self.in_proj = nn.Linear(dim, 2 * di, bias=False)
        self.out_proj = nn.Linear(di, dim, bias=False)
        for sfx in ("", "_b"):  # forward and backward direction
            setattr(self, f"conv1d{sfx}", nn.Conv1d(di, di, d_conv, groups=di, padding=d_conv - 1, bias=True))
            setattr(self, f"x_proj{sfx}", nn.Linear(di, self.dt_rank + 2 * d_state, bias=False))
            setattr(self, f"dt_proj{sfx}", nn.Linear(self.dt_rank, di, bias=True))
        self.A_log = nn.Parameter(torch.empty(di, d_state))
        self.A_b_log = nn.Parameter(torch.empty(di, d_state))
        self.D = nn.Parameter(torch.empty(di))
        self.D_b = nn.Parameter(torch.empty(di))
        self.reset_mamba_parameters()

    @torch.no_grad()
    def reset_mamba_parameters(self) -> None:
        """Mamba's initialisation (mamba_simple.Mamba): default Linear/Conv init; dt_proj weight uniform in
        ±dt_rank^-0.5; dt_proj bias = softplus⁻¹(dt), dt log-uniform in [dt_min, dt_max] floored at dt_init_floor;
        A = 1..N per channel (A_log = log A); D = 1."""
        if self.in_proj.weight.is_meta:
            return
        for m in (self.in_proj, self.out_proj, self.conv1d, self.conv1d_b, self.x_proj, self.x_proj_b):
            m.reset_parameters()
        std = self.dt_rank**-0.5
        for proj in (self.dt_proj, self.dt_proj_b):
            nn.init.uniform_(proj.weight, -std, std)
            dt = torch.exp(
                torch.rand(self.d_inner) * (math.log(self.dt_max) - math.log(self.dt_min)) + math.log(self.dt_min)
            ).clamp(min=self.dt_init_floor)
            proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus
        A = torch.arange(1, self.d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)  # (d_inner, N)
        self.A_log.copy_(torch.log(A))
        self.A_b_log.copy_(torch.log(A))
        self.D.fill_(1.0)
        self.D_b.fill_(1.0)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Depthwise causal conv + SiLU: (B, C, L) -> (B, C, L)."""
        L = x.shape[-1]
        if torch.compiler.is_compiling():
            # under torch.compile: K shifted multiply-adds, which the compiler fuses into one kernel
            # (cuDNN's depthwise conv1d took ~2.4 ms fwd+bwd of the 22.7 ms mixer step on the H100)
            K = self.d_conv
            xp = F.pad(x, (K - 1, 0))
            w = weight.squeeze(1).to(x.dtype)  # (C, K)
            out = bias.to(x.dtype)[:, None] + sum(w[:, k, None] * xp[..., k : k + L] for k in range(K))
            return F.silu(out)
        return F.silu(F.conv1d(x, weight, bias, padding=self.d_conv - 1, groups=x.shape[1])[..., :L])

    def _scan_inputs(self, x: torch.Tensor, x_proj: nn.Linear, dt_proj: nn.Linear):
        """From conv output x (B, d_inner, L): delta (B, d_inner, L) without bias, B and C (B, N, L)."""
        x_dbl = x_proj(rearrange(x, "b d l -> b l d"))  # (B, L, dt_rank + 2N)
        dt, Bm, Cm = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = rearrange(dt @ dt_proj.weight.t(), "b l d -> b d l")  # bias goes into the scan as delta_bias
        return delta, rearrange(Bm, "b l n -> b n l"), rearrange(Cm, "b l n -> b n l")

    def forward(self, h: torch.Tensor, pack: int = 1) -> torch.Tensor:
        """h: (B, L, D) -> (B, L, D); ``pack`` consecutive sequences share one scan row (selective_scan_packed)."""
        xz = torch.matmul(self.in_proj.weight, h.transpose(1, 2))  # (B, 2·d_inner, L), from the GEMM directly
        x, z = xz.chunk(2, dim=1)
        if self.fused:
            y = self._scan_fused(x, z, pack)
        else:
            y = self._scan_two_calls(x, z, pack)
        return self.out_proj(y.transpose(1, 2))  # (B, L, D); the GEMM reads the transposed view

    def _scan_two_calls(self, x: torch.Tensor, z: torch.Tensor, pack: int = 1) -> torch.Tensor:
        outs = []
        for sfx, xs, zs in (("", x, z), ("_b", x.flip(-1), z.flip(-1))):
            conv, x_proj, dt_proj = (getattr(self, n + sfx) for n in ("conv1d", "x_proj", "dt_proj"))
            A = -torch.exp(getattr(self, "A_b_log" if sfx else "A_log").float())
            xc = self._conv(xs, conv.weight, conv.bias)
            delta, Bm, Cm = self._scan_inputs(xc, x_proj, dt_proj)
            D = self.D_b if sfx else self.D
            outs.append(selective_scan_packed(pack, xc, delta, A, Bm, Cm, D.float(), zs, dt_proj.bias.float(), True))
        return (outs[0] + outs[1].flip(-1)) / 2

    def _scan_fused(self, x: torch.Tensor, z: torch.Tensor, pack: int = 1) -> torch.Tensor:
        di, R, N = self.d_inner, self.dt_rank, self.d_state
        b, _, L = x.shape
        # both directions side by side on the channel axis; the backward half reversed in time
        x2 = torch.cat([x, x.flip(-1)], dim=1)  # (B, 2·d_inner, L)
        z2 = torch.cat([z, z.flip(-1)], dim=1)
        conv_w = torch.cat([self.conv1d.weight, self.conv1d_b.weight])  # (2·d_inner, 1, d_conv)
        conv_b = torch.cat([self.conv1d.bias, self.conv1d_b.bias])
        xc = self._conv(x2, conv_w, conv_b)  # (B, 2·d_inner, L)
        # x_proj and dt_proj per direction as batched matmuls that write the scan's (…, channels, L) layout
        # directly, so no (B, L, C) <-> (B, C, L) transposes are materialised
        w_x = torch.stack([self.x_proj.weight, self.x_proj_b.weight])  # (2, R + 2N, d_inner)
        x_dbl = torch.matmul(w_x, xc.view(b, 2, di, L))  # (B, 2, R + 2N, L)
        dt, Bm, Cm = torch.split(x_dbl, [R, N, N], dim=2)
        w_dt = torch.stack([self.dt_proj.weight, self.dt_proj_b.weight])  # (2, d_inner, R)
        delta = torch.matmul(w_dt, dt).reshape(b, 2 * di, L)  # (B, 2·d_inner, L)
        A = -torch.exp(torch.cat([self.A_log, self.A_b_log]).float())  # (2·d_inner, N)
        D = torch.cat([self.D, self.D_b]).float()
        delta_bias = torch.cat([self.dt_proj.bias, self.dt_proj_b.bias]).float()
        # grouped B/C: (B, 2, N, L), group 0 feeds the forward channels, group 1 the backward ones
        y = selective_scan_packed(pack, xc, delta, A, Bm.contiguous(), Cm.contiguous(), D, z2, delta_bias, True)
        return (y[:, :di] + y[:, di:].flip(-1)) / 2  # (B, d_inner, L)


class MambaBlock(nn.Module):
    """Matten's Mamba block on (N, L, D) sequences, conditioned by M-AdaN or by prepended condition tokens."""

    def __init__(self, dim: int, conditioning: str = "madan", fused: bool = True, **mamba_kwargs):
        super().__init__()
        if conditioning not in ("madan", "tokens"):
            raise ValueError(f"conditioning must be 'madan' or 'tokens', got {conditioning!r}")
        self.conditioning = conditioning
        self.mixer = BiMamba(dim, fused=fused, **mamba_kwargs)
        if conditioning == "madan":
            self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))  # M-AdaN: shift, scale, gate
        else:
            self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor, c: torch.Tensor, tokens: torch.Tensor | None = None, pack: int = 1,
                ) -> torch.Tensor:
        """x (N, L, D); c (N, D) for madan; tokens (N, n_cond, D) for tokens conditioning; ``pack`` as BiMamba's."""
        if self.conditioning == "madan":
            shift, scale, gate = self.adaLN_modulation(c).chunk(3, dim=1)
            return x + gate[:, None] * self.mixer(modulate(self.norm(x), shift, scale), pack)
        n_cond = tokens.shape[1]
        seq = torch.cat([tokens.to(x.dtype), x], dim=1)  # (N, n_cond + L, D)
        return x + self.mixer(self.norm(seq), pack)[:, n_cond:]
