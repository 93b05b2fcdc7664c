"""Latte (Ma et al. 2024), the variant of Vchitect/Latte's `models/latte.py` without text conditioning.

Blocks alternate spatial / temporal: blocks[0::2] attend over the H·W tokens of each frame, blocks[1::2]
over the T tokens at each spatial position. The temporal sin-cos table is added once, before the first
temporal block. `depth` counts blocks (Latte-XL: 28 = 14 spatial + 14 temporal).
"""

from __future__ import annotations

import torch
from einops import rearrange

from models.blocks import AttentionBlock, VideoBackbone


class Latte(VideoBackbone):
    def __init__(
        self,
        *,
        depth: int,
        hidden: int,
        heads: int,
        input_size: int = 32,
        patch: int = 2,
        in_channels: int = 4,
        num_frames: int = 16,
        num_classes: int = 0,
        class_dropout: float = 0.1,
        mlp_ratio: float = 4.0,
    ):
        super().__init__(
            input_size=input_size,
            patch=patch,
            in_channels=in_channels,
            hidden=hidden,
            num_frames=num_frames,
            num_classes=num_classes,
            class_dropout=class_dropout,
        )
        if depth % 2:
            raise ValueError(f"Latte's depth counts spatial+temporal pairs of blocks; got odd depth {depth}")
        self.blocks = torch.nn.ModuleList([AttentionBlock(hidden, heads, mlp_ratio) for _ in range(depth)])
        self.initialize_weights()

    def run_blocks(self, x: torch.Tensor, c: torch.Tensor, tokens: list[torch.Tensor], frames: int) -> torch.Tensor:
        s = x.shape[1]
        c_spatial = c.repeat_interleave(frames, dim=0)  # (B·T, D)
        c_temporal = c.repeat_interleave(s, dim=0)  # (B·S, D)
        for i in range(0, len(self.blocks), 2):
            spatial, temporal = self.blocks[i], self.blocks[i + 1]
            x = spatial(x, c_spatial)  # (B·T, S, D)
            x = rearrange(x, "(b f) s d -> (b s) f d", f=frames)
            if i == 0:
                x = x + self.temp_embed[:, :frames].to(x.dtype)
            x = temporal(x, c_temporal)  # (B·S, T, D)
            x = rearrange(x, "(b s) f d -> (b f) s d", s=s)
        return x
