"""Small stand-ins for the FLOPs tests: a Latte with Latte's public structure and a Matten-like pair.

They honour the models contract (``model(x (B, T, C, H, W), t (B,), y) -> (B, T, 2C, H, W)``) and use the
module names DiT/Latte use, so the counting machinery is tested without ``models/``. Shapes only matter:
the weights are never trained. Latte's structure (facts from Vchitect/Latte's public code): patch-embed Conv2d
per frame, timestep MLP, blocks alternating spatial (over the H·W tokens of each frame) and temporal (over
the T frames of each token) attention, adaLN-Zero modulation computed on the condition *repeated per frame*
(spatial) or *per token* (temporal), LayerNorms without affine parameters, final adaLN layer per frame.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (three h e) -> three b h n e", three=3, h=self.heads)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(rearrange(x, "b h n e -> b n (h e)"))


class Mlp(nn.Module):
    def __init__(self, dim: int, ratio: int = 4):
        super().__init__()
        self.fc1 = nn.Linear(dim, ratio * dim)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(ratio * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """adaLN-Zero attention + MLP block; ``c`` has one row per sequence of ``x``."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        s1, sc1, g1, s2, sc2, g2 = self.adaLN_modulation(c).unsqueeze(1).chunk(6, dim=-1)
        x = x + g1 * self.attn(self.norm1(x) * (1 + sc1) + s1)
        return x + g2 * self.mlp(self.norm2(x) * (1 + sc2) + s2)


class TimestepEmbedder(nn.Module):
    def __init__(self, dim: int, freq: int = 256):
        super().__init__()
        self.freq = freq
        self.mlp = nn.Sequential(nn.Linear(freq, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class FinalLayer(nn.Module):
    def __init__(self, dim: int, patch: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, patch * patch * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).unsqueeze(1).chunk(2, dim=-1)
        return self.linear(self.norm_final(x) * (1 + scale) + shift)


class TinyLatte(nn.Module):
    """Latte (unconditional): ``depth`` blocks, even ones spatial, odd ones temporal."""

    def __init__(self, *, frames=4, size=8, channels=4, patch=2, dim=32, depth=2, heads=2):
        super().__init__()
        self.frames, self.size, self.channels, self.patch = frames, size, channels, patch
        self.x_embedder = nn.Conv2d(channels, dim, kernel_size=patch, stride=patch)
        self.t_embedder = TimestepEmbedder(dim)
        tokens = (size // patch) ** 2
        self.register_buffer("pos_embed", torch.zeros(1, tokens, dim))
        self.register_buffer("temp_embed", torch.zeros(1, frames, dim))
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.final_layer = FinalLayer(dim, patch, 2 * channels)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        b, f, c, h, w = x.shape
        p = self.patch
        x = self.x_embedder(rearrange(x, "b f c h w -> (b f) c h w"))  # (B·T, D, H/p, W/p)
        x = rearrange(x, "bf d gh gw -> bf (gh gw) d") + self.pos_embed  # (B·T, N, D)
        n = x.shape[1]
        t = self.t_embedder(t)  # (B, D)
        c_spatial = repeat(t, "b d -> (b f) d", f=f)
        c_temporal = repeat(t, "b d -> (b n) d", n=n)
        for i, block in enumerate(self.blocks):
            if i % 2 == 0:
                x = block(x, c_spatial)
            else:
                x = rearrange(x, "(b f) n d -> (b n) f d", b=b)
                if i == 1:
                    x = x + self.temp_embed
                x = block(x, c_temporal)
                x = rearrange(x, "(b n) f d -> (b f) n d", b=b)
        x = self.final_layer(x, c_spatial)  # (B·T, N, p·p·2C)
        gh = h // p
        return rearrange(x, "(b f) (gh gw) (p q c) -> b f c (gh p) (gw q)", b=b, gh=gh, p=p, q=p)


class ScanFn(torch.autograd.Function):
    """Stand-in selective scan with mamba-ssm's argument order: (u, delta, A, B, C, D, z, delta_bias, softplus).

    Counting needs only the output's shape (that of u), so it returns zeros; the real scans live in models.scan.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):  # noqa: ANN001
        return torch.zeros_like(u)


class BiMamba(nn.Module):
    """Vision-Mamba 'v2' bidirectional mixer: shared in/out projections, per-direction conv, x/dt proj, A, D."""

    def __init__(self, dim: int, state: int = 4, expand: int = 2, conv: int = 4):
        super().__init__()
        inner, self.rank, self.state = expand * dim, math.ceil(dim / 16), state
        self.in_proj = nn.Linear(dim, 2 * inner, bias=False)
        self.out_proj = nn.Linear(inner, dim, bias=False)
        self.conv1d = nn.ModuleList(nn.Conv1d(inner, inner, conv, groups=inner, padding=conv - 1) for _ in range(2))
        self.x_proj = nn.ModuleList(nn.Linear(inner, self.rank + 2 * state, bias=False) for _ in range(2))
        self.dt_proj = nn.ModuleList(nn.Linear(self.rank, inner) for _ in range(2))
        self.A_log = nn.Parameter(torch.zeros(2, inner, state))
        self.D = nn.Parameter(torch.ones(2, inner))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        xz = rearrange(self.in_proj(x), "b l e -> b e l")
        u, z = xz.chunk(2, dim=1)  # (B, E·D, L) each
        outs = []
        for d in range(2):
            ud, zd = (u, z) if d == 0 else (u.flip(-1), z.flip(-1))
            ud = F.silu(self.conv1d[d](ud)[..., :length])
            dbc = self.x_proj[d](rearrange(ud, "b e l -> b l e"))
            dt, bb, cc = dbc.split([self.rank, self.state, self.state], dim=-1)
            dt = rearrange(self.dt_proj[d].weight @ dt.transpose(1, 2), "b e l -> b e l")
            y = ScanFn.apply(
                ud, dt, -torch.exp(self.A_log[d]), bb.transpose(1, 2).contiguous(), cc.transpose(1, 2).contiguous(),
                self.D[d], zd, self.dt_proj[d].bias, True,
            )
            outs.append(y if d == 0 else y.flip(-1))
        return self.out_proj(rearrange(outs[0] + outs[1], "b e l -> b l e"))


class MambaBlock(nn.Module):
    """M-AdaN-conditioned global bidirectional Mamba over all T·H·W tokens."""

    def __init__(self, dim: int, state: int = 4):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mamba = BiMamba(dim, state)
        self.madan_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.madan_modulation(c).unsqueeze(1).chunk(3, dim=-1)
        return x + gate * self.mamba(self.norm(x) * (1 + scale) + shift)


class TinyMatten(TinyLatte):
    """TinyLatte plus one global Mamba block after every (spatial, temporal) pair."""

    def __init__(self, *, state: int = 4, **kw):
        super().__init__(**kw)
        dim = self.x_embedder.out_channels
        self.mamba_blocks = nn.ModuleList(MambaBlock(dim, state) for _ in range(len(self.blocks) // 2))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        b, f, c, h, w = x.shape
        p = self.patch
        x = self.x_embedder(rearrange(x, "b f c h w -> (b f) c h w"))
        x = rearrange(x, "bf d gh gw -> bf (gh gw) d") + self.pos_embed
        n = x.shape[1]
        t = self.t_embedder(t)
        c_spatial = repeat(t, "b d -> (b f) d", f=f)
        c_temporal = repeat(t, "b d -> (b n) d", n=n)
        for i in range(0, len(self.blocks), 2):
            x = self.blocks[i](x, c_spatial)
            x = rearrange(x, "(b f) n d -> (b n) f d", b=b)
            x = self.blocks[i + 1](x, c_temporal)
            x = rearrange(x, "(b n) f d -> b (f n) d", b=b)  # spatial-first order over all T·H·W tokens
            x = self.mamba_blocks[i // 2](x, t)
            x = rearrange(x, "b (f n) d -> (b f) n d", f=f)
        x = self.final_layer(x, c_spatial)
        gh = h // p
        return rearrange(x, "(b f) (gh gw) (p q c) -> b f c (gh p) (gw q)", b=b, gh=gh, p=p, q=p)
