"""`matten-bench run`'s orchestration on stand-in stages that honour the contracts in BRIEF.md.

The real stages are exercised end to end by tests/test_run_smoke.py (once they all exist);
here the stand-ins count their calls so the ledger's reuse / re-run / resume decisions
across a whole run can be checked exactly, in well under a second each.
"""

from __future__ import annotations

import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from report_standins import PAPER_GFLOPS, flops_record, flops_table

import models
from harness import ledger
from harness.errors import UserError
from harness.run import PRESETS, Experiment, run

PRESET = replace(
    PRESETS["smoke"], eval_steps=(2, 4), ckpt_every=1, fvd_clips=2, sizes=("s",), flops_sizes=("s",)
)


class Stages:
    """Stand-in stage modules, installed into sys.modules; ``calls`` counts each stage."""

    def __init__(self):
        self.calls: dict[str, int] = {}
        self.kill_train_once = False

    def count(self, name):
        self.calls[name] = self.calls.get(name, 0) + 1

    def install(self, monkeypatch, tmp_path):
        def prepare_dataset(dataset, source, out, *, num_frames, frame_interval, synthetic_options=None, **kw):
            self.count("prepare")
            assert dataset == "synthetic" and source is None and synthetic_options
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / "dataset.json").write_text("{}")
            return pd.DataFrame({"path": ["a.mp4", "b.mp4"]})

        def latest_checkpoint(run_dir):
            ckpts = sorted((Path(run_dir) / "checkpoints").glob("step-*.pt"))
            return ckpts[-1] if ckpts else None

        def train(config, resume=False):
            self.count("train")
            run_dir = Path(config["run_dir"])
            assert resume == (latest_checkpoint(run_dir) is not None)
            rec = ledger.start(run_dir, "train", {k: v for k, v in config.items() if k != "steps"})
            start = int(latest_checkpoint(run_dir).stem.split("-")[1]) if resume else 0
            for s in range(start + 1, config["steps"] + 1):
                if self.kill_train_once and s == 3:
                    self.kill_train_once = False
                    raise KeyboardInterrupt("killed during training")
                if s % config["ckpt_every"] == 0 or s == config["steps"]:
                    ckpt = run_dir / "checkpoints" / f"step-{s:07d}.pt"
                    ckpt.parent.mkdir(parents=True, exist_ok=True)
                    ckpt.write_bytes(b"ckpt")
            return ledger.finish(run_dir, rec, {"checkpoint": f"checkpoints/step-{config['steps']:07d}.pt"})

        def sample(checkpoint, out, *, num, **kw):
            self.count("sample")
            assert Path(checkpoint).exists()
            from harness.samples import write_shard

            write_shard(out, 0, np.zeros((num, 4, 8, 8, 3), np.uint8))

        def compute_fvd(*, real, fake, num, **kw):
            self.count("fvd")
            step = int(Path(fake).name.split("-")[1])
            return {"fvd": 100.0 - step, "protocol": {"name": "stylegan-v"}, "clips": {"real": num, "generated": num},
                    "detector": {"kind": "i3d", "sha256": "ab", "path": "/somewhere/i3d.safetensors"}}

        def count_flops(name, *, protocol="fvcore", **kw):
            self.count("flops")
            return flops_record(name, protocol, 41.5e6, 10.0 if protocol == "fvcore" else 30.0)

        weights = tmp_path / "i3d.safetensors"
        weights.write_bytes(b"w")
        monkeypatch.setattr("harness.paths.i3d_weights_path", lambda: weights)
        mods = {
            "harness.data": types.ModuleType("harness.data"),
            "harness.data.synthetic": types.ModuleType("harness.data.synthetic"),
            "harness.data.prepare": types.SimpleNamespace(prepare_dataset=prepare_dataset),
            "harness.train": types.SimpleNamespace(train=train),
            "harness.sample": types.SimpleNamespace(sample=sample),
            "harness.fvd": types.SimpleNamespace(compute_fvd=compute_fvd),
            "harness.flops": types.SimpleNamespace(count_flops=count_flops, flops_table=flops_table,
                                                   PAPER_GFLOPS=PAPER_GFLOPS, TABLE_EXPLANATION="(stand-in)"),
        }
        for name, mod in mods.items():
            monkeypatch.setitem(sys.modules, name, mod)
        # the real models (on main); only the registry listing is shortened
        monkeypatch.setattr(models, "list_models", lambda include_tiny=False: [
            {"name": "Matten-S/2-v3", "family": "matten", "variant": 3, "size": "s", "params": 41.5e6}])
        return self


@pytest.fixture
def stages(monkeypatch, tmp_path):
    return Stages().install(monkeypatch, tmp_path)


def do_run(tmp_path, preset=PRESET, tables=("variants", "flops")):
    return run(list(tables), "smoke", run_dir=tmp_path / "run", results_dir=tmp_path / "results", preset=preset)


def test_first_run_calls_every_stage_and_writes_the_report(tmp_path, stages):
    report = do_run(tmp_path)
    # 4 variants x 2 evaluation steps x (train to the step + sample + fvd); 2 FLOP counts each for
    # matten-s and latte-xl; one dataset
    assert stages.calls == {"flops": 4, "prepare": 1, "train": 8, "sample": 8, "fvd": 8}
    text = report.read_text()
    assert "NOT comparable to the paper" in text
    assert "As recorded by this run's FVD stage" in text and '"clips": null' not in text
    assert "[98.00](records/matten-tiny-v2-madan-synthetic/fvd-0000002.json)" in text
    assert "[96.00](records/matten-tiny-v4-madan-synthetic/fvd-0000004.json)" in text
    # each variant's parameter count (as trained: patch 8, 3 channels) linked to its training record
    with torch.device("meta"):
        v1 = models.build_model("matten", "tiny", variant=1, patch=8, num_classes=0, in_channels=3, input_size=32)
    count = sum(p.numel() for p in v1.parameters()) / 1e6
    assert f"[{count:,.2f}](records/matten-tiny-v1-madan-synthetic/train.json)" in text


def test_all_tables(tmp_path, stages):
    report = do_run(tmp_path, tables=("all",))
    text = report.read_text()
    for title in ("state of the art", "variants", "M-AdaN vs condition tokens", "Scaling", "FLOPs", "Parameters"):
        assert title in text
    assert "[41.50](records/params.json)" in text


def test_second_run_reuses_everything(tmp_path, stages):
    do_run(tmp_path)
    stages.calls.clear()
    report = do_run(tmp_path)
    assert stages.calls == {}
    assert "[96.00](" in report.read_text()


def test_changed_configuration_reruns_only_what_it_changes(tmp_path, stages):
    do_run(tmp_path)
    stages.calls.clear()
    do_run(tmp_path, preset=replace(PRESET, fvd_clips=3))  # training unchanged; sampling and FVD redone
    assert stages.calls == {"sample": 8, "fvd": 8}


def test_killed_training_resumes(tmp_path, stages):
    stages.kill_train_once = True
    with pytest.raises(KeyboardInterrupt):
        do_run(tmp_path, tables=("conditioning",))
    exp_dir = tmp_path / "run" / "exp" / Experiment("matten", "tiny", "synthetic").name
    assert ledger.read_record(exp_dir, "run.train-0000002")["status"] == "complete"
    assert ledger.read_record(exp_dir, "run.train-0000004")["status"] == "running"
    assert (exp_dir / "checkpoints" / "step-0000002.pt").exists()
    assert not (exp_dir / "checkpoints" / "step-0000004.pt").exists()
    stages.calls.clear()
    do_run(tmp_path, tables=("conditioning",))
    rec = ledger.read_record(exp_dir, "run.train-0000004")
    assert rec["status"] == "complete" and rec["attempts"] == 2
    # the killed step resumed from its checkpoint, then the second experiment's two; step 2's FVD was reused
    assert stages.calls["train"] == 3 and stages.calls["fvd"] == 3
    assert "prepare" not in stages.calls  # the dataset was complete


def test_missing_stage_is_named(tmp_path, stages, monkeypatch):
    monkeypatch.setitem(sys.modules, "harness.fvd", None)  # makes `import harness.fvd` fail
    with pytest.raises(UserError, match=r"not in this checkout yet: fvd \(harness.fvd\)"):
        do_run(tmp_path)


def test_paper_scale_needs_yes(tmp_path, stages):
    with pytest.raises(UserError, match=r"about [\d,]+ GPU-hours .*--yes") as e:
        run(["sota"], "paper", run_dir=tmp_path / "run", results_dir=tmp_path / "r")
    assert "10 GFMA per sample" in str(e.value)
    assert "train" not in stages.calls


def test_bad_options_exit_2():
    for args in (["--table", "nope"], ["--scale", "huge"], ["--data", "ucf101"]):
        out = subprocess.run([sys.executable, "-m", "harness.cli", "run", *args], capture_output=True, text=True)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.startswith("error: "), out.stderr
        assert "Traceback" not in out.stderr
