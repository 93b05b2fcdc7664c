"""A tiny network honouring models.build_model's contract, for tests that must not depend on its speed."""

import math

import torch
from torch import nn


class TinyVideoNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, class_dropout: float, hidden: int = 8):
        super().__init__()
        self.in_channels, self.num_classes, self.class_dropout = in_channels, num_classes, class_dropout
        self.inp = nn.Conv3d(in_channels, hidden, 3, padding=1)
        self.t_proj = nn.Linear(hidden, hidden)
        self.y_emb = nn.Embedding(num_classes + 1, hidden) if num_classes else None
        self.out = nn.Conv3d(hidden, 2 * in_channels, 3, padding=1)

    def forward(self, x, t, y=None):
        half = self.t_proj.in_features // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=x.device) / half)
        emb = self.t_proj(torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], 1))
        if self.y_emb is not None and y is not None:
            if self.training and self.class_dropout > 0:  # label dropout draws from the global RNG
                y = torch.where(torch.rand(y.shape, device=y.device) < self.class_dropout, self.num_classes, y)
            emb = emb + self.y_emb(y)
        h = self.inp(x.permute(0, 2, 1, 3, 4)) + emb[:, :, None, None, None]  # (B, hidden, T, H, W)
        return self.out(torch.nn.functional.silu(h)).permute(0, 2, 1, 3, 4)  # (B, T, 2C, H, W)

    def forward_with_cfg(self, x, t, y, cfg_scale):  # the models contract: B in, B out
        null = torch.full_like(y, self.num_classes)
        out = self.forward(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
        cond, uncond = out.chunk(2)
        c = self.in_channels
        return torch.cat([uncond[:, :, :c] + cfg_scale * (cond[:, :, :c] - uncond[:, :, :c]), cond[:, :, c:]], dim=2)


def build_model(
    family,
    size,
    *,
    variant=3,
    patch=2,
    conditioning="madan",
    num_classes=0,
    num_frames=16,
    in_channels=4,
    input_size=32,
    class_dropout=0.1,
    **kw,
):
    return TinyVideoNet(in_channels, num_classes, class_dropout)
