"""Parts shared by Latte and Matten, in the style of DiT/Latte.

Names of submodules follow Latte's public code (x_embedder.proj, t_embedder.mlp, y_embedder.embedding_table,
blocks.i.attn.qkv, blocks.i.mlp.fc1, blocks.i.adaLN_modulation.1, final_layer.linear, ...), so a state dict
from there maps onto ours; the fixed sin-cos tables are buffers here (frozen parameters there).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

# ------------------------------------------------------------------------------------------------
# Fixed sin-cos position tables (MAE/DiT/Latte)
# ------------------------------------------------------------------------------------------------


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """(len(positions), dim): first half sin(pos·ω), second half cos(pos·ω), ω_i = 10000^(-i/(dim/2)). float64."""
    assert dim % 2 == 0
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64, device="cpu") / (dim / 2.0))
    angles = torch.outer(positions.reshape(-1).to(device="cpu", dtype=torch.float64), omega)  # (M, dim/2)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_2d(dim: int, grid_size: int) -> torch.Tensor:
    """(grid_size², dim): half the channels encode the column (w), half the row (h); tokens row-major."""
    assert dim % 2 == 0
    coords = torch.arange(grid_size, dtype=torch.float64, device="cpu")
    h, w = torch.meshgrid(coords, coords, indexing="ij")  # token (i, j): h = i, w = j
    # DiT/MAE order: the first half of the channels comes from the w coordinate, the second from h
    return torch.cat([sincos_1d(dim // 2, w), sincos_1d(dim // 2, h)], dim=1)


# ------------------------------------------------------------------------------------------------
# Embedders
# ------------------------------------------------------------------------------------------------


class PatchEmbed(nn.Module):
    """Per-frame patchify: (N, C, H, W) -> (N, (H/p)(W/p), D) with a p×p stride-p convolution (timm's PatchEmbed)."""

    def __init__(self, input_size: int, patch: int, in_channels: int, hidden: int):
        super().__init__()
        self.patch = patch
        self.grid = input_size // patch
        self.num_patches = self.grid**2
        self.proj = nn.Conv2d(in_channels, hidden, kernel_size=patch, stride=patch, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(self.proj(x), "n d h w -> n (h w) d")


class TimestepEmbedder(nn.Module):
    """Scalar timesteps -> (B, D): 256-d sinusoidal features, then Linear-SiLU-Linear (DiT)."""

    def __init__(self, hidden: int, frequency_size: int = 256):
        super().__init__()
        self.frequency_size = frequency_size
        self.mlp = nn.Sequential(nn.Linear(frequency_size, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    @staticmethod
    def timestep_features(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        features = self.timestep_features(t, self.frequency_size)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Class labels -> (B, D); index `num_classes` is the null class used for classifier-free guidance."""

    def __init__(self, num_classes: int, hidden: int, dropout: float):
        super().__init__()
        self.num_classes = num_classes
        self.dropout = dropout
        self.embedding_table = nn.Embedding(num_classes + int(dropout > 0), hidden)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.training and self.dropout > 0:
            drop = torch.rand(y.shape[0], device=y.device) < self.dropout
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        return self.embedding_table(y)


# ------------------------------------------------------------------------------------------------
# Transformer parts
# ------------------------------------------------------------------------------------------------


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x (N, L, D), shift/scale (N, D)."""
    return x * (1 + scale[:, None]) + shift[:, None]


_attention_fn = None  # replaces F.scaled_dot_product_attention inside attention_through (None: SDPA itself)


@contextlib.contextmanager
def attention_through(fn):
    """Every ``Attention`` inside the block computes ``fn(q, k, v)`` (F.scaled_dot_product_attention's signature)
    instead of SDPA, e.g. the explicit softmax(QKᵀ)V of Latte's public code for a comparison (harness.bench.train);
    the previous setting is back afterwards. Nothing outside the models is rebound."""
    global _attention_fn
    before, _attention_fn = _attention_fn, fn
    try:
        yield
    finally:
        _attention_fn = before


class Attention(nn.Module):
    """Multi-head self-attention through F.scaled_dot_product_attention (flash/memory-efficient kernels on GPU)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        assert dim % heads == 0, f"hidden {dim} not divisible by {heads} heads"
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "n l (three h e) -> three n h l e", three=3, h=self.heads)
        x = (_attention_fn or F.scaled_dot_product_attention)(q, k, v)  # (N, heads, L, head dim)
        return self.proj(rearrange(x, "n h l e -> n l (h e)"))


class Mlp(nn.Module):
    """fc1 -> tanh-GELU -> fc2, hidden ratio 4 (timm's Mlp as DiT/Latte configure it)."""

    def __init__(self, dim: int, ratio: float = 4.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, int(dim * ratio))
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(int(dim * ratio), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class AttentionBlock(nn.Module):
    """DiT/Latte block with adaLN-Zero: x + gate·Attn(mod(LN x)), then x + gate·MLP(mod(LN x)).

    Works on (N, L, D) sequences: for a spatial block N = B·T and L = H·W; for a temporal block N = B·H·W, L = T.
    The condition c is (N, D).
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, mlp_ratio)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa[:, None] * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp[:, None] * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    """adaLN (shift, scale) -> Linear to p·p·out_channels per token."""

    def __init__(self, dim: int, patch: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, patch * patch * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


# ------------------------------------------------------------------------------------------------
# The shared video backbone: patchify + embeddings + conditioning + final layer + CFG
# ------------------------------------------------------------------------------------------------


class VideoBackbone(nn.Module):
    """What Latte and Matten share; subclasses build `self.blocks` and implement `run_blocks`.

    forward(x (B, T, C, H, W), t (B,), y (B,) | None) -> (B, T, 2C, H, W)  (noise, then the learned-sigma channels)
    """

    def __init__(
        self,
        *,
        input_size: int,
        patch: int,
        in_channels: int,
        hidden: int,
        num_frames: int,
        num_classes: int,
        class_dropout: float,
        learn_sigma: bool = True,
    ):
        super().__init__()
        if input_size % patch:
            raise ValueError(f"input size {input_size} is not divisible by patch {patch}")
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.patch = patch
        self.hidden = hidden
        self.num_frames = num_frames
        self.num_classes = num_classes
        self.x_embedder = PatchEmbed(input_size, patch, in_channels, hidden)
        self.t_embedder = TimestepEmbedder(hidden)
        self.y_embedder = LabelEmbedder(num_classes, hidden, class_dropout) if num_classes > 0 else None
        n = self.x_embedder.num_patches
        # fixed tables: buffers, not parameters (Latte keeps them as frozen nn.Parameters)
        # computed on the CPU in float64, then placed on the default device (meta when counting parameters)
        pos = sincos_2d(hidden, self.x_embedder.grid).float()  # (S, D)
        temp = sincos_1d(hidden, torch.arange(num_frames, device="cpu")).float()  # (T, D)
        self.register_buffer("pos_embed", pos.to(torch.get_default_device())[None])
        self.register_buffer("temp_embed", temp.to(torch.get_default_device())[None])
        self.final_layer = FinalLayer(hidden, patch, self.out_channels)
        self.pos_embed: torch.Tensor  # (1, H/p · W/p, D)
        self.temp_embed: torch.Tensor  # (1, T, D)
        assert n == self.pos_embed.shape[1]

    # -- initialisation (DiT/Latte): xavier Linears, zero adaLN and output layers --------------------

    def initialize_weights(self) -> None:
        def basic_init(m: nn.Module) -> None:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

        self.apply(basic_init)
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for m in self.modules():
            if hasattr(m, "adaLN_modulation"):
                nn.init.zeros_(m.adaLN_modulation[-1].weight)
                nn.init.zeros_(m.adaLN_modulation[-1].bias)
            if hasattr(m, "reset_mamba_parameters"):  # Mamba mixers keep Mamba's own initialisation
                m.reset_mamba_parameters()
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    # -- conditioning ---------------------------------------------------------------------------------

    def embed_condition(self, t: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """c = t_emb (+ y_emb): (B, D), and the same embeddings as a list of condition tokens (each (B, D))."""
        t_emb = self.t_embedder(t)
        if self.y_embedder is None:
            if y is not None:
                raise ValueError("this model is unconditional (num_classes=0) but class labels y were given")
            return t_emb, [t_emb]
        if y is None:
            raise ValueError(f"this model is class-conditional ({self.num_classes} classes); pass labels y")
        y_emb = self.y_embedder(y)
        return t_emb + y_emb, [t_emb, y_emb]

    def run_blocks(self, x: torch.Tensor, c: torch.Tensor, tokens: list[torch.Tensor], frames: int) -> torch.Tensor:
        raise NotImplementedError

    def unpatchify(self, x: torch.Tensor, grid: int) -> torch.Tensor:
        # (N, h·w, p·p·C) -> (N, C, h·p, w·p)
        p = self.patch
        return rearrange(x, "n (h w) (p q c) -> n c (h p) (w q)", h=grid, w=grid, p=p, q=p)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        b, f = x.shape[:2]
        if f > self.temp_embed.shape[1]:
            raise ValueError(f"{f} frames but the model was built for at most {self.temp_embed.shape[1]}")
        x = rearrange(x, "b f c h w -> (b f) c h w")
        x = self.x_embedder(x) + self.pos_embed.to(x.dtype)  # (B·T, S, D), S = H/p · W/p
        c, tokens = self.embed_condition(t, y)  # (B, D)
        x = self.run_blocks(x, c, tokens, f)  # (B·T, S, D)
        x = self.final_layer(x, c.repeat_interleave(f, dim=0))  # (B·T, S, p·p·2C)
        x = self.unpatchify(x, self.x_embedder.grid)  # (B·T, 2C, H, W)
        return rearrange(x, "(b f) c h w -> b f c h w", b=b)

    def forward_with_cfg(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, cfg_scale: float) -> torch.Tensor:
        """Classifier-free guidance: runs [x, x] with labels [y, null] in one batch of 2B and returns (B, T, 2C, H, W)
        whose first C channels (the noise) are uncond + s·(cond − uncond); the sigma channels are the conditional ones.
        """
        if self.y_embedder is None:
            raise ValueError("classifier-free guidance needs a class-conditional model (num_classes > 0)")
        null = torch.full_like(y, self.num_classes)
        out = self.forward(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))  # (2B, T, 2C, H, W)
        cond, uncond = out.chunk(2, dim=0)
        c = self.in_channels
        eps = uncond[:, :, :c] + cfg_scale * (cond[:, :, :c] - uncond[:, :, :c])
        return torch.cat([eps, cond[:, :, c:]], dim=2)
