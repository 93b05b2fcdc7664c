"""Every model by name: sizes, depths, parameter counts (counted on the meta device; the published counts they
are compared with live in the harness's baselines/model_sizes.csv).

Sizes follow Latte (S 12×384, B 12×768, L 24×1024, XL 28×1152; heads 6/12/16/16). Matten variant 3 keeps
Latte's attention blocks and adds one global Mamba per spatial+temporal pair, so its depth (blocks) is
1.5× Latte's. Variants 1, 2 and 4 get the depths in MATCHED_DEPTH, chosen (by `matched_depth`) so their
parameter counts are within 5% of variant 3's at the same size, as the paper's ablation holds parameters
equal. Counts are trainable parameters, unconditional, M-AdaN, patch 2, 16×4×32×32 (the fixed sin-cos
tables are buffers, not parameters).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn as nn

from models.errors import ModelConfigError

FAMILIES = ("matten", "latte")
SIZES = ("s", "b", "l", "xl", "tiny")
PAPER_SIZES = ("s", "b", "l", "xl")


@dataclass(frozen=True)
class Size:
    hidden: int
    heads: int
    latte_depth: int  # blocks in Latte (spatial + temporal)


SIZE_CONFIGS = {
    "s": Size(384, 6, 12),
    "b": Size(768, 12, 12),
    "l": Size(1024, 16, 24),
    "xl": Size(1152, 16, 28),
    "tiny": Size(64, 4, 4),  # smoke scale only
}

# Blocks per variant and size; variant 3 is 1.5 × Latte's depth, the others matched to it (tests check ≤ 5%).
MATTEN_DEPTH = {
    1: {"s": 27, "b": 28, "l": 56, "xl": 66, "tiny": 8},
    2: {"s": 28, "b": 28, "l": 56, "xl": 66, "tiny": 8},
    3: {"s": 18, "b": 18, "l": 36, "xl": 42, "tiny": 6},
    4: {"s": 20, "b": 20, "l": 40, "xl": 46, "tiny": 6},
}

def build_model(
    family: str,
    size: str,
    *,
    variant: int = 3,
    patch: int = 2,
    conditioning: str = "madan",
    num_classes: int = 0,
    num_frames: int = 16,
    in_channels: int = 4,
    input_size: int = 32,
    depth: int | None = None,
    hidden: int | None = None,
    heads: int | None = None,
    class_dropout: float = 0.1,
    fused_scan: bool = True,
) -> nn.Module:
    """Build Latte or Matten. `depth` counts blocks (attention or Mamba); None takes the registry's value."""
    family, size = family.lower(), size.lower()
    if family not in FAMILIES:
        raise ModelConfigError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")
    if size not in SIZES:
        raise ModelConfigError(f"unknown model size {size!r}; choose one of {', '.join(SIZES)}")
    if conditioning not in ("madan", "tokens"):
        raise ModelConfigError(f"conditioning must be 'madan' or 'tokens', got {conditioning!r}")
    if patch < 1 or input_size % patch:
        raise ModelConfigError(f"patch {patch} must divide the latent size {input_size} (Latte uses 2, 4 or 8)")
    if num_classes < 0:
        raise ModelConfigError(f"num_classes must be ≥ 0 (0 = unconditional), got {num_classes}")
    cfg = SIZE_CONFIGS[size]
    hidden = hidden or cfg.hidden
    heads = heads or cfg.heads
    if hidden % heads:
        raise ModelConfigError(f"hidden size {hidden} is not divisible by {heads} heads")
    common = dict(
        hidden=hidden,
        heads=heads,
        input_size=input_size,
        patch=patch,
        in_channels=in_channels,
        num_frames=num_frames,
        num_classes=num_classes,
        class_dropout=class_dropout,
    )
    if family == "latte":
        from models.latte import Latte

        depth = depth or cfg.latte_depth
        if depth % 2:
            raise ModelConfigError(f"Latte's depth counts spatial+temporal pairs of blocks; got odd depth {depth}")
        return Latte(depth=depth, **common)
    from models.matten import VARIANT_UNITS, Matten

    if variant not in VARIANT_UNITS:
        raise ModelConfigError(f"Matten variant must be 1, 2, 3 or 4; got {variant}")
    depth = depth or MATTEN_DEPTH[variant][size]
    unit = len(VARIANT_UNITS[variant])
    if depth % unit:
        raise ModelConfigError(
            f"Matten variant {variant} repeats units of {unit} blocks; depth {depth} is not a multiple"
        )
    return Matten(variant=variant, depth=depth, conditioning=conditioning, fused_scan=fused_scan, **common)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@functools.cache
def count_params_meta(family: str, size: str, **kwargs) -> int:
    """Trainable parameters without allocating weights (built on the meta device); cached, configs are immutable."""
    with torch.device("meta"):
        return count_params(build_model(family, size, **kwargs))


def matched_depth(variant: int, size: str) -> int:
    """The depth (a multiple of the variant's unit) whose count is closest to variant 3's at this size."""
    from models.matten import VARIANT_UNITS

    target = count_params_meta("matten", size, variant=3)
    unit = len(VARIANT_UNITS[variant])
    one = count_params_meta("matten", size, variant=variant, depth=unit)
    two = count_params_meta("matten", size, variant=variant, depth=2 * unit)
    per_unit, base = two - one, 2 * one - two  # counts are affine in the number of units
    units = max(1, round((target - base) / per_unit))
    return units * unit


def unit_description(family: str, variant: int | None, depth: int) -> str:
    if family == "latte":
        return f"{depth // 2} × (S-attn, T-attn)"
    from models.matten import SHORT, VARIANT_UNITS

    unit = VARIANT_UNITS[variant]
    return f"{depth // len(unit)} × ({', '.join(SHORT[k] for k in unit)})"


def list_models(include_tiny: bool = False) -> list[dict]:
    """One record per model: Latte S..XL and Matten variants 1-4 at S..XL (tiny too if asked), patch 2."""
    sizes = SIZES if include_tiny else PAPER_SIZES
    rows = []
    for size in sizes:
        cfg = SIZE_CONFIGS[size]
        entries = [("latte", None, cfg.latte_depth)] + [("matten", v, MATTEN_DEPTH[v][size]) for v in (1, 2, 3, 4)]
        for family, variant, depth in entries:
            kw = {} if family == "latte" else {"variant": variant}
            params = count_params_meta(family, size, **kw)
            label = size.upper() if size != "tiny" else "tiny"
            name = f"Latte-{label}/2" if family == "latte" else f"Matten-{label}/2-v{variant}"
            rows.append(
                {
                    "name": name,
                    "family": family,
                    "variant": variant,
                    "size": size,
                    "patch": 2,
                    "layers": depth,
                    "blocks": unit_description(family, variant, depth),
                    "hidden": cfg.hidden,
                    "heads": cfg.heads,
                    "d_state": None if family == "latte" else 16,
                    "params": params,
                    "vs_variant3": None,
                    "counted_at": "unconditional, M-AdaN, 16x4x32x32, trainable (sin-cos tables are buffers)",
                }
            )
    for r in rows:  # the ablation's parameter match: each Matten variant against variant 3 of its size
        if r["family"] == "matten":
            v3 = next(q for q in rows if q["family"] == "matten" and q["variant"] == 3 and q["size"] == r["size"])
            r["vs_variant3"] = (r["params"] - v3["params"]) / v3["params"]
    return rows
