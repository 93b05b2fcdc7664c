# probe (issue 14): one experiment of the mini preset trained to 1,000 steps (its own recipe), then sampled at 500
# and 1,000 with and without --clip-denoised (DDIM-50), plus DDPM-250 with the clamp at 1,000; FVD of each
# against the prepared data at the preset's N. argv: experiment name, run root, [steps]. JSON lines.
import json, os, sys, time
from dataclasses import replace
from pathlib import Path
from harness import run as R
from harness.train import train
from harness.sample import sample
from harness.fvd import compute_fvd
name, root = sys.argv[1], Path(sys.argv[2])
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
p = R.PRESETS["mini"]
p = replace(p, eval_steps=(0, steps // 2, steps))
import os
if os.environ.get("P14_CPU"):  # a check of this script on a CPU: tiny everything
    p = replace(p, train=replace(p.train, device="cpu", precision="fp32", num_workers=0, batch=2, ckpt_every=1),
                sample=replace(p.sample, device="cpu", num=8, batch_size=8, precision="fp32"),
                fvd=replace(p.fvd, device="cpu", num=8, bootstrap=10))
exp = {e.name: e for e in R.plan_experiments(p, list(R.PAPER_TABLES))}[name]
prepared = root / "data" / "synthetic" / "prepared"
exp_dir = root / "probe" / name
t0 = time.time()
train(R.train_config(p, exp, prepared, exp_dir, steps))
print(json.dumps({"exp": name, "trained_s": round(time.time() - t0, 1)}), flush=True)
todo = []
for step in (steps // 2, steps):
    for clip, sampler, n in ((False, "ddim", 50), (True, "ddim", 50)) + (((True, "ddpm", 250),) if step == steps else ()):
        out = exp_dir / f"s{step}-{sampler}{n}-{'clip' if clip else 'free'}"
        t1 = time.time()
        sample(replace(p.sample, checkpoint=str(exp_dir / "checkpoints" / f"step-{step:07d}.pt"), out=str(out),
                       clip_denoised=clip, sampler=sampler, steps=n))
        todo.append((step, clip, sampler, n, out, time.time() - t1))
print(json.dumps({"exp": name, "sampled_s": round(time.time() - t0, 1)}), flush=True)
weights = Path(os.environ.get("MATTEN_BENCH_CACHE", "/nowhere")) / "i3d" / "i3d-kinetics-400.safetensors"
while not weights.is_file():
    time.sleep(2)
time.sleep(3)
for step, clip, sampler, n, out, ts in todo:
        res = compute_fvd(replace(p.fvd, real=str(prepared), fake=str(out)))
        print(json.dumps({"exp": name, "step": step, "sampler": f"{sampler}-{n}", "clip": clip,
                          "fvd": round(R.fvd_value(res), 1), "ci": [round(res["interval"]["low"], 1), round(res["interval"]["high"], 1)] if res.get("interval") else None,
                          "sample_s": round(ts, 1)}), flush=True)
