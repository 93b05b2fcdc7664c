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
CONDITIONINGS = ("madan", "tokens")
VARIANTS = (1, 2, 3, 4)  # Matten's (models/matten.py VARIANT_UNITS)


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

@dataclass(frozen=True)
class ModelSpec:
    """One public model, named once: Latte, or a Matten variant with its conditioning, at a size (DiT's way: the
    name is the identity everywhere; the CLI, records, benchmark rows and report labels use it).

    ``name`` is the one spelling (``latte-xl``, ``matten-xl-v3``, ``matten-s-v3-tokens``); :meth:`parse` reads it
    (also ``Matten-XL/2``, ``matten-xl`` = variant 3); ``label`` is the report's (``Matten-XL v3``); ``key`` the
    name of run folders and records (``matten-xl-v3-madan``, ``latte-xl``), kept as runs have always used it.
    Raises ModelConfigError for an unknown family, size, variant or conditioning.
    """

    family: str
    size: str
    variant: int | None = None  # Matten 1-4 (None: 3); Latte has none
    conditioning: str = "madan"  # "madan" | "tokens" (Matten only)

    def __post_init__(self) -> None:
        object.__setattr__(self, "family", str(self.family).lower())
        object.__setattr__(self, "size", str(self.size).lower())
        if self.variant is not None and type(self.variant) is not int:
            raise ModelConfigError(f"a Matten variant is an integer 1-4, not {self.variant!r}")
        if self.family not in FAMILIES:
            raise ModelConfigError(f"unknown model family {self.family!r}; choose one of {', '.join(FAMILIES)}")
        if self.size not in SIZES:
            raise ModelConfigError(f"unknown model size {self.size!r}; choose one of {', '.join(SIZES)}")
        if self.conditioning not in CONDITIONINGS:
            raise ModelConfigError(f"conditioning must be 'madan' or 'tokens', got {self.conditioning!r}")
        if self.family == "matten":
            object.__setattr__(self, "variant", 3 if self.variant is None else self.variant)
            if self.variant not in VARIANTS:
                raise ModelConfigError(f"Matten variant must be 1, 2, 3 or 4; got {self.variant}")
        elif self.variant is not None or self.conditioning != "madan":
            raise ModelConfigError("Latte has no variants and no conditioning choice")
        else:
            object.__setattr__(self, "variant", None)

    @classmethod
    def of(cls, family: str, size: str, variant: int | None = 3, conditioning: str = "madan") -> ModelSpec:
        """The spec of a model given as :func:`build_model` and a training configuration spell it: Latte ignores
        the Matten-only variant and conditioning (the conditioning must still be one of them)."""
        if str(family).lower() != "latte":
            if variant is None and str(family).lower() in FAMILIES:
                raise ModelConfigError("Matten variant must be 1, 2, 3 or 4; got None")
            return cls(family, size, variant, conditioning)
        spec = cls(family, size)
        if conditioning not in CONDITIONINGS:
            raise ModelConfigError(f"conditioning must be 'madan' or 'tokens', got {conditioning!r}")
        return spec

    @property
    def name(self) -> str:
        if self.family == "latte":
            return f"latte-{self.size}"
        return f"matten-{self.size}-v{self.variant}" + ("-tokens" if self.conditioning == "tokens" else "")

    @property
    def key(self) -> str:
        tail = f"-v{self.variant}-{self.conditioning}" if self.family == "matten" else ""
        return f"{self.family}-{self.size}{tail}"

    @property
    def size_label(self) -> str:
        """``Matten-S``, ``Latte-XL``: family and size alone (the scaling figure's curves, the tables' rows)."""
        return f"{self.family.capitalize()}-{self.size.upper()}"

    def label(self, patch: int | None = None) -> str:
        """``Matten-XL v3`` (``Matten-XL/2 v3`` with a patch), ``Latte-XL``, ``Matten-S v3, condition tokens``."""
        out = self.size_label + (f"/{patch}" if patch else "")
        if self.family == "matten":
            out += f" v{self.variant}" + (", condition tokens" if self.conditioning == "tokens" else "")
        return out

    @classmethod
    def parse(cls, name: str) -> ModelSpec:
        """``matten-xl`` (variant 3), ``matten-xl-v4``, ``matten-s-v3-tokens``, ``latte-b``, and the labels this
        class prints (``Matten-XL/2 v4``, ``Matten-S v3, condition tokens``) -> the spec. Anything else, a patch
        that is not a number included, is a ModelConfigError with a did-you-mean."""
        return cls(*cls.parse_parts(name))

    @staticmethod
    def parse_parts(name: str) -> tuple[str, str, int | None, str]:
        """(family, size, variant or None where the name spells none, conditioning) of a name, strictly."""
        import difflib
        import re

        base = str(name).lower().strip().replace(", condition tokens", "-tokens").replace(" v", "-v")
        m = re.fullmatch(r"(matten|latte)-([a-z]+)(?:/\d+)?(?:-v(\d+))?(?:-(madan|tokens))?", base)
        if m is not None:
            family, size, variant, conditioning = m.group(1), m.group(2), m.group(3), m.group(4) or "madan"
            variant = int(variant) if variant is not None else None
            if size in SIZES and (family == "matten" or (variant is None and conditioning == "madan")):
                if variant is None or variant in VARIANTS:
                    return family, size, variant, conditioning
        known = [f"matten-{size}" for size in SIZES] + [s.name for s in all_specs(include_tiny=True)]
        close = difflib.get_close_matches(base, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ModelConfigError(f"unknown model {name!r}{hint}; names look like latte-xl, matten-xl (variant 3), "
                               "matten-b-v2, matten-s-v3-tokens")

    def build(self, **kwargs) -> nn.Module:
        """:func:`build_model` of this spec (``kwargs``: patch, num_classes, num_frames, ...)."""
        extra = {} if self.family == "latte" else {"variant": self.variant, "conditioning": self.conditioning}
        return build_model(self.family, self.size, **extra, **kwargs)


def all_specs(include_tiny: bool = False) -> list[ModelSpec]:
    """Every public model: Latte and Matten variants 1-4 (M-AdaN) at S..XL (tiny too if asked), Latte first."""
    sizes = SIZES if include_tiny else PAPER_SIZES
    return [spec for size in sizes for spec in
            [ModelSpec("latte", size)] + [ModelSpec("matten", size, v) for v in (1, 2, 3, 4)]]


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
    """Build Latte or Matten. `depth` counts blocks (attention or Mamba); None takes the registry's value.
    Family, size, variant and conditioning are checked by :meth:`ModelSpec.of`."""
    spec = ModelSpec.of(family, size, variant, conditioning)
    family, size = spec.family, spec.size
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
    """One record per model of :func:`all_specs`: its ``name`` (``matten-xl-v3``), ``label`` (``Matten-XL/2 v3``),
    depth, blocks, width, parameters (patch 2) and its parameter match to variant 3 of its size."""
    rows = []
    for spec in all_specs(include_tiny):
        cfg = SIZE_CONFIGS[spec.size]
        depth = cfg.latte_depth if spec.family == "latte" else MATTEN_DEPTH[spec.variant][spec.size]
        kw = {} if spec.family == "latte" else {"variant": spec.variant}
        rows.append(
            {
                "name": spec.name,
                "label": spec.label(patch=2),
                "family": spec.family,
                "variant": spec.variant,
                "size": spec.size,
                "patch": 2,
                "layers": depth,
                "blocks": unit_description(spec.family, spec.variant, depth),
                "hidden": cfg.hidden,
                "heads": cfg.heads,
                "d_state": None if spec.family == "latte" else 16,
                "params": count_params_meta(spec.family, spec.size, **kw),
                "vs_variant3": None,
                "counted_at": "unconditional, M-AdaN, 16x4x32x32, trainable (sin-cos tables are buffers)",
            }
        )
    for r in rows:  # the ablation's parameter match: each Matten variant against variant 3 of its size
        if r["family"] == "matten":
            v3 = next(q for q in rows if q["family"] == "matten" and q["variant"] == 3 and q["size"] == r["size"])
            r["vs_variant3"] = (r["params"] - v3["params"]) / v3["params"]
    return rows
