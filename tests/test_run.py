"""`matten-bench run`'s orchestration on stand-in stages that honour the stages' contracts (ARCHITECTURE.md).

The real stages are exercised end to end by tests/test_run_smoke.py (once they all exist);
here the stand-ins count their calls so the ledger's reuse / re-run / resume decisions
across a whole run can be checked exactly, in well under a second each.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types
from dataclasses import asdict, replace
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

SMOKE = PRESETS["smoke"]
PRESET = replace(
    SMOKE, eval_steps=(2, 4), sizes=("s",), flops_sizes=("s",), extra_seeds=(),
    train=replace(SMOKE.train, ckpt_every=1), sample=replace(SMOKE.sample, num=2), fvd=replace(SMOKE.fvd, num=2),
)


class Stages:
    """Stand-in stage modules, installed into sys.modules; ``calls`` counts each stage."""

    def __init__(self):
        self.calls: dict[str, int] = {}
        self.kill_train_once = False
        self.offsets: dict[str, float] = {}  # experiment name -> added to its FVDs
        self.slope = 1.0  # FVD = 100 - slope x step (+ offset): with 1 the intervals of steps 0 and 4 overlap
        self.fvd_fails_for = None  # an experiment whose FVDs fail (one line)

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
            run_dir = Path(config.run_dir)
            assert resume == (latest_checkpoint(run_dir) is not None)
            rec = ledger.start(run_dir, "train", {k: v for k, v in asdict(config).items() if k != "steps"})
            start = int(latest_checkpoint(run_dir).stem.split("-")[1]) if resume else 0
            if config.steps == 0:  # the untrained model's checkpoint, as harness.train writes it
                (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
                (run_dir / "checkpoints" / "step-0000000.pt").write_bytes(b"ckpt")
            for s in range(start + 1, config.steps + 1):
                if self.kill_train_once and s == 3:
                    self.kill_train_once = False
                    raise KeyboardInterrupt("killed during training")
                if s % config.ckpt_every == 0 or s == config.steps:
                    ckpt = run_dir / "checkpoints" / f"step-{s:07d}.pt"
                    ckpt.parent.mkdir(parents=True, exist_ok=True)
                    ckpt.write_bytes(b"ckpt")
            return ledger.finish(run_dir, rec, {"checkpoint": f"checkpoints/step-{config.steps:07d}.pt"})

        def sample(cfg, *, replace_stale=False):
            self.count("sample")
            assert Path(cfg.checkpoint).exists()
            assert replace_stale  # run owns its samples folders: samples of older options are remade
            from harness.clip_shards import write_shard

            write_shard(cfg.out, 0, np.zeros((cfg.num, 4, 8, 8, 3), np.uint8))

        def compute_fvd(cfg):
            self.count("fvd")
            if Path(cfg.fake).parent.name == self.fvd_fails_for:
                raise UserError(f"unreadable sample shard {cfg.fake}/clips/clips-00000.npy")
            fake, num = Path(cfg.fake), cfg.num
            step = int(fake.name.split("-")[1])
            value = 100.0 - self.slope * step + self.offsets.get(fake.parent.name, 0.0)
            return {"fvd": value, "interval": {"low": value - 2, "high": value + 3},
                    "protocol": {"name": "stylegan-v"}, "clips": {"real": num, "generated": num},
                    "detector": {"kind": "i3d", "sha256": "ab", "path": "/somewhere/i3d.safetensors"}}

        def real_floor(cfg):
            self.count("floor")
            num = cfg.num
            return {"fvd": 50.0, "interval": {"low": 45.0, "high": 55.0}, "clips": {"a": num, "b": num},
                    "videos_shared": 0}

        def write_contact_sheet(path, clips, **kw):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(b"stand-in png")

        def eval_clips(prepared_dir, num, **kw):
            yield np.full((num, 4, 8, 8, 3), 128, np.uint8)

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
            "harness.data.clips": types.SimpleNamespace(eval_clips=eval_clips),
            "harness.train": types.SimpleNamespace(train=train),
            "harness.sample": types.SimpleNamespace(sample=sample, write_contact_sheet=write_contact_sheet),
            "harness.fvd": types.SimpleNamespace(compute_fvd=compute_fvd, real_floor=real_floor),
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
    assert stages.calls == {"flops": 4, "prepare": 1, "floor": 1, "train": 8, "sample": 8, "fvd": 8}
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


def test_samples_made_again_with_other_options_are_measured_again(tmp_path, stages):
    # the FVD stage's configuration holds the sampling stage's: new samples in the same folders, new FVDs
    do_run(tmp_path)
    stages.calls.clear()
    do_run(tmp_path, preset=replace(PRESET, sample=replace(PRESET.sample, steps=PRESET.sample.steps + 1)))
    assert stages.calls == {"sample": 8, "fvd": 8}


def test_changed_configuration_reruns_only_what_it_changes(tmp_path, stages):
    do_run(tmp_path)
    stages.calls.clear()
    preset = replace(PRESET, sample=replace(PRESET.sample, num=3), fvd=replace(PRESET.fvd, num=3))
    do_run(tmp_path, preset=preset)  # training unchanged; sampling and FVD redone
    assert stages.calls == {"sample": 8, "fvd": 8, "floor": 1}  # the floor is measured at the new N too


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


def _vae_folder(root: Path) -> Path:
    (root / "vae").mkdir(parents=True)
    (root / "vae" / "config.json").write_text("{}")
    (root / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"w")
    return root / "vae"


def test_paper_scale_needs_yes(tmp_path, stages, monkeypatch):
    data = {d: tmp_path / d for d in ("ffs", "sky", "ucf101", "taichi")}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the input check sees a GPU ...
    monkeypatch.setattr("harness.run.measure_tflops", lambda preset, gfma: (200.0, "assumed"))  # ... not timed
    with pytest.raises(UserError, match=r"about [\d,]+ GPU-hours .*--yes") as e:
        run(["sota"], "paper", run_dir=tmp_path / "run", results_dir=tmp_path / "r", data=data,
            vae=f"sd-v1-4:{_vae_folder(tmp_path)}")
    assert "10 GFMA per sample" in str(e.value)
    assert "train" not in stages.calls


def test_every_input_problem_is_listed_before_any_stage(tmp_path, stages, monkeypatch):
    """--data at a scale that does not use it; all four missing datasets at once; no GPU; no VAE weights."""
    with pytest.raises(UserError) as e:
        run(["variants"], "smoke", run_dir=tmp_path / "run", results_dir=tmp_path / "r", data={"ucf101": tmp_path})
    assert str(e.value) == "--data ucf101: the smoke scale does not use it (it uses synthetic)"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("MATTEN_BENCH_VAE", raising=False)
    with pytest.raises(UserError) as e:
        run(["sota"], "paper", run_dir=tmp_path / "run", results_dir=tmp_path / "r", yes=True)
    message = str(e.value)
    assert message.startswith("the ffs, sky, taichi, ucf101 datasets needed: pass --data ffs=DIR --data sky=DIR")
    assert "trains and samples on a GPU and torch sees none" in message and "--vae sd-v1-4 needs a path" in message
    monkeypatch.setenv("PATH", str(tmp_path))  # no MPS control program either: the missing GPU is what is named
    with pytest.raises(UserError, match="^the mini scale trains and samples on a GPU and torch sees none"):
        run(["variants"], "mini", run_dir=tmp_path / "run", results_dir=tmp_path / "r")
    assert stages.calls == {}  # nothing ran


def test_bad_options_exit_2():
    for args in (["--table", "nope"], ["--scale", "huge"], ["--data", "ucf101"]):
        out = subprocess.run([sys.executable, "-m", "harness.cli", "run", *args], capture_output=True, text=True)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.startswith("error: "), out.stderr
        assert "Traceback" not in out.stderr


def test_learning_section_floor_seed_gap_and_verdicts(tmp_path, stages):
    """Step-0 points, the floor, a second seed of the main model, and the verdicts from made-up FVDs (intervals
    -2/+3 around each, every model learning 10 a step): v4 beats v3 by 8 > the seed gap 1 with intervals apart
    (does not hold), tokens within the gap (cannot tell), Latte worse by 20 (holds)."""
    stages.slope = 10.0
    names = {e: Experiment("matten", "tiny", "synthetic", **kw).name for e, kw in {
        "seed1": {"seed": 1}, "v1": {"variant": 1}, "v2": {"variant": 2}, "v4": {"variant": 4},
        "tokens": {"conditioning": "tokens"}}.items()}
    stages.offsets = {names["seed1"]: 1.0, names["v1"]: 10.0, names["v2"]: 20.0, names["v4"]: -8.0,
                      names["tokens"]: 0.5, Experiment("latte", "tiny", "synthetic").name: 20.0}
    preset = replace(PRESET, eval_steps=(0, 2, 4), extra_seeds=(1,))
    report = do_run(tmp_path, preset=preset, tables=("sota", "variants", "conditioning"))
    text = report.read_text()
    assert stages.calls["train"] == 7 * 3 and stages.calls["floor"] == 1  # 7 models, steps 0, 2 and 4
    assert "## Learning, noise and the paper's orderings" in text
    floor = "Floor (synthetic, 2 vs 2 real clips, 0 videos shared): [50.00](records/floor/synthetic.json) (45.0–55.0)"
    assert floor in text
    assert "[100.00](records/matten-tiny-v3-madan-synthetic/fvd-0000000.json) (98.0–103.0)" in text  # step 0
    # each model's learning rate, linked to the training record that used it
    assert "| [0.0001](records/matten-tiny-v3-madan-synthetic/train.json) " in text
    assert "Matten-TINY variant 3: spatial attn + temporal attn + global Mamba, seed 1" in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| variant 3 (")
            or line.startswith("| M-AdaN") or line.startswith("| Matten beats") or line.startswith("| the larger")}
    assert "**does not hold**" in rows["variant 3 (attention + global Mamba) is the best of the four"]
    assert "**cannot tell apart**" in rows["M-AdaN beats condition tokens"]
    assert "**holds**" in rows["Matten beats Latte"]
    assert "**cannot tell apart**" in rows["the larger model is better (S below S)"] or "no FVD" in text
    assert re.search(r"\| 1\.0 +\| lower than Latte-TINY \(the closest\) by 20\.0", rows["Matten beats Latte"])
    assert "Matten-TINY v4 is lower by 8.0 > seed gap 1.0" in rows[
        "variant 3 (attention + global Mamba) is the best of the four"]
    assert "real clips](sheets/real-synthetic.png)" in text
    assert (tmp_path / "results" / "sheets" / "real-synthetic.png").exists()


def test_models_that_have_not_learned_get_no_verdict(tmp_path, stages):
    """FVD 100 at step 0 (98-103) and 96 at step 4 (94-99): the intervals overlap, so no model has learned
    (the first H200 mini run): every claim is "not measured" and the learning table says "no"."""
    names = {e: Experiment("matten", "tiny", "synthetic", **kw).name for e, kw in {
        "seed1": {"seed": 1}, "v4": {"variant": 4}}.items()}
    stages.offsets = {names["seed1"]: 1.0, names["v4"]: -8.0}
    preset = replace(PRESET, eval_steps=(0, 2, 4), extra_seeds=(1,))
    text = do_run(tmp_path, preset=preset, tables=("sota", "variants", "conditioning")).read_text()
    rows = [line for line in text.splitlines() if line.startswith(("| variant 3 (", "| M-AdaN", "| Matten beats"))]
    assert len(rows) == 3 and all("**not measured**" in r and "not learned" in r for r in rows)
    v3 = next(line for line in text.splitlines() if line.startswith("| Matten-TINY v3 "))
    assert "| **no**" in v3


def test_report_only_writes_the_same_numbers_from_the_records_and_runs_nothing(tmp_path, stages, monkeypatch):
    """A run made elsewhere (its run folder copied back): --report-only runs no stage and checks no input (here
    the stand-ins would fail any call, and torch "sees no GPU"), and its report holds the run's numbers."""
    first = do_run(tmp_path).read_text()
    stages.calls.clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    again = run(["variants", "flops"], "smoke", run_dir=tmp_path / "run", results_dir=tmp_path / "again",
                preset=PRESET, report_only=True).read_text()
    assert stages.calls == {}
    numbers = re.compile(r"\[[\d,.]+\]\(records/[^)]+\)")
    assert numbers.findall(again) == numbers.findall(first) and len(numbers.findall(first)) > 10
    assert f"--scale smoke --run-dir {tmp_path / 'run'} --report-only`" in again
    span = r"- stages on cpu[^\n]*: from \d{4}-\d\d-\d\d [\d:]+ to [\d:]+ UTC, [\d.]+ min of wall time"
    assert re.search(span, again)
    with pytest.raises(UserError, match="holds no records of the smoke scale's models for variants"):
        run(["variants"], "smoke", run_dir=tmp_path / "nothing", results_dir=tmp_path / "r3", preset=PRESET,
            report_only=True)
    # the right folder read as another scale, or one level too deep: no model of that scale has records there
    with pytest.raises(UserError, match=r"no records of the mini scale's models .* like exp/matten-s-v1-madan"):
        run(["variants"], "mini", run_dir=tmp_path / "run", results_dir=tmp_path / "r4", report_only=True)
    with pytest.raises(UserError, match="no records of the mini scale's models"):  # its FLOP counts do not count
        run(["all"], "mini", run_dir=tmp_path / "run", results_dir=tmp_path / "r4", report_only=True)
    (tmp_path / "run" / "params" / "records").mkdir(parents=True, exist_ok=True)  # an empty records folder
    with pytest.raises(UserError, match="no records"):
        run(["params"], "smoke", run_dir=tmp_path / "run", results_dir=tmp_path / "r6", preset=PRESET,
            report_only=True)
    with pytest.raises(UserError, match="holds no records"):
        run(["variants"], "smoke", run_dir=tmp_path / "run" / "exp", results_dir=tmp_path / "r5", preset=PRESET,
            report_only=True)


def test_a_mistyped_table_or_scale_gets_a_did_you_mean(tmp_path):
    with pytest.raises(UserError, match=r"--table 'variant': one of .*, all \(did you mean 'variants'\?\)"):
        run(["variant"], "smoke", run_dir=tmp_path / "run", results_dir=tmp_path / "r")
    with pytest.raises(UserError, match=r"--scale 'smok'.* \(did you mean 'smoke'\?\)"):
        run(["variants"], "smok", run_dir=tmp_path / "run", results_dir=tmp_path / "r")
    with pytest.raises(UserError, match="--table 'bogus'"):  # beside "all" too
        run(["all", "bogus"], "smoke", run_dir=tmp_path / "run", results_dir=tmp_path / "r")
    with pytest.raises(UserError) as e:
        run(["xyzzy"], "smoke", run_dir=tmp_path / "run", results_dir=tmp_path / "r")
    assert "did you mean" not in str(e.value)


def test_a_run_folder_missing_one_model_keeps_the_other_verdicts(tmp_path, stages):
    """A run copied back without one model (v4): only the claims naming v4 lose their verdict, by its label."""
    import shutil

    stages.slope = 10.0
    stages.offsets = {Experiment("latte", "tiny", "synthetic").name: 20.0,
                      Experiment("matten", "tiny", "synthetic", seed=1).name: 1.0}
    preset = replace(PRESET, eval_steps=(0, 2, 4), extra_seeds=(1,))
    do_run(tmp_path, preset=preset, tables=("sota", "variants"))
    shutil.rmtree(tmp_path / "run" / "exp" / Experiment("matten", "tiny", "synthetic", variant=4).name)
    text = run(["sota", "variants"], "smoke", run_dir=tmp_path / "run", results_dir=tmp_path / "again",
               preset=preset, report_only=True).read_text()
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "no FVD for Matten-TINY v4" in rows["variant 3 (attention + global Mamba) is the best of the four"]
    assert "**holds**" in rows["Matten beats Latte"]


FVD_RECORD = "exp/matten-tiny-v1-madan-synthetic/records/run.fvd-0000004.json"


@pytest.mark.parametrize("record,content,expected", [
    (FVD_RECORD, '{"status": "complete", "outp', "cannot be read as JSON"), (FVD_RECORD, "", "cannot be read as JSON"),
    (FVD_RECORD, "[1, 2]", "holds JSON but not an object"),
    (FVD_RECORD, '{"status": "complete", "outputs": {}}', "without an FVD number"),
    ("floor/synthetic/records/run.floor.json", '{"status": "complete"}', "without an outputs object"),
    ("floor/synthetic/records/run.floor.json", '{"status": "complete", "outputs": [3]}', "without an outputs object"),
    ("params/records/run.params.json", '{"status": "complete", "outputs": {"models": [{"name": "x"}]}}',
     "without a list of models"),
])
def test_a_damaged_record_is_one_line_naming_it(tmp_path, stages, record, content, expected):
    """A record cut short, emptied, replaced or edited in a copied run folder: one line naming the file."""
    do_run(tmp_path, tables=("variants", "params"))
    path = tmp_path / "run" / record
    assert path.exists()
    path.write_text(content)
    with pytest.raises(UserError, match=expected) as e:
        run(["variants", "params"], "smoke", run_dir=tmp_path / "run", results_dir=tmp_path / "again",
            preset=PRESET, report_only=True)
    assert str(path) in str(e.value)


def test_a_model_stopped_at_step_0_does_not_pull_every_verdict_to_step_0(tmp_path, stages):
    """Latte's records reach only step 0 (an interrupted run): the other claims are judged at step 4, where the
    models learned; only Latte's claim has no FVD."""
    import shutil

    stages.slope = 10.0
    stages.offsets = {Experiment("matten", "tiny", "synthetic", seed=1).name: 1.0}
    preset = replace(PRESET, eval_steps=(0, 2, 4), extra_seeds=(1,))
    do_run(tmp_path, preset=preset, tables=("sota", "variants"))
    latte = tmp_path / "run" / "exp" / Experiment("latte", "tiny", "synthetic").name / "records"
    for p in latte.glob("run.fvd-000000[24].json"):
        p.unlink()
    shutil.rmtree(tmp_path / "again", ignore_errors=True)
    text = run(["sota", "variants"], "smoke", run_dir=tmp_path / "run", results_dir=tmp_path / "again",
               preset=preset, report_only=True).read_text()
    assert "### The paper's orderings at step 4" in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "not measured" not in rows["variant 3 (attention + global Mamba) is the best of the four"]
    assert "no FVD for Latte-TINY" in rows["Matten beats Latte"]


def test_a_failed_fvd_costs_no_other_point_nor_the_report(tmp_path, stages):
    """An FVD that fails (one line, e.g. a damaged sample shard) is named at the end; every other point is measured
    and the report is written with it as '–'; a rerun measures only what failed."""
    bad = Experiment("matten", "tiny", "synthetic", variant=2).name
    stages.fvd_fails_for = bad
    with pytest.raises(UserError) as e:
        do_run(tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"2 FVD(s) failed: FVD {bad} @ 2: unreadable sample shard ")
    assert "the report" in msg and "has every point that was measured" in msg
    text = (tmp_path / "results" / "REPORT.md").read_text()
    assert f"records/{Experiment('matten', 'tiny', 'synthetic', variant=4).name}/fvd-0000004.json" in text
    assert f"records/{bad}/fvd-" not in text  # its params link stays; its FVDs are '–'
    stages.fvd_fails_for, stages.calls = None, {}
    do_run(tmp_path)
    assert stages.calls == {"fvd": 2}  # only the two that failed


def test_a_file_where_an_experiment_folder_goes_is_one_line(tmp_path, stages):
    exp = tmp_path / "run" / "exp" / Experiment("matten", "tiny", "synthetic", variant=1).name
    exp.parent.mkdir(parents=True)
    exp.write_text("x")
    with pytest.raises(UserError, match="a file where an experiment's folder goes"):
        do_run(tmp_path)
    assert "train" not in stages.calls


def test_a_run_whose_checkpoints_will_not_fit_is_refused_before_any_training(tmp_path, stages, monkeypatch):
    """The experiments share one disk: their checkpoints are added up (the third mini run on the H200 filled its
    64 GB with eight models' checkpoints, results/mini/README.md). By hand, per experiment: 16 bytes a parameter,
    times the checkpoints this preset writes (a checkpoint every step to step 4: 1, 2, 3, 4), which keep 100 never
    prunes."""
    from harness import checkpoint
    from harness.checkpoint import state_nbytes
    from harness.run import meta_model, plan_experiments, train_config

    exps = plan_experiments(PRESET, ["variants", "flops"])
    prepared = tmp_path / "run" / "data" / "synthetic" / "prepared"
    keep, evals = PRESET.train.keep_checkpoints, len(PRESET.eval_steps)
    assert PRESET.train.ckpt_every == 1 and PRESET.eval_steps == (2, 4) and keep >= 4
    models = [meta_model(train_config(PRESET, e, prepared, tmp_path, 4), prepared) for e in exps]
    # a checkpoint: model and EMA as stored, and AdamW's two fp32 moments of each trainable parameter
    size = [2 * state_nbytes(m.state_dict()) + 8 * sum(p.numel() for p in m.parameters() if p.requires_grad)
            for m in models]
    need = 4 * sum(size)
    monkeypatch.setattr(checkpoint, "free_disk_bytes", lambda path: need - 1)
    with pytest.raises(UserError, match=rf"^the checkpoints need about {need / 1e9:.3g} GB more on the disk of .*"
                                        rf"\(each experiment keeps {keep} checkpoint\(s\) \+ its {evals} evaluation"):
        do_run(tmp_path)
    assert stages.calls == {"flops": 4, "prepare": 1}  # nothing trained, no FVD floor
    monkeypatch.setattr(checkpoint, "free_disk_bytes", lambda path: need)
    do_run(tmp_path)
    assert stages.calls["train"] == 8


def test_the_mini_preset_keeps_its_evaluation_steps_checkpoints_and_one_more():
    from harness.run import train_config

    mini = PRESETS["mini"]
    cfg = train_config(mini, Experiment("matten", "s", "synthetic"), Path("p"), Path("e"), 250)
    assert cfg.keep_checkpoints == 1 and cfg.keep_steps == mini.eval_steps == (0, 250, 500, 1000)


def test_options_that_do_not_change_the_model_reuse_finished_trainings(tmp_path, stages):
    """Saving, logging, workers and the preflight are not a training's identity: switching --jobs (which turns the
    preflight off) once re-ran every training, and the first, to step 0, was refused as 'past --steps 0'."""
    do_run(tmp_path)
    quiet = replace(PRESET, train=replace(PRESET.train, preflight=False, num_workers=3, keep_checkpoints=7,
                                          ckpt_every=2, log_every=5))
    do_run(tmp_path, preset=quiet)
    assert stages.calls["train"] == 8 and stages.calls["sample"] == 8  # all reused
    do_run(tmp_path / "lr", preset=replace(PRESET, train=replace(PRESET.train, lr=3e-4)))
    lr_run = replace(PRESET, train=replace(PRESET.train, lr=3e-4))
    from harness.run import NOT_TRAIN_IDENTITY, train_identity

    assert "lr" in train_identity(lr_run.train) and not NOT_TRAIN_IDENTITY & set(train_identity(quiet.train))


def test_the_learning_rate_falls_with_the_width_where_the_preset_says_so():
    """Mini: lr 1e-3 at S's width 384, so Matten-B (768) trains at 5e-4 (it diverged at 1e-3 in the third mini
    run); the paper scale trains every size at Latte's 1e-4."""
    from harness.run import train_config

    mini, paper = PRESETS["mini"], PRESETS["paper"]
    lr = {s: train_config(mini, Experiment("matten", s, "synthetic"), Path("p"), Path("e"), 250).lr for s in ("s", "b")}
    assert lr == {"s": 1e-3, "b": 5e-4}
    assert {paper.lr_for(s) for s in ("s", "b", "l", "xl")} == {1e-4}
    assert mini.lr_for("xl") == 1e-3 * 384 / 1152


def test_only_pixel_space_presets_clamp_the_predicted_x0():
    """Mini samples pixels (no VAE) and clamps x_0 to [-1, 1] at each step (IDDPM's clip_denoised); the paper
    scale samples SD latents, which the sample stage refuses to clamp, as Latte does not."""
    mini, paper = PRESETS["mini"], PRESETS["paper"]
    assert mini.sample.clip_denoised and mini.train.vae in (None, "", "identity")
    assert (mini.sample.sampler, mini.sample.sampling_steps) == ("ddpm", 50)  # the learned variances' sampler
    assert not paper.sample.clip_denoised and paper.train.vae.startswith("sd-")


def test_a_folder_trained_with_another_configuration_is_refused_not_continued(tmp_path, stages):
    """A changed learning rate (or any option that changes the model) in an existing run folder: its checkpoints
    must not be continued as the new configuration's (a helper's case: Matten-B's lr halved, the old step-5
    checkpoint resumed, and step 0 refused as 'past --steps 0')."""
    do_run(tmp_path)
    with pytest.raises(UserError, match=r"^\S+/exp/matten-tiny-v1-madan-synthetic was trained with another "
                                        r"configuration \(lr 0\.0001 then, 0\.0002 now; run\.train-0000002\.json\): "
                                        r"its checkpoints cannot continue this one: delete .* or use another "
                                        r"--run-dir$"):
        do_run(tmp_path, preset=replace(PRESET, train=replace(PRESET.train, lr=2e-4)))


def test_a_run_folder_with_records_of_an_older_format_is_reused_without_training_again(tmp_path, stages):
    """Records written before the training identity left out saving, logging and the preflight: their stages run
    again as far as the ledger knows, but a step already trained is not trained again (and a pruned one is named)."""
    import json

    do_run(tmp_path)
    trained = stages.calls["train"]
    for rec in (tmp_path / "run" / "exp").glob("*/records/run.train-*.json"):  # the older format: every option
        r = json.loads(rec.read_text())
        r["config"] = {**r["config"], "preflight": True, "num_workers": 0, "ckpt_every": 1}
        r["config_hash"] = "older"
        rec.write_text(json.dumps(r))
    do_run(tmp_path)
    assert stages.calls["train"] == trained + 4  # only each model's last step's stage calls train (nothing left)
    exp = next((tmp_path / "run" / "exp").glob("matten-tiny-v1-*"))
    (exp / "checkpoints" / "step-0000002.pt").unlink()
    (exp / "records" / "run.train-0000002.json").unlink()
    with pytest.raises(UserError, match=r"holds checkpoints up to step 4 but not step 2 \(pruned\)"):
        do_run(tmp_path)


def test_the_report_says_when_models_trained_at_different_learning_rates(tmp_path, stages):
    from harness.run import train_config

    wide = replace(PRESET, lr_width=32, sizes=("tiny",))  # tiny is 64 wide: lr 1e-4 x 32 / 64
    assert train_config(wide, Experiment("matten", "tiny", "synthetic"), Path("p"), Path("e"), 2).lr == 5e-5
    text = do_run(tmp_path, preset=wide, tables=("variants",)).read_text()
    assert "learning rates" not in text  # one size, one rate
    assert "| [5e-05](records/matten-tiny-v1-madan-synthetic/train.json) " in text
    two = replace(wide, sizes=("tiny", "s"), train_scaling=True)  # S is 384 wide: 1e-4 x 32 / 384 = 8.33e-6
    text = do_run(tmp_path / "two", preset=two, tables=("scaling",)).read_text()
    assert ("The models trained at 2 learning rates (8.33e-06, 5e-05; the lr column): the rate falls with the "
            "model's width, so a comparison between sizes is also one between learning rates.") in text
    assert "| [8.33e-06](records/matten-s-v3-madan-synthetic/train.json) " in text


def test_the_report_says_that_matten_on_a_gpu_is_not_reproduced_bit_for_bit(tmp_path, stages):
    text = do_run(tmp_path, tables=("variants",)).read_text()
    assert "not reproduced bit for bit" not in text  # trained on the CPU (the stand-in stages' records say so)
    for rec in (tmp_path / "run" / "exp").glob("matten-tiny-v3-*/records/run.train-0000004.json"):
        r = json.loads(rec.read_text())
        r["environment"]["machine"]["device"] = "cuda"  # as a GPU run's record says
        rec.write_text(json.dumps(r))
    text = do_run(tmp_path, tables=("variants",)).read_text()
    assert ("Matten trained on a GPU is not reproduced bit for bit: mamba-ssm's backward adds with atomics "
            "(state-spaces/mamba#493)") in " ".join(text.split())


def test_run_with_a_latent_vae_samples_unclamped():
    """A helper's case: `run --scale mini --vae sd-v1-4:PATH` kept the clamp, which the sample stage refuses for
    latents, so each experiment failed at its first sampling after training."""
    from harness.run import with_vae

    mini = PRESETS["mini"]
    sd = with_vae(mini, "sd-v1-4:/weights")
    assert sd.train.vae == "sd-v1-4:/weights" and sd.sample.clip_denoised is False
    assert sd.sample.sampler == mini.sample.sampler and sd.sample.num == mini.sample.num
    assert with_vae(mini, "identity").sample.clip_denoised is True
