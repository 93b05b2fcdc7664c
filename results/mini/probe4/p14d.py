# probe 4 (issue 14; for the next device session): which change brings the mini scale's main model (Matten-S v3,
# FVD 938 = 13.3x the floor in run 5) closer to 10x within the same training budget? One arm per process, side by
# side on one H200, each trained to 1,000 steps with the mini recipe except as named:
#   base     the recipe as run 5 (constant lr 1e-3); sampled at 1,000 with the preset's sampler (DDPM-50, x_0
#            clamped, no guidance) and also with guidance 1.5, 2.5, 4.0 and with the raw (not EMA) weights
#   cool750  the learning rate falling linearly to 0 from step 750 to 1,000 (--lr-decay-start/-end)
#   cool500  the same from step 500
# Trains and samples only; devtmp/fvd_dev.py measures every set's FVD afterwards in one process. argv: arm, run root.
import json, os, sys, time
from dataclasses import replace
from pathlib import Path
from harness import run as R
from harness.train import train
from harness.sample import sample
arm, root = sys.argv[1], Path(sys.argv[2])
steps = 1000
p = R.PRESETS["mini"]
if os.environ.get("P14_CPU"):  # a check of this script on a CPU: tiny everything
    steps = 4
    p = replace(p, train=replace(p.train, device="cpu", precision="fp32", num_workers=0, batch=2, ckpt_every=1),
                sample=replace(p.sample, device="cpu", num=8, batch_size=8, precision="fp32", steps=3),
                fvd=replace(p.fvd, device="cpu", num=8, bootstrap=10))
p = replace(p, eval_steps=(0, steps))
exp = {e.name: e for e in R.plan_experiments(p, list(R.PAPER_TABLES))}["matten-s-v3-madan-synthetic"]
decay = {"base": None, "cool750": 0.75, "cool500": 0.5}[arm]
prepared = root / "data" / "synthetic" / "prepared"
exp_dir = root / "probe4" / arm
cfg = R.train_config(p, exp, prepared, exp_dir, steps)
if decay is not None:
    cfg = replace(cfg, lr_decay_start=int(decay * steps), lr_decay_end=steps)
t0 = time.time()
train(cfg)
print(json.dumps({"arm": arm, "trained_s": round(time.time() - t0, 1), "lr": cfg.describe_lr()}), flush=True)
ckpt = str(exp_dir / "checkpoints" / f"step-{steps:07d}.pt")
sets = [("cfg1", {})]
if arm == "base":
    sets += [("cfg1.5", {"cfg_scale": 1.5}), ("cfg2.5", {"cfg_scale": 2.5}), ("cfg4", {"cfg_scale": 4.0}),
             ("raw", {"use_ema": False})]
for tag, kw in sets:
    out = exp_dir / f"s{steps}-{tag}"
    t1 = time.time()
    sample(replace(p.sample, checkpoint=ckpt, out=str(out), **kw))
    print(json.dumps({"arm": arm, "set": tag, "sample_s": round(time.time() - t1, 1)}), flush=True)
