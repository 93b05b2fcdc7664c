"""The paper's tables and figures, built from run records.

A table builder takes *experiments* — one dict per trained model, assembled from its
ledger records by :mod:`harness.run` — and returns a pandas DataFrame whose cells are
Markdown strings: a number linked to the record it came from (``[53.1](records/...json)``)
or "–" where nothing was measured. Figures are matplotlib PNGs (Agg backend).

An experiment::

    {"name": "matten-s-v3", "family": "matten", "size": "s", "variant": 3,
     "conditioning": "madan", "dataset": "synthetic", "scale": "smoke",
     "params": Point, "gflops": Point, "fvd": {train_step: Point}, "fvd_clips": int | None}

The paper's own numbers (baselines/) and ours never share a column: the SOTA comparison is
two tables, "as reported" and "our runs", and every one of ours says its scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.baselines import DATASETS, cell_text
from harness.verdict import has_learned

MISSING = "–"
VARIANT_NAMES = {
    1: "1: global Mamba",
    2: "2: spatial + temporal Mamba",
    3: "3: spatial attn + temporal attn + global Mamba",
    4: "4: temporal attn + global Mamba",
}
CONDITIONING_NAMES = {"madan": "M-AdaN", "tokens": "condition tokens"}


@dataclass(frozen=True)
class Point:
    """One measured number, the record it came from (a path relative to the report folder), and its 95 %
    interval where the measurement has one (FVD: a bootstrap over clips)."""

    value: float | None
    record: str | None = None
    low: float | None = None
    high: float | None = None

    @property
    def interval(self) -> tuple[float, float] | None:
        """(low, high) when both ends are known, else None."""
        return (self.low, self.high) if self.low is not None and self.high is not None else None


def fmt_interval(point: Point | None) -> str:
    """A Markdown cell: the linked number and its interval, "[312.4](…) (298.0–330.1)", or "–"."""
    text = fmt(point)
    if point is not None and point.low is not None and point.high is not None and text != MISSING:
        text += f" ({point.low:,.1f}–{point.high:,.1f})"
    return text


def fmt(point: Point | None, digits: int | None = 2) -> str:
    """A Markdown cell: the number linked to its record, or "–". ``digits=None`` keeps the value as rounded upstream."""
    if point is None or point.value is None or (isinstance(point.value, float) and math.isnan(point.value)):
        return MISSING
    text = f"{point.value:,}" if digits is None else f"{point.value:,.{digits}f}"
    return f"[{text}]({point.record})" if point.record else text


def final_fvd(exp: dict[str, Any]) -> tuple[int | None, Point | None]:
    """The FVD at the last evaluated training step."""
    curve = exp.get("fvd") or {}
    if not curve:
        return None, None
    step = max(curve)
    return step, curve[step]


def model_label(exp: dict[str, Any]) -> str:
    """An experiment's label in the report: its model's (models.registry.ModelSpec.label) and, past seed 0, its seed."""
    from models.registry import ModelSpec

    spec = ModelSpec.of(exp["family"], exp["size"], exp.get("variant", 3), exp.get("conditioning", "madan"))
    return spec.label() + (f", seed {exp['seed']}" if exp.get("seed") else "")


# ----------------------------------------------------------------------------- sota


def sota_reported(baselines: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The paper's comparison as printed: FVD per dataset and GFLOPs, with each row's source."""
    fvd = baselines["fvd_sota"]
    gflops = baselines["gflops"]
    gflops_by_method = {m: i for i, m in enumerate(gflops["method"])}
    rows = []
    for i, method in enumerate(fvd["method"]):
        row = {"Method": method}
        for col, title in DATASETS.items():
            row[f"{title} FVD"] = cell_text(fvd, i, col)
        j = gflops_by_method.get(method)
        row["GFLOPs (as printed)"] = cell_text(gflops, j, "gflops") if j is not None else MISSING
        row["Source"] = fvd.loc[i, "source"]
        checked = str(fvd.loc[i, "checked"])
        if j is not None and str(gflops.loc[j, "checked"]) != checked:
            checked += f"; GFLOPs: {gflops.loc[j, 'checked']}"
        row["Checked"] = checked  # how far each number was verified against the paper, beside the number
        rows.append(row)
    return pd.DataFrame(rows)


def sota_ours(experiments: list[dict[str, Any]]) -> pd.DataFrame:
    """Our runs, one row each, with scale and dataset in their own columns (never a paper column)."""
    rows = []
    for exp in experiments:
        step, point = final_fvd(exp)
        rows.append(
            {
                "Model (ours)": model_label(exp),
                "Scale": exp.get("scale", MISSING),
                "Dataset": exp.get("dataset", MISSING),
                "Train steps": str(step) if step is not None else MISSING,
                "FVD clips": str(exp["fvd_clips"]) if exp.get("fvd_clips") else MISSING,
                "FVD": fmt(point),
                "Params (M)": fmt(exp.get("params"), 2),
                "GFMA / sample (fvcore)": fmt(exp.get("gflops"), 2),
            }
        )
    return pd.DataFrame(rows, columns=[
        "Model (ours)", "Scale", "Dataset", "Train steps", "FVD clips", "FVD", "Params (M)", "GFMA / sample (fvcore)",
    ])


# ----------------------------------------------------------------------------- ablations


def curve_table(experiments: list[dict[str, Any]], label_of) -> pd.DataFrame:
    """Rows: one experiment each (labelled by ``label_of``); columns: params, then FVD at each training step."""
    steps = sorted({s for exp in experiments for s in (exp.get("fvd") or {})})
    rows = []
    for exp in experiments:
        row = {"Model": label_of(exp), "Params (M)": fmt(exp.get("params"), 2)}
        for s in steps:
            row[f"FVD @ {s}"] = fmt((exp.get("fvd") or {}).get(s))
        rows.append(row)
    return pd.DataFrame(rows, columns=["Model", "Params (M)", *[f"FVD @ {s}" for s in steps]])


def size_label(e: dict[str, Any]) -> str:
    """``Matten-S``: a collected experiment's family and size, as models.registry spells them."""
    from models.registry import ModelSpec

    return ModelSpec(e.get("family", "matten"), e["size"]).size_label


def variant_label(e: dict[str, Any]) -> str:
    seed = f", seed {e['seed']}" if e.get("seed") else ""
    return f"{size_label(e)} variant {VARIANT_NAMES[e.get('variant', 3)]}{seed}"


def variants_table(experiments: list[dict[str, Any]]) -> pd.DataFrame:
    """Paper Fig. 8a: FVD against training iterations for variants 1-4 at matched parameter counts (and the
    main variant's second seed, where one was trained)."""
    chosen = sorted((e for e in experiments if e["family"] == "matten"),
                    key=lambda e: (e.get("variant", 3), e.get("seed", 0)))
    return curve_table(chosen, variant_label)


def conditioning_table(experiments: list[dict[str, Any]]) -> pd.DataFrame:
    """Paper Fig. 8b: M-AdaN against condition tokens."""
    chosen = sorted((e for e in experiments if e["family"] == "matten"), key=lambda e: e.get("conditioning") != "madan")
    name = CONDITIONING_NAMES.get
    return curve_table(chosen, lambda e: f"{size_label(e)} {name(e['conditioning'], e['conditioning'])}")


SIZE_ORDER = {"tiny": 0, "s": 1, "b": 2, "l": 3, "xl": 4}


def matten_sizes(baselines: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The Matten rows of ``baselines/model_sizes.csv`` (it also holds Latte's counts), their printed text kept."""
    sizes = baselines["model_sizes"]
    keep = [i for i, m in enumerate(sizes["model"]) if str(m).lower() == "matten"]
    out = sizes.iloc[keep].reset_index(drop=True)
    text = sizes.attrs.get("text")
    out.attrs["text"] = [text[i] for i in keep] if text is not None else None
    return out


def scaling_table(experiments: list[dict[str, Any]], baselines: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Paper Fig. 9: S, B, L, XL — the paper's parameter count beside ours, GFLOPs and FVD by training step."""
    chosen = sorted((e for e in experiments if e["family"] == "matten"), key=lambda e: SIZE_ORDER.get(e["size"], 9))
    table = curve_table(chosen, size_label)
    sizes = matten_sizes(baselines)
    by_size = {s.lower(): i for i, s in enumerate(sizes["size"])}
    paper = [cell_text(sizes, by_size[e["size"]], "params_m") if e["size"] in by_size else MISSING for e in chosen]
    table.insert(1, "Params (M), paper", paper)
    table.insert(3, "GFMA / sample (fvcore)", [fmt(e.get("gflops")) for e in chosen])
    return table.rename(columns={"Params (M)": "Params (M), ours"})


# ----------------------------------------------------------------------------- flops and params


def params_table(rows: list[dict[str, Any]], baselines: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Parameter counts of our reconstructions beside the paper's (Matten variant 3 only has paper numbers).

    ``rows``: ``{"model", "family", "size", "variant" (optional), "blocks" (optional), "params": Point}``.
    """
    sizes = matten_sizes(baselines)
    by_size = {s.lower(): i for i, s in enumerate(sizes["size"])}
    out = []
    for r in rows:
        has_paper = r["family"] == "matten" and r.get("variant", 3) in (3, None)
        i = by_size.get(r["size"]) if has_paper else None
        paper = cell_text(sizes, i, "params_m") if i is not None else MISSING
        ours = r.get("params")
        diff = MISSING
        if i is not None and ours is not None and ours.value is not None:
            diff = f"{100 * (ours.value - sizes.loc[i, 'params_m']) / sizes.loc[i, 'params_m']:+.1f}%"
        out.append({"Model": r["model"], "Blocks": r.get("blocks", MISSING), "Params (M), ours": fmt(ours),
                    "Params (M), paper": paper, "Ours vs paper": diff,
                    "Paper number checked": str(sizes.loc[i, "checked"]) if i is not None else MISSING})
    return pd.DataFrame(out, columns=["Model", "Blocks", "Params (M), ours", "Params (M), paper", "Ours vs paper",
                                      "Paper number checked"])


# ----------------------------------------------------------------------------- learning, noise, verdicts


def learning_table(experiments: list[dict[str, Any]], floor: Point | None) -> pd.DataFrame:
    """One row per model: its learning rate, FVD of the untrained model (step 0), at the last step with its 95 %
    interval, the last FVD over the real-vs-real floor (1 = as close to the data as the data is to itself), and
    whether the model has learned (harness.verdict.has_learned: the last interval wholly below step 0's)."""
    rows = []
    for exp in experiments:
        curve = exp.get("fvd") or {}
        step, last = final_fvd(exp)
        ratio = MISSING
        if floor is not None and floor.value and last is not None and last.value is not None:
            ratio = f"{last.value / floor.value:,.1f}×"
        first = curve.get(0)
        learned = has_learned(first and first.interval, last and last.interval)
        rows.append({"Model": model_label(exp), "Params (M)": fmt(exp.get("params"), 2), "lr": fmt(exp.get("lr"), None),
                     "FVD @ 0 (untrained)": fmt_interval(first),
                     "Last step": str(step) if step is not None else MISSING,
                     "FVD @ last step (95 % interval)": fmt_interval(last), "Last / floor": ratio,
                     "Learned": MISSING if learned is None or step == 0 else ("yes" if learned else "**no**")})
    return pd.DataFrame(rows, columns=["Model", "Params (M)", "lr", "FVD @ 0 (untrained)", "Last step",
                                       "FVD @ last step (95 % interval)", "Last / floor", "Learned"])


def verdict_table(verdicts: list[Any]) -> pd.DataFrame:
    """One row per claim (harness.verdict.Verdict): the claim, where the paper makes it, the verdict, the
    numbers it rests on (FVD at the last step of each model) and the seed gap."""
    rows = []
    for v in verdicts:
        numbers = "; ".join(f"{k} {'–' if x is None else f'{x:,.1f}'}" for k, x in v.fvd.items())
        rows.append({"Paper's claim": v.claim.name, "Where": v.claim.source, "At this scale": f"**{v.verdict}**",
                     "FVD at the last step": numbers,
                     "Seed gap": MISSING if v.seed_gap is None else f"{v.seed_gap:,.1f}", "Why": v.reason})
    return pd.DataFrame(rows, columns=["Paper's claim", "Where", "At this scale", "FVD at the last step", "Seed gap",
                                       "Why"])


# ----------------------------------------------------------------------------- output


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub Markdown table (pandas' to_markdown; tabulate is its one extra dependency)."""
    if df.empty:
        return "_no rows: nothing was measured for this table at this scale._\n"
    return df.to_markdown(index=False, disable_numparse=True) + "\n"  # keep "65.30" as printed


def plot_curves(experiments: list[dict[str, Any]], label_of, path: str | Path, title: str,
                floor: Point | None = None) -> Path | None:
    """FVD against training steps, one line per experiment, with each point's 95 % interval as an error bar
    and the real-vs-real floor as a dashed line; None (and no file) if nothing was measured. The y axis is
    logarithmic when the values span more than 20×."""
    curves = [(label_of(e), sorted((e.get("fvd") or {}).items())) for e in experiments]
    curves = [(lab, [(s, p) for s, p in pts if p is not None and p.value is not None]) for lab, pts in curves]
    curves = [(lab, pts) for lab, pts in curves if pts]
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=110)
    values = [p.value for _, pts in curves for _, p in pts]
    for lab, pts in curves:
        ys = [p.value for _, p in pts]
        err = [[max(p.value - p.low, 0) if p.low is not None else 0 for _, p in pts],
               [max(p.high - p.value, 0) if p.high is not None else 0 for _, p in pts]]
        ax.errorbar([s for s, _ in pts], ys, yerr=err, marker="o", capsize=2, label=lab)
    if floor is not None and floor.value is not None:
        ax.axhline(floor.value, color="black", linestyle="--", linewidth=1, label="real vs real (floor)")
        values.append(floor.value)
    if min(values) > 0 and max(values) / min(values) > 20:
        ax.set_yscale("log")
    else:
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")  # no "+1.1652e4" offset: show the values
    ax.set_xlabel("training iterations")
    ax.set_ylabel("FVD (lower is better)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
