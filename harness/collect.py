"""From a run directory's records to the report: gather each number with its record, build every table.

Used by ``matten-bench run`` after its stages, and on its own to rebuild a report from
records already on disk (nothing is re-run here).
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from harness import ledger, tables
from harness.baselines import load_all
from harness.errors import UserError
from harness.report import publish_record, write_report
from harness.tables import Point
from models.registry import ModelSpec


def fvd_point(rec: dict[str, Any], link: str, source: Path | None = None) -> Point:
    """An FVD stage's number with its bootstrap interval (when the record has one); a complete record without
    an FVD number is a one-line UserError (an edited or foreign record)."""
    outputs = rec.get("outputs") or {}  # an object (ledger.read_record checks)
    if not isinstance(outputs.get("fvd"), (int, float)):
        raise UserError(f"{source or link} is a complete record without an FVD number (outputs.fvd); delete it "
                        "to measure that point again")
    interval = (outputs.get("result") or {}).get("interval") or {}
    return Point(float(outputs["fvd"]), link, interval.get("low"), interval.get("high"))


def collect_floor(root: Path, report_dir: Path, dataset: str) -> dict[str, Any] | None:
    """The real-vs-real floor of ``dataset`` ({"fvd": Point, "videos_shared", "sheet"}), or None."""
    run_dir = root / "floor" / dataset
    rec = ledger.read_record(run_dir, "run.floor")
    if not rec or rec.get("status") != "complete":
        return None
    link = publish_record(ledger.record_path(run_dir, "run.floor"), report_dir, f"floor/{dataset}", root)
    sheet = _publish_sheet(run_dir / rec["outputs"].get("contact_sheet", ""), report_dir, f"real-{dataset}")
    point = fvd_point(rec, link, ledger.record_path(run_dir, "run.floor"))
    result = rec["outputs"].get("result") if isinstance(rec["outputs"].get("result"), dict) else {}
    return {"fvd": point, "videos_shared": result.get("videos_shared"), "clips": result.get("clips"), "sheet": sheet,
            "dataset": dataset}


def _publish_sheet(path: Path, report_dir: Path, name: str) -> str | None:
    """Copy a contact sheet beside the report (``sheets/<name>.png``); its path relative to the report."""
    if not path.is_file():
        return None
    import shutil

    target = report_dir / "sheets" / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    return f"sheets/{name}.png"


def collect_experiment(root: Path, report_dir: Path, exp, preset, flops: dict) -> dict[str, Any]:
    """One experiment as the table builders want it: FVD by training step (with intervals), params and GFLOPs,
    each linked, and the contact sheet of its last measured point."""
    exp_dir = root / "exp" / exp.name
    curve: dict[int, Point] = {}
    sheet = None
    for s in preset.eval_steps:
        stage = f"fvd-{s:07d}"
        rec = ledger.read_record(exp_dir, f"run.{stage}")
        if not rec or rec.get("status") != "complete":
            continue
        link = publish_record(ledger.record_path(exp_dir, f"run.{stage}"), report_dir, f"{exp.name}/{stage}", root)
        curve[s] = fvd_point(rec, link, ledger.record_path(exp_dir, f"run.{stage}"))
        sheet = _publish_sheet(exp_dir / f"samples-{s:07d}" / "contact_sheet.png", report_dir, exp.name) or sheet
    _, gflops = flops.get((exp.family, exp.size), (None, None))
    if preset.scale != "paper":
        gflops = None  # FLOPs are counted at the paper's input (16x4x32x32 latents); smaller scales train on others
    params = lr = None
    last = f"run.train-{max(preset.eval_steps):07d}"
    rec = ledger.read_record(exp_dir, last)
    on_gpu = bool(rec) and (rec.get("environment") or {}).get("machine", {}).get("device") == "cuda"
    if rec and rec.get("status") == "complete" and isinstance(rec["outputs"].get("params"), (int, float)):
        link = publish_record(ledger.record_path(exp_dir, last), report_dir, f"{exp.name}/train", root)
        params = Point(rec["outputs"]["params"] / 1e6, link)
        if isinstance(rec.get("config", {}).get("lr"), (int, float)):
            # the preset's, or scaled by width (harness.run.Preset.lr_width); 3 significant digits (1e-3 * 384/1152)
            lr = Point(float(f"{rec['config']['lr']:.3g}"), link)
    return {
        "name": exp.name,
        "family": exp.family,
        "size": exp.size,
        "variant": exp.variant,
        "conditioning": exp.conditioning,
        "seed": exp.seed,
        "sheet": sheet,
        "dataset": exp.dataset,
        "scale": preset.scale,
        "fvd": curve,
        "fvd_clips": preset.fvd.num,
        "params": params,
        "lr": lr,
        "trained_on_gpu": on_gpu,
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
    from harness.run import flops_dir, flops_model

    by_model: dict = {}
    entries, params_rows = [], []
    for family, size in preset.flops_models():
        run_dir = flops_dir(root, family, size)
        label = ModelSpec(family, size).label(patch=2)  # counted as variant 3, M-AdaN, patch 2
        rec = ledger.read_record(run_dir, "run.flops")
        params = gfma = None
        counts: list[dict] = []
        link = None
        if rec and rec.get("status") == "complete":
            link = publish_record(ledger.record_path(run_dir, "run.flops"), report_dir,
                                  f"flops/{flops_model(family, size)}", root)
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
        {"model": m.get("label", m["name"]), "family": m["family"], "size": m["size"], "variant": m.get("variant"),
         "blocks": m.get("blocks", tables.MISSING), "params": Point(m["params"] / 1e6, link)}
        for m in params_models(rec, ledger.record_path(run_dir, "run.params"))
    ]


def build_report(root: Path, report_dir: Path, preset, table_names: list[str], experiments, *,
                 command: str | None = None, wall_seconds: float | None = None) -> Path:
    """Collect every number from the records under ``root`` and write ``report_dir``/REPORT.md
    (``wall_seconds``: the running command's wall time so far, seconds)."""
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

    datasets = sorted({e.dataset for e in experiments})
    floor = collect_floor(root, report_dir, datasets[0]) if datasets else None
    sections = []
    if exps:
        sections.append(learning_section(preset, list(exps.values()), floor, verdicts(preset, experiments, exps)))
    from harness.paper_tables import PAPER_TABLES, ReportContext

    ctx = ReportContext(preset=preset, report_dir=report_dir, baselines=baselines, experiments=pick,
                        floor_point=floor["fvd"] if floor else None, flops_entries=flops_entries,
                        params_rows=params_rows)
    sections += [spec.section(ctx, spec) for spec in PAPER_TABLES.values() if spec.name in table_names]
    records = _all_records(root)
    return write_report(report_dir, scale=preset.scale, sections=sections, records=records, command=command,
                        wall_seconds=wall_seconds)


CLAIMS_NOTE = (
    "What the paper claims, judged at this scale against the gap between two training seeds of the main model "
    "(Matten variant 3, M-AdaN) at the last step: **holds** when the claimed-better model's FVD is lower than "
    "every other's by more than the seed gap and their 95 % intervals do not overlap, **does not hold** when "
    "another's is lower in the same way, **cannot tell apart** otherwise, and **not measured** when a model in "
    "the claim has no FVD at this scale (not trained here) or has not learned (its FVD at the last step is not "
    "below its untrained FVD beyond both intervals: "
    "its samples are still the untrained pipeline's, so an ordering says nothing about the architectures) "
    "(harness.verdict). One seed gap is one "
    "draw of the training noise, so a difference just beyond it is weak evidence; read the numbers beside each "
    "verdict. Nothing was tuned toward the paper's answer. The data "
    "are synthetic moving shapes at a small size, not the paper's datasets: a verdict says what these models do "
    "on these clips, and nothing about UCF101 or the other three."
)


def verdicts(preset, experiments, exps: dict[str, dict]) -> tuple[list, int | None]:
    """The paper's orderings (harness.verdict) on this run's experiments at the last step all were measured:
    (verdicts naming models by their report labels, that step)."""
    from harness.run import Experiment
    from harness.verdict import Claim, has_learned, judge, seed_gap

    ds = experiments[0].dataset
    main = Experiment("matten", preset.main_size, ds)
    key = {
        "v3": main, "v1": replace(main, variant=1), "v2": replace(main, variant=2), "v4": replace(main, variant=4),
        "tokens": replace(main, conditioning="tokens"), "latte": Experiment("latte", preset.main_size, ds),
        "seed1": replace(main, seed=preset.extra_seeds[0]) if preset.extra_seeds else None,
    }
    if preset.train_scaling and len(preset.sizes) > 1:
        key["small"] = Experiment("matten", preset.sizes[0], ds)
        key["large"] = Experiment("matten", preset.sizes[-1], ds)
    # the last step every MEASURED model of the claims reached (a model with no record, e.g. left out of a copied
    # run folder, makes its own claims "no FVD", not every claim)
    # (models with no trained point, e.g. stopped at step 0, are left out the same way: they cannot be judged)
    steps = [set(exps[e.name]["fvd"]) - {0} for e in key.values()
             if e is not None and set((exps.get(e.name) or {}).get("fvd") or {}) - {0}]
    common = set.intersection(*steps) if steps else set()
    at = max(common) if common else None

    def point(k: str) -> Point | None:
        e = key.get(k)
        return (exps.get(e.name, {}).get("fvd") or {}).get(at) if e is not None and at is not None else None

    def fvd(k: str) -> float | None:
        p = point(k)
        return p.value if p is not None else None

    def interval(k: str, step: int | None) -> tuple[float, float] | None:
        e = key.get(k)
        curve = exps.get(e.name, {}).get("fvd") or {} if e is not None else {}
        p = curve.get(step) if step is not None else None
        return p.interval if p is not None else None

    gap = seed_gap(fvd("v3"), fvd("seed1"))
    # models are named in verdicts by their report labels ("Matten-S v4"), not by these keys
    label = {k: tables.model_label(exps[e.name] if e.name in exps else asdict(e)) for k, e in key.items() if e}
    label.setdefault("large", ModelSpec("matten", preset.sizes[-1]).size_label)
    label.setdefault("small", ModelSpec("matten", preset.sizes[0]).size_label)
    claims = [
        Claim("variant 3 (attention + global Mamba) is the best of the four", "Fig. 8a", "v3", ("v1", "v2", "v4")),
        Claim("M-AdaN beats condition tokens", "Fig. 8b", "v3", ("tokens",)),
        Claim(f"the larger model is better ({preset.sizes[-1].upper()} below {preset.sizes[0].upper()})", "Fig. 9",
              "large", ("small",)),
        Claim("Matten beats Latte", "Table (UCF101, SkyTimelapse; not FaceForensics)", "v3", ("latte",)),
    ]
    fvds = {label[k]: fvd(k) for k in label}
    intervals = {label[k]: p.interval for k in label if (p := point(k)) is not None and p.interval}
    learned = {label[k]: has_learned(interval(k, 0), interval(k, at)) if at else None for k in label}
    named = [replace(c, better=label[c.better], others=tuple(label[o] for o in c.others)) for c in claims]
    return [judge(c, fvds, gap, intervals, learned) for c in named], at



def learning_section(preset, exps: list[dict], floor: dict | None, judged) -> dict:
    """Learning and noise: the floor, every model from step 0 to its last step, the seed gap, the verdicts and
    the contact sheets (real clips and each model at its last point)."""
    verdict_list, at = judged
    floor_point = floor["fvd"] if floor else None
    caption = ["Does a number measure something? Each FVD carries a 95 % bootstrap interval over clips (in "
               "brackets); the floor is the FVD between two disjoint sets of real clips at the same N, the best a "
               "model can do at this N. At step 0 every model outputs zeros (adaLN-Zero and M-AdaN initialise "
               "their last layers to zero), so every untrained model samples the same clips and scores the same "
               "FVD: the step-0 column is the pipeline's starting point, not a property of an architecture."]
    if floor:
        caption.append(f"Floor ({floor['dataset']}, {floor['clips']['a']} vs {floor['clips']['b']} real clips, "
                       f"{floor['videos_shared']} videos shared): {tables.fmt_interval(floor_point)}.")
    else:
        caption.append("No floor was measured.")
    lrs = sorted({e["lr"].value for e in exps if e.get("lr") is not None})
    if len(lrs) > 1:  # Preset.lr_width: a comparison across sizes is also one across learning rates
        caption.append(f"The models trained at {len(lrs)} learning rates ({', '.join(f'{x:g}' for x in lrs)}; the lr "
                       "column): the rate falls with the model's width, so a comparison between sizes is also one "
                       "between learning rates.")
    if any(e["family"] == "matten" and e.get("trained_on_gpu") for e in exps):
        caption.append("Matten trained on a GPU is not reproduced bit for bit: mamba-ssm's backward adds with atomics "
                       "(state-spaces/mamba#493), so one seed trained twice gives two FVDs. On the mini scale, two "
                       "runs of each recipe on one H200 differed by 45 to 466 at step 1,000 (results/mini/README.md), "
                       "more than a seed gap there; Latte, without Mamba, was reproduced exactly.")
    blocks = [("Every model from its untrained state to its last step", tables.learning_table(exps, floor_point)),
              (f"The paper's orderings at step {at}" if at is not None else "The paper's orderings",
               tables.verdict_table(verdict_list))]
    sheets = []
    if floor and floor.get("sheet"):
        sheets.append(f"Real clips (the reference set's first 8): ![real clips]({floor['sheet']})")
    for e in exps:
        if e.get("sheet"):
            step, _ = tables.final_fvd(e)
            sheets.append(f"{tables.model_label(e)} at step {step}: ![{e['name']}]({e['sheet']})")
    return {"name": "learning", "title": "Learning, noise and the paper's orderings",
            "caption": " ".join(caption) + "\n\n" + CLAIMS_NOTE, "tables": blocks,
            "after": ["Contact sheets (one row per clip, frames left to right; generated clips from the EMA "
                      "weights with the sampler of the FVD):", ""] + [f"- {x}" for x in sheets]}


def flops_table(entries: list[dict]) -> tuple[Any, str]:
    """The FLOPs helper's table (harness.flops.flops_table) with each model's numbers linked to its record.

    Models with no record get a row of "–" (and the paper's number where it prints one).
    """
    import pandas as pd

    from harness.baselines import paper_gflops_table
    from harness.flops import TABLE_EXPLANATION
    from harness.flops import flops_table as helper_table

    measured = [r for e in entries for r in e["records"]]
    df = helper_table(measured) if measured else pd.DataFrame()
    # the count records name their model (matten-xl-v3); parsed by the registry, so any spelling it reads matches
    by_model = {ModelSpec.parse(row["model"]).key: row for row in df.to_dict("records")} if not df.empty else {}
    columns = list(df.columns) if not df.empty else ["model", "params (M)", "paper GFLOPs (as printed)"]
    rows, paper_gflops = [], paper_gflops_table()
    for e in entries:
        key = ModelSpec(e["family"], e["size"]).key
        row = by_model.get(key)
        out = {"model": e["model"]}
        for col in columns[1:]:
            value = None if row is None else row.get(col)
            if col == "paper GFLOPs (as printed)":
                paper = paper_gflops.get(key) if row is None else value
                out[col] = f"{paper:,.0f}" if isinstance(paper, (int, float)) and paper == paper else tables.MISSING
            else:
                ok = isinstance(value, (int, float)) and value == value
                out[col] = tables.fmt(Point(float(value), e["link"]), None) if ok else tables.MISSING
        rows.append(out)
    return pd.DataFrame(rows, columns=columns), TABLE_EXPLANATION


def _all_records(root: Path) -> list[dict]:
    """Every record under ``root`` for the environment section (unreadable or non-object files left out)."""
    out = []
    for path in sorted(Path(root).glob("**/records/*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def params_models(rec: dict[str, Any], path: Path) -> list[dict]:
    """The params record's models, each with a number of parameters; anything else is one line naming it."""
    models = rec["outputs"].get("models")
    if not isinstance(models, list) or not all(isinstance(m, dict) and isinstance(m.get("params"), (int, float))
                                               and {"name", "family", "size"} <= set(m) for m in models):
        raise UserError(f"{path} is a params record without a list of models and their parameters; delete it to "
                        "count them again")
    return models
