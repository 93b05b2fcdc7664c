"""The run ledger's skip / re-run / resume decisions, on a stage written the way every stage uses it."""

from __future__ import annotations

import json

import pytest

from harness import ledger


def toy_stage(run_dir, config, *, die_after: int | None = None) -> dict:
    """A stage that writes one file per step and can be 'killed' part way (like a training job)."""
    action = ledger.plan(run_dir, "toy", config)
    if action == "skip":
        return ledger.read_record(run_dir, "toy")
    rec = ledger.start(run_dir, "toy", config)
    out = run_dir / "toy"
    out.mkdir(exist_ok=True)
    if action == "run":
        for old in out.glob("step-*"):
            old.unlink()
    for step in range(config["steps"]):
        path = out / f"step-{step}"
        if path.exists():  # resume: a finished step is not redone
            continue
        if die_after is not None and step == die_after:
            raise KeyboardInterrupt("killed")
        path.write_text(str(step))
    return ledger.finish(run_dir, rec, {"steps": sorted(p.name for p in out.iterdir())})


def test_first_run_writes_complete_record(tmp_path):
    rec = toy_stage(tmp_path, {"steps": 3})
    on_disk = json.loads((tmp_path / "records" / "toy.json").read_text())
    assert on_disk["status"] == "complete" == rec["status"]
    assert on_disk["config"] == {"steps": 3}
    assert on_disk["config_hash"] == ledger.config_hash({"steps": 3})
    assert on_disk["outputs"]["steps"] == ["step-0", "step-1", "step-2"]
    assert on_disk["attempts"] == 1
    assert {"torch", "python", "git_commit", "device"} <= set(on_disk["environment"])


def test_unchanged_config_is_skipped(tmp_path):
    first = toy_stage(tmp_path, {"steps": 2})
    assert ledger.plan(tmp_path, "toy", {"steps": 2}) == "skip"
    (tmp_path / "toy" / "step-0").write_text("sentinel")  # a re-run would overwrite this
    again = toy_stage(tmp_path, {"steps": 2})
    assert again["finished"] == first["finished"]
    assert (tmp_path / "toy" / "step-0").read_text() == "sentinel"
    assert ledger.find_complete(tmp_path, "toy", {"steps": 2}) is not None


def test_changed_config_is_rerun(tmp_path):
    toy_stage(tmp_path, {"steps": 2})
    assert ledger.plan(tmp_path, "toy", {"steps": 3}) == "run"
    assert ledger.find_complete(tmp_path, "toy", {"steps": 3}) is None
    rec = toy_stage(tmp_path, {"steps": 3})
    assert rec["config"] == {"steps": 3}
    assert rec["outputs"]["steps"] == ["step-0", "step-1", "step-2"]


def test_config_hash_ignores_key_order_but_not_values():
    assert ledger.config_hash({"a": 1, "b": 2}) == ledger.config_hash({"b": 2, "a": 1})
    assert ledger.config_hash({"a": 1}) != ledger.config_hash({"a": 2})


def test_interrupted_stage_resumes(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        toy_stage(tmp_path, {"steps": 4}, die_after=2)
    left = ledger.read_record(tmp_path, "toy")
    assert left["status"] == "running"  # never "complete" after a kill
    assert ledger.find_complete(tmp_path, "toy", {"steps": 4}) is None
    assert ledger.plan(tmp_path, "toy", {"steps": 4}) == "resume"
    (tmp_path / "toy" / "step-0").write_text("kept")  # a resume keeps finished work
    rec = toy_stage(tmp_path, {"steps": 4})
    assert rec["status"] == "complete"
    assert rec["attempts"] == 2
    assert rec["started"] == left["started"]
    assert (tmp_path / "toy" / "step-0").read_text() == "kept"
    assert rec["outputs"]["steps"] == ["step-0", "step-1", "step-2", "step-3"]


def test_interrupted_stage_with_new_config_starts_over(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        toy_stage(tmp_path, {"steps": 4}, die_after=2)
    assert ledger.plan(tmp_path, "toy", {"steps": 5}) == "run"
    rec = toy_stage(tmp_path, {"steps": 5})
    assert rec["attempts"] == 1
