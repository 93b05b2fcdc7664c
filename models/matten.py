"""Matten (Gao et al. 2024, arXiv 2405.03025), reconstructed: the paper released no code (this docstring says how).

A Latte-style video backbone whose blocks come from three parts:
  S-attn  spatial attention block   (adaLN-Zero attention + MLP over the H·W tokens of each frame)
  T-attn  temporal attention block  (the same over the T tokens at each spatial position)
  G-mamba global bidirectional Mamba over all T·H·W tokens, spatial-first order (frame 0's tokens, then frame 1's, ...)
  S-mamba / T-mamba  the bidirectional Mamba over one frame's tokens / one position's frames

The four variants repeat one unit:
  1: [G-mamba]                      global Mamba only
  2: [S-mamba, T-mamba]             spatial + temporal Mamba, no attention
  3: [S-attn, T-attn, G-mamba]      the paper's model
  4: [T-attn, G-mamba]              temporal attention + global Mamba
`depth` counts blocks (each attention or Mamba block is one), so it is a multiple of the unit's length.
Between blocks the tokens are kept as (B·T, S, D), S = H/p·W/p, as in Latte; the temporal sin-cos table is
added once, before the first block that mixes across frames. Where the scan is mamba-ssm's kernel, S-mamba and
T-mamba scan a clip's T (or S) short sequences as one packed row (models/mamba.py, `pack_sequences`; the same
function, 2.9× faster for variant 2's step on an H200).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange, repeat

from models.blocks import AttentionBlock, VideoBackbone
from models.mamba import PACKABLE_DTYPES, MambaBlock
from models.scan import resolve_backend

VARIANT_UNITS = {
    1: ("global_mamba",),
    2: ("spatial_mamba", "temporal_mamba"),
    3: ("spatial_attn", "temporal_attn", "global_mamba"),
    4: ("temporal_attn", "global_mamba"),
}
SHORT = {
    "spatial_attn": "S-attn",
    "temporal_attn": "T-attn",
    "global_mamba": "G-mamba",
    "spatial_mamba": "S-mamba",
    "temporal_mamba": "T-mamba",
}


def to_global_sequence(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(B·T, S, D) -> (B, T·S, D) in spatial-first order: token index = frame · S + spatial index."""
    return rearrange(x, "(b f) s d -> b (f s) d", f=frames)


def from_global_sequence(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, T·S, D) -> (B·T, S, D), the inverse of to_global_sequence."""
    return rearrange(x, "b (f s) d -> (b f) s d", f=frames)


class Matten(VideoBackbone):
    def __init__(
        self,
        *,
        variant: int,
        depth: int,
        hidden: int,
        heads: int,
        input_size: int = 32,
        patch: int = 2,
        in_channels: int = 4,
        num_frames: int = 16,
        num_classes: int = 0,
        class_dropout: float = 0.1,
        conditioning: str = "madan",
        mlp_ratio: float = 4.0,
        fused_scan: bool = True,
        pack_sequences: bool | None = None,
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
        if variant not in VARIANT_UNITS:
            raise ValueError(f"Matten variant must be one of 1, 2, 3, 4; got {variant}")
        unit = VARIANT_UNITS[variant]
        if depth % len(unit):
            raise ValueError(f"variant {variant} repeats {len(unit)} blocks; depth {depth} is not a multiple")
        self.variant = variant
        self.conditioning = conditioning
        # S-/T-mamba: a clip's sequences in one scan row (True), one row each (False), or None: packed where it pays,
        # i.e. on mamba-ssm's kernel (one thread block per row and channel) in fp32/bf16; the torch backend gains
        # nothing (and under torch.compile unrolls pack times more steps), the reference loop slows down
        self.pack_sequences = pack_sequences
        self.kinds = list(unit) * (depth // len(unit))
        self.blocks = nn.ModuleList(
            [
                AttentionBlock(hidden, heads, mlp_ratio)
                if kind.endswith("attn")
                else MambaBlock(hidden, conditioning, fused=fused_scan)
                for kind in self.kinds
            ]
        )
        self.initialize_weights()

    def run_blocks(self, x: torch.Tensor, c: torch.Tensor, tokens: list[torch.Tensor], frames: int) -> torch.Tensor:
        s = x.shape[1]
        cond = {  # per layout: the condition vector per sequence and the condition tokens per sequence
            "spatial": c.repeat_interleave(frames, dim=0),  # (B·T, D)
            "temporal": c.repeat_interleave(s, dim=0),  # (B·S, D)
            "global": c,  # (B, D)
        }
        tok = torch.stack(tokens, dim=1)  # (B, n_cond, D)
        toks = {
            "spatial": repeat(tok, "b n d -> (b f) n d", f=frames),
            "temporal": repeat(tok, "b n d -> (b s) n d", s=s),
            "global": tok,
        }
        pack = {"spatial": frames, "temporal": s, "global": 1} if self._packs(x) else dict.fromkeys(cond, 1)
        temp_added = False
        for kind, block in zip(self.kinds, self.blocks, strict=True):
            layout = kind.split("_")[0]
            if layout != "spatial" and not temp_added:
                x = x + self.temp_embed_for(x, frames)
                temp_added = True
            if layout == "temporal":
                x = rearrange(x, "(b f) s d -> (b s) f d", f=frames)  # (B·S, T, D)
            elif layout == "global":
                x = to_global_sequence(x, frames)  # (B, T·S, D)
            if kind.endswith("attn"):
                x = block(x, cond[layout])
            else:
                x = block(x, cond[layout], toks[layout] if self.conditioning == "tokens" else None, pack[layout])
            if layout == "temporal":
                x = rearrange(x, "(b s) f d -> (b f) s d", s=s)
            elif layout == "global":
                x = from_global_sequence(x, frames)
        return x

    def _packs(self, x: torch.Tensor) -> bool:
        if self.pack_sequences is not None:
            return self.pack_sequences
        dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else x.dtype
        return resolve_backend(x.device) == "cuda" and dtype in PACKABLE_DTYPES

    def temp_embed_for(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """The temporal table broadcast onto (B·T, S, D): frame f's tokens all get row f."""
        table = self.temp_embed[0, :frames].to(x.dtype)  # (T, D)
        return table.repeat(x.shape[0] // frames, 1)[:, None, :]  # (B·T, 1, D)
