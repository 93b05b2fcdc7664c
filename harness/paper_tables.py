"""The paper's tables and figures, each declared once: what a preset trains for it, which stages it needs, and
how its report section (rows, figure, caption) is built.

``run`` takes the union of the stages the requested tables need and the experiments their presets give
(shared ones trained once); the report (harness.collect) is a loop over these specs in this order. Adding a
table is one ``PaperTable`` here and, where it needs one, a row builder in harness.tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import tables

STAGES = ("train", "flops", "params")  # what a table may need besides the report


@dataclass
class ReportContext:
    """What the section builders read: the preset, the paper's numbers, the collected experiments and counts."""

    preset: Any  # harness.run.Preset
    report_dir: Path
    baselines: dict
    experiments: Callable[[str], list[dict]]  # a table's collected experiments (those with records), in plan order
    floor_point: Any  # harness.tables.Point of the real-vs-real floor, or None
    flops_entries: list[dict]
    params_rows: list[dict]


@dataclass(frozen=True)
class PaperTable:
    """One table or figure of the paper: ``--table <name>``."""

    name: str
    title: str
    needs: frozenset[str]  # of STAGES
    experiments: Callable[[Any], list]  # preset -> the Experiments it trains for this table ([] when none)
    section: Callable[[ReportContext, PaperTable], dict]  # the report section: title, caption, tables, figure


# ----------------------------------------------------------------------------- what each table trains


def _experiment(*args, **kwargs):
    from harness.run import Experiment  # harness.run imports this module

    return Experiment(*args, **kwargs)


def sota_experiments(preset) -> list:
    return [_experiment(f, preset.main_size, d) for d in preset.datasets for f in ("matten", "latte")]


def variants_experiments(preset) -> list:
    ds = preset.datasets[0]
    seeds = [_experiment("matten", preset.main_size, ds, seed=k) for k in preset.extra_seeds]
    return [_experiment("matten", preset.main_size, ds, variant=v) for v in (1, 2, 3, 4)] + seeds


def conditioning_experiments(preset) -> list:
    ds = preset.datasets[0]
    return [_experiment("matten", preset.main_size, ds, conditioning=c) for c in ("madan", "tokens")]


def scaling_experiments(preset) -> list:
    sizes = preset.sizes if preset.train_scaling else (preset.main_size,)
    return [_experiment("matten", s, preset.datasets[0]) for s in sizes]


def no_experiments(preset) -> list:
    return []


# ----------------------------------------------------------------------------- how each section is built


def sota_section(ctx: ReportContext, spec: PaperTable) -> dict:
    return {
        "name": spec.name, "title": spec.title,
        "caption": "First the paper's table as printed (FVD, lower is better; 16 frames, 256x256) with each "
                   "row's source; then our runs in a separate table with their scale and dataset. Our rows "
                   "are not reproductions of the paper's rows unless their scale is `paper` and their "
                   "dataset and protocol match.",
        "tables": [("As reported in the paper", tables.sota_reported(ctx.baselines)),
                   (f"Our runs ({ctx.preset.scale} scale)", tables.sota_ours(ctx.experiments(spec.name)))],
    }


def _curves_section(ctx: ReportContext, spec: PaperTable, caption: str, rows: Callable[[list[dict]], Any],
                    label: Callable[[dict], str]) -> dict:
    """A table of FVD by training step and its figure, with the floor drawn as a line."""
    chosen = ctx.experiments(spec.name)
    fig = tables.plot_curves(chosen, label, ctx.report_dir / f"{spec.name}.png",
                             f"{spec.title}, {ctx.preset.scale} scale", ctx.floor_point)
    return {"name": spec.name, "title": spec.title, "caption": caption, "tables": [("", rows(chosen))], "figure": fig}


def variants_section(ctx: ReportContext, spec: PaperTable) -> dict:
    return _curves_section(
        ctx, spec, "FVD against training iterations for variants 1-4. The paper gives this as a figure only, so "
        "there are no paper numbers to set beside ours.", tables.variants_table,
        lambda e: f"variant {e['variant']}" + (f", seed {e['seed']}" if e.get("seed") else ""))


def conditioning_section(ctx: ReportContext, spec: PaperTable) -> dict:
    return _curves_section(
        ctx, spec, "FVD against training iterations. The paper gives this as a figure only.",
        tables.conditioning_table, lambda e: tables.CONDITIONING_NAMES.get(e["conditioning"], e["conditioning"]))


def scaling_section(ctx: ReportContext, spec: PaperTable) -> dict:
    caption = "Parameter counts (paper beside ours) and FVD against training iterations."
    if not ctx.preset.train_scaling:
        main = tables.size_label({"family": "matten", "size": ctx.preset.main_size})
        caption += (f" At {ctx.preset.scale} scale only {main} is trained; S/B/L/XL appear in the params and FLOPs "
                    "tables.")
    return _curves_section(ctx, spec, caption, lambda chosen: tables.scaling_table(chosen, ctx.baselines),
                           tables.size_label)


def flops_section(ctx: ReportContext, spec: PaperTable) -> dict:
    from harness.collect import flops_table

    df, explanation = flops_table(ctx.flops_entries)
    return {"name": spec.name, "title": spec.title, "caption": explanation, "tables": [("", df)]}


def params_section(ctx: ReportContext, spec: PaperTable) -> dict:
    from harness.baselines import paper_params

    matten_s, latte_s = (paper_params(f, "s", 3)[0] / 1e6 for f in ("matten", "latte"))  # baselines/model_sizes.csv
    return {
        "name": spec.name, "title": spec.title,
        "caption": "Our reconstruction's trainable parameter counts (unconditional, M-AdaN, patch 2, 16x4x32x32) "
                   "beside the paper's, which it gives for Matten (variant 3) only. Variants 1, 2 and 4 have "
                   "depths chosen to match variant 3's count within 5%. Matten-S deviates from the paper's "
                   f"{matten_s:.0f}M: it keeps every part of Latte-S ({latte_s:.1f}M in Latte's code) and adds "
                   f"Mamba blocks, and {matten_s:.0f}M would leave {matten_s - latte_s:.1f}M for all of them "
                   "(baselines/model_sizes.csv). The trained models' counts in the learning and scaling tables "
                   "differ a little from these: they are counted as trained (their patch, channels and classes).",
        "tables": [("", tables.params_table(ctx.params_rows, ctx.baselines))],
    }


PAPER_TABLES: dict[str, PaperTable] = {t.name: t for t in (
    PaperTable("sota", "Comparison with the state of the art (paper Table)", frozenset({"train", "flops"}),
               sota_experiments, sota_section),
    PaperTable("variants", "Model variants (paper Fig. 8a)", frozenset({"train"}), variants_experiments,
               variants_section),
    PaperTable("conditioning", "Conditioning: M-AdaN vs condition tokens (paper Fig. 8b)", frozenset({"train"}),
               conditioning_experiments, conditioning_section),
    PaperTable("scaling", "Scaling (paper Fig. 9)", frozenset({"train", "flops", "params"}), scaling_experiments,
               scaling_section),
    PaperTable("flops", "FLOPs", frozenset({"flops"}), no_experiments, flops_section),
    PaperTable("params", "Parameters", frozenset({"params"}), no_experiments, params_section),
)}


def needs(names: list[str], stage: str) -> bool:
    """Whether any of the tables ``names`` needs ``stage`` (one of STAGES)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
    return any(stage in PAPER_TABLES[n].needs for n in names)
