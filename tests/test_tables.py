"""Table builders and the report on fixture records.

Numbers land in the right cells, "–" where missing, and every link resolves to a record copy.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import replace
from pathlib import Path

from report_standins import ensure_flops_module, flops_record

from harness import ledger, tables
from harness.baselines import load_all
from harness.collect import build_report
from harness.run import PRESETS, Experiment, plan_experiments
from harness.tables import Point

LINK = re.compile(r"\[([^\]]+)\]\(([^)]+)\)")
PRESET = replace(PRESETS["smoke"], eval_steps=(10, 20), sizes=("s", "xl"), flops_sizes=("s", "xl"))


def fake_stage(run_dir: Path, stage: str, outputs: dict, config: dict | None = None) -> None:
    rec = ledger.start(run_dir, stage, config or {"stage": stage}, protocol={"num": 16})
    ledger.finish(run_dir, rec, outputs)


def make_records(root: Path) -> None:
    """FVD for every smoke experiment at step 10; at step 20 only for variant 3 (M-AdaN); one FLOPs record missing."""
    for exp in plan_experiments(PRESET, list(tables_needed())):
        d = root / "exp" / exp.name
        fake_stage(d, "run.train", {"train_record": "records/train.json"})
        fake_stage(d, "run.fvd-0000010", {"fvd": 100.0 + exp.variant + (50 if exp.conditioning == "tokens" else 0)
                                         + (7 if exp.family == "latte" else 0)})
        if exp.family == "matten" and exp.variant == 3 and exp.conditioning == "madan":
            fake_stage(d, "run.fvd-0000020", {"fvd": 90.5, "path": str(root / "exp" / "x.npy")})
    fake_stage(root / "params", "run.params", {"models": [
        {"name": "Matten-S/2-v3", "family": "matten", "variant": 3, "size": "s", "blocks": "6 x (S, T, M)",
         "params": 41.5e6},
        {"name": "Matten-S/2-v1", "family": "matten", "variant": 1, "size": "s", "blocks": "27 x (M)",
         "params": 40.1e6},
        {"name": "Latte-S/2", "family": "latte", "variant": None, "size": "s", "blocks": "6 x (S, T)",
         "params": 32.48e6},
    ]})
    for model, params, gfma, gmac in (("matten-xl-v3", 854.1e6, 1234.5, 3999.0), ("latte-xl", 673.7e6, 1894.0, 5572.7)):
        fake_stage(root / "flops" / model, "run.flops", {
            "fvcore": flops_record(model, "fvcore", params, gfma), "paper": flops_record(model, "paper", params, gmac),
        })


def tables_needed():
    return ("sota", "variants", "conditioning", "scaling", "flops", "params")


def cell_links(md: str) -> list[tuple[str, str]]:
    return LINK.findall(md)


def md_rows(md: str) -> dict[str, list[str]]:
    """A Markdown table's body rows: first cell -> the other cells, stripped."""
    rows = {}
    for line in md.splitlines():
        if line.startswith("|") and not set(line) <= set("|-: "):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_fmt_links_numbers_and_dashes_missing():
    assert tables.fmt(Point(53.123, "records/a.json")) == "[53.12](records/a.json)"
    assert tables.fmt(Point(None, "records/a.json")) == "–"
    assert tables.fmt(None) == "–"
    assert tables.fmt(Point(float("nan"))) == "–"
    assert tables.fmt(Point(4008.0), 0) == "4,008"


def test_sota_reported_is_the_papers_table_with_sources():
    df = tables.sota_reported(load_all())
    matten = df[df["Method"] == "Matten"].iloc[0]
    assert matten["UCF101 FVD"] == "210.61" and matten["GFLOPs (as printed)"] == "4008"
    lvdm = df[df["Method"] == "LVDM"].iloc[0]
    assert lvdm["FaceForensics FVD"] == "–" and lvdm["GFLOPs (as printed)"] == "5718"
    assert df[df["Method"] == "DIGAN"].iloc[0]["GFLOPs (as printed)"] == "–"
    assert df["Source"].str.contains("arXiv").all()
    # how far each row was verified, beside the numbers (the GFLOPs' own state where it differs)
    assert df[df["Method"] == "MoCoGAN"].iloc[0]["Checked"].startswith("not verified against the paper text")
    assert "GFLOPs: procedure checked by the project" in df[df["Method"] == "Latte"].iloc[0]["Checked"]


def test_sota_ours_never_uses_a_paper_column():
    exp = {"family": "matten", "size": "tiny", "variant": 3, "conditioning": "madan", "dataset": "synthetic",
           "scale": "smoke", "fvd": {20: Point(90.5, "records/x.json")}, "fvd_clips": 16}
    df = tables.sota_ours([exp])
    assert not set(df.columns) & {"FaceForensics FVD", "SkyTimelapse FVD", "UCF101 FVD", "Taichi-HD FVD"}
    row = df.iloc[0]
    assert row["Scale"] == "smoke" and row["Dataset"] == "synthetic" and row["Train steps"] == "20"
    assert row["FVD"] == "[90.50](records/x.json)" and row["Params (M)"] == "–"


def test_report_from_fixture_records(tmp_path, monkeypatch):
    ensure_flops_module(monkeypatch)
    root, report_dir = tmp_path / "run", tmp_path / "results" / "smoke"
    make_records(root)
    exps = plan_experiments(PRESET, list(tables_needed()))
    path = build_report(root, report_dir, PRESET, list(tables_needed()), exps)
    text = path.read_text()

    # plain words at the top
    assert "NOT comparable to the paper" in text.split("\n## ")[0]
    # every table and figure
    for name in tables_needed():
        assert (report_dir / f"{name}.md").exists()
    assert (report_dir / "variants.png").read_bytes()[:4] == b"\x89PNG"
    assert "![Model variants (paper Fig. 8a)](variants.png)" in text
    assert "## FVD protocol" in text and "| torch |" in text

    # values land in the right cells
    variants = md_rows((report_dir / "variants.md").read_text())
    v3 = next(v for k, v in variants.items() if "variant 3" in k)
    v1 = next(v for k, v in variants.items() if "variant 1" in k)
    assert v3[1] == "[103.00](records/matten-tiny-v3-madan-synthetic/fvd-0000010.json)"
    assert v3[2].startswith("[90.50](records/matten-tiny-v3-madan-synthetic/fvd-0000020.json")
    assert v1[1].startswith("[101.00](") and v1[2] == "–"  # not measured at step 20
    cond = md_rows((report_dir / "conditioning.md").read_text())
    tokens = "records/matten-tiny-v3-tokens-synthetic/fvd-0000010.json"
    assert cond["Matten-TINY condition tokens"][1:] == [f"[153.00]({tokens})", "–"]
    flops = md_rows((report_dir / "flops.md").read_text())
    assert flops["model"][:4] == ["params (M)", "paper GFLOPs (as printed)", "paper procedure: thop GMACs, batch 3",
                                  "fvcore GFMA / clip"]
    xl = "records/flops/matten-xl-v3.json"
    assert flops["Matten-XL/2 v3"][:4] == [f"[854.1]({xl})", "4,008", f"[3,999.0]({xl})", f"[1,234.5]({xl})"]
    assert all(c == "–" or c.endswith(f"({xl})") for c in flops["Matten-XL/2 v3"][3:])  # every number linked
    assert flops["Latte-XL/2"][1] == "5,572"
    assert set(flops["Matten-S/2 v3"]) == {"–"}  # no record, and the paper prints no GFLOPs for S
    params = md_rows((report_dir / "params.md").read_text())
    assert params["Matten-S/2-v3"][:4] == ["6 x (S, T, M)", "[41.50](records/params.json)", "35", "+18.6%"]
    assert params["Matten-S/2-v3"][4].startswith("not verified against the paper text")  # checked, beside it
    assert params["Matten-S/2-v1"] == ["27 x (M)", "[40.10](records/params.json)", "–", "–", "–"]  # no paper number
    assert params["Latte-S/2"][1:3] == ["[32.48](records/params.json)", "–"]
    sota = md_rows((report_dir / "sota.md").read_text())
    latte = "[110.00](records/latte-tiny-synthetic/fvd-0000010.json)"
    assert sota["Latte-TINY"][:5] == ["smoke", "synthetic", "10", str(PRESET.fvd.num), latte]
    assert sota["Matten"][:4] == ["45.01", "53.56", "210.61", "158.56"]

    # every link resolves to a record copy, and no copy names a local path
    links = cell_links(text)
    assert len(links) >= 12
    for _, target in links:
        if target.startswith("#"):
            continue
        assert (report_dir / target).exists(), target
    # this machine's places: the run dir, the temp dir, the checkout and the home folder
    checkout = str(Path(__file__).resolve().parents[1])
    local = [str(tmp_path), tempfile.gettempdir() + "/", checkout, str(Path.home()) + "/"]
    for copy in (report_dir / "records").rglob("*.json"):
        body = copy.read_text()
        assert not [p for p in local if p in body], copy
        assert json.loads(body)["status"] == "complete"


def test_missing_everything_gives_dashes_not_errors(tmp_path, monkeypatch):
    ensure_flops_module(monkeypatch)
    exps = [Experiment("matten", "tiny", "synthetic", variant=v) for v in (1, 2)]
    path = build_report(tmp_path / "empty", tmp_path / "out", PRESET, ["variants", "flops"], exps)
    variants = md_rows((tmp_path / "out" / "variants.md").read_text())
    assert {k: v for k, v in variants.items() if k != "Model"} == {
        "Matten-TINY variant 1: global Mamba": ["–"],
        "Matten-TINY variant 2: spatial + temporal Mamba": ["–"],
    }
    assert "[" not in path.read_text().split("## FVD protocol")[0].split("## Model variants")[1]
    assert not (tmp_path / "out" / "variants.png").exists()


def test_report_says_how_the_samples_were_made():
    from harness.report import recorded_sampling

    ema = {"decay": 0.9999, "formula": "min(decay, (1 + n) / (10 + n))"}
    records = [
        {"stage": "sample", "config": {"sampler": "ddim", "steps": 50, "spacing": "iddpm", "cfg_scale": 7.0,
                                       "weights": "ema", "ema_schedule": ema}},
        {"stage": "sample", "config": {"sampler": "ddim", "steps": 50, "spacing": "iddpm", "cfg_scale": 7.0,
                                       "weights": "ema", "ema_schedule": ema}},  # the same setup: one line
        {"stage": "sample", "config": {"sampler": "ddpm", "steps": 250, "cfg_scale": 1.0, "weights": "model"}},
        {"stage": "sample", "config": {"sampler": "ddpm", "steps": 250, "cfg_scale": 1.0, "weights": "model",
                                       "clip_denoised": True}},
        {"stage": "train", "config": {}},
    ]
    assert recorded_sampling(records) == {
        "DDIM-50 (timesteps: iddpm), guidance scale 7.0, EMA weights, decay 0.9999, min(decay, (1 + n) / (10 + n))",
        "DDPM-250 (timesteps: not recorded), guidance scale 1.0, raw model weights",
        "DDPM-250 (timesteps: not recorded), guidance scale 1.0, raw model weights, predicted x_0 clamped to "
        "[-1, 1] at each step",
    }


def test_wall_spans_per_device_by_hand():
    """First start to last finish per device, in UTC whatever offset a record was written with; records left
    running (no finish) are not counted."""
    from datetime import datetime, timezone

    from harness.report import wall_spans

    cpu, gpu = {"device": "cpu: x86_64"}, {"device": "cuda: NVIDIA H200 x1"}
    records = [
        {"started": "2026-11-30T05:55:11+0000", "finished": "2026-11-30T05:55:28+0000", "environment": cpu},
        {"started": "2026-11-30T07:00:58+0100", "finished": "2026-11-30T07:10:00+0100", "environment": gpu},
        {"started": "2026-11-30T06:10:00+0000", "finished": "2026-11-30T06:22:14+0000", "environment": gpu},
        {"started": "2026-11-30T06:30:00+0000", "environment": gpu},  # left running
    ]
    utc = timezone.utc
    assert wall_spans(records) == {
        "cpu: x86_64": (datetime(2026, 11, 30, 5, 55, 11, tzinfo=utc), datetime(2026, 11, 30, 5, 55, 28, tzinfo=utc)),
        "cuda: NVIDIA H200 x1": (datetime(2026, 11, 30, 6, 0, 58, tzinfo=utc),
                                 datetime(2026, 11, 30, 6, 22, 14, tzinfo=utc)),
    }
