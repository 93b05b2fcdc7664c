"""From a run directory's records to the report: gather each number with its record, build every table.

Used by ``matten-bench run`` after its stages, and on its own to rebuild a report from
records already on disk (nothing is re-run here).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import ledger, tables
from harness.baselines import load_all
from harness.report import publish_record, write_report
from harness.tables import Point


def collect_experiment(root: Path, report_dir: Path, exp, preset, flops: dict) -> dict[str, Any]:
    """One experiment as the table builders want it: FVD by training step, params and GFLOPs, each linked."""
    exp_dir = root / "exp" / exp.name
    curve: dict[int, Point] = {}
    for s in preset.eval_steps:
        stage = f"fvd-{s:07d}"
        rec = ledger.read_record(exp_dir, f"run.{stage}")
        if not rec or rec.get("status") != "complete":
            continue
        link = publish_record(ledger.record_path(exp_dir, f"run.{stage}"), report_dir, f"{exp.name}/{stage}", root)
        curve[s] = Point(float(rec["outputs"]["fvd"]), link)
    _, gflops = flops.get((exp.family, exp.size), (None, None))
    if preset.scale != "paper":
        gflops = None  # FLOPs are counted at the paper's input (16x4x32x32 latents); smaller scales train on others
    params = None
    last = f"run.train-{max(preset.eval_steps):07d}"
    rec = ledger.read_record(exp_dir, last)
    if rec and rec.get("status") == "complete" and isinstance(rec["outputs"].get("params"), (int, float)):
        link = publish_record(ledger.record_path(exp_dir, last), report_dir, f"{exp.name}/train", root)
        params = Point(rec["outputs"]["params"] / 1e6, link)
    return {
        "name": exp.name,
        "family": exp.family,
        "size": exp.size,
        "variant": exp.variant,
        "conditioning": exp.conditioning,
        "dataset": exp.dataset,
        "scale": preset.scale,
        "fvd": curve,
        "fvd_clips": preset.fvd_clips,
        "params": params,
        "gflops": gflops,
    }


def _find_number(obj: Any, keys: tuple[str, ...]) -> float | None:
    """The first number under any of ``keys``, searched through nested dicts (records differ by stage)."""
    if isinstance(obj, dict):
        for k in keys:
            if isinstance(obj.get(k), (int, float)) and not isinstance(obj.get(k), bool):
                return float(obj[k])
        for v in obj.values():
            found = _find_number(v, keys)
            if found is not None:
                return found
    return None


def collect_flops(root: Path, report_dir: Path, preset) -> tuple[dict, list[dict], list[dict]]:
    """{(family, size): (params Point, fvcore GFMA Point)}, the FLOPs entries and the params rows.

    A FLOPs entry: ``{"model", "family", "size", "link", "records": [count_flops records]}``.
    """
    by_model: dict = {}
    entries, params_rows = [], []
    for family, size in preset.flops_models():
        run_dir = root / "flops" / f"{family}-{size}"
        label = f"{family.capitalize()}-{size.upper()}/2" + (" v3" if family == "matten" else "")
        rec = ledger.read_record(run_dir, "run.flops")
        params = gfma = None
        counts: list[dict] = []
        link = None
        if rec and rec.get("status") == "complete":
            link = publish_record(ledger.record_path(run_dir, "run.flops"), report_dir, f"flops/{family}-{size}", root)
            counts = [c for c in rec["outputs"].values() if isinstance(c, dict) and "fma" in c]
            fv = next((c for c in counts if c.get("protocol") == "fvcore"), None)
            if fv is not None:
                params = Point(fv["params"] / 1e6, link)
                gfma = Point(fv["fma"] / fv["batch"] / 1e9, link)
        by_model[(family, size)] = (params, gfma)
        entries.append({"model": label, "family": family, "size": size, "link": link, "records": counts})
        params_rows.append({"model": label, "family": family, "size": size, "params": params})
    return by_model, entries, params_rows


def collect_params(root: Path, report_dir: Path) -> list[dict]:
    """Rows for the params table from the registry's counts (the ``params`` stage), each linked to its record."""
    run_dir = root / "params"
    rec = ledger.read_record(run_dir, "run.params")
    if not rec or rec.get("status") != "complete":
        return []
    link = publish_record(ledger.record_path(run_dir, "run.params"), report_dir, "params", root)
    return [
        {"model": m["name"], "family": m["family"], "size": m["size"], "variant": m.get("variant"),
         "blocks": m.get("blocks", tables.MISSING), "params": Point(m["params"] / 1e6, link)}
        for m in rec["outputs"]["models"]
    ]


def build_report(root: Path, report_dir: Path, preset, table_names: list[str], experiments, *,
                 command: str | None = None) -> Path:
    """Collect every number from the records under ``root`` and write ``report_dir``/REPORT.md."""
    root, report_dir = Path(root), Path(report_dir)
    baselines = load_all()
    flops_by_model, flops_entries, params_rows = collect_flops(root, report_dir, preset)
    registry_rows = collect_params(root, report_dir)
    if registry_rows:
        params_rows = registry_rows
        for r in registry_rows:  # the registry's count wins over the FLOPs record's for the same model
            if r["family"] == "latte" or r.get("variant") == 3:
                old = flops_by_model.get((r["family"], r["size"]), (None, None))
                flops_by_model[(r["family"], r["size"])] = (r["params"], old[1])
    exps = {e.name: collect_experiment(root, report_dir, e, preset, flops_by_model) for e in experiments}

    def pick(table: str) -> list[dict]:
        return [exps[e.name] for e in preset.experiments(table) if e.name in exps]

    sections = []
    if "sota" in table_names:
        sections.append({
            "name": "sota", "title": "Comparison with the state of the art (paper Table)",
            "caption": "First the paper's table as printed (FVD, lower is better; 16 frames, 256x256) with each "
                       "row's source; then our runs in a separate table with their scale and dataset. Our rows "
                       "are not reproductions of the paper's rows unless their scale is `paper` and their "
                       "dataset and protocol match.",
            "tables": [("As reported in the paper", tables.sota_reported(baselines)),
                       (f"Our runs ({preset.scale} scale)", tables.sota_ours(pick("sota")))],
        })
    for name, title, builder, label, caption in [
        ("variants", "Model variants (paper Fig. 8a)", tables.variants_table,
         lambda e: f"variant {e['variant']}",
         "FVD against training iterations for variants 1-4. The paper gives this as a figure only, so there "
         "are no paper numbers to set beside ours."),
        ("conditioning", "Conditioning: M-AdaN vs condition tokens (paper Fig. 8b)", tables.conditioning_table,
         lambda e: tables.CONDITIONING_NAMES.get(e["conditioning"], e["conditioning"]),
         "FVD against training iterations. The paper gives this as a figure only."),
    ]:
        if name in table_names:
            chosen = pick(name)
            fig = tables.plot_curves(chosen, label, report_dir / f"{name}.png", f"{title}, {preset.scale} scale")
            sections.append({"name": name, "title": title, "caption": caption,
                             "tables": [("", builder(chosen))], "figure": fig})
    if "scaling" in table_names:
        chosen = pick("scaling")
        fig = tables.plot_curves(chosen, lambda e: f"Matten-{e['size'].upper()}", report_dir / "scaling.png",
                                 f"Scaling (paper Fig. 9), {preset.scale} scale")
        caption = "Parameter counts (paper beside ours) and FVD against training iterations."
        if not preset.train_scaling:
            caption += (f" At {preset.scale} scale only Matten-{preset.main_size} is trained; S/B/L/XL appear "
                        "in the params and FLOPs tables.")
        sections.append({"name": "scaling", "title": "Scaling (paper Fig. 9)", "caption": caption,
                         "tables": [("", tables.scaling_table(chosen, baselines))], "figure": fig})
    if "flops" in table_names:
        df, explanation = flops_table(flops_entries)
        sections.append({"name": "flops", "title": "FLOPs", "caption": explanation, "tables": [("", df)]})
    if "params" in table_names:
        sections.append({
            "name": "params", "title": "Parameters",
            "caption": "Our reconstruction's trainable parameter counts (unconditional, M-AdaN, patch 2, 16x4x32x32) "
                       "beside the paper's, which it gives for Matten (variant 3) only. Variants 1, 2 and 4 have "
                       "depths chosen to match variant 3's count within 5%. Matten-S deviates from the paper's "
                       "35M (see DESIGN.md).",
            "tables": [("", tables.params_table(params_rows, baselines))],
        })
    records = _all_records(root)
    return write_report(report_dir, scale=preset.scale, sections=sections, records=records, command=command)


def flops_table(entries: list[dict]) -> tuple[Any, str]:
    """The FLOPs helper's table (harness.flops.flops_table) with each model's numbers linked to its record.

    Models with no record get a row of "–" (and the paper's number where it prints one).
    """
    import pandas as pd

    from harness.flops import PAPER_GFLOPS, TABLE_EXPLANATION
    from harness.flops import flops_table as helper_table

    measured = [r for e in entries for r in e["records"]]
    df = helper_table(measured) if measured else pd.DataFrame()
    by_model = {row["model"]: row for row in df.to_dict("records")} if not df.empty else {}
    columns = list(df.columns) if not df.empty else ["model", "params (M)", "paper GFLOPs (as printed)"]
    rows = []
    for e in entries:
        key = f"{e['family']}-{e['size']}"
        row = by_model.get(key)
        out = {"model": e["model"]}
        for col in columns[1:]:
            value = None if row is None else row.get(col)
            if col == "paper GFLOPs (as printed)":
                paper = PAPER_GFLOPS.get(key) if row is None else value
                out[col] = f"{paper:,.0f}" if isinstance(paper, (int, float)) and paper == paper else tables.MISSING
            else:
                ok = isinstance(value, (int, float)) and value == value
                out[col] = tables.fmt(Point(float(value), e["link"]), None) if ok else tables.MISSING
        rows.append(out)
    return pd.DataFrame(rows, columns=columns), TABLE_EXPLANATION


def _all_records(root: Path) -> list[dict]:
    out = []
    for path in sorted(Path(root).glob("**/records/*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return out
