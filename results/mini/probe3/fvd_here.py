# probe 3's FVDs on the CPU: each folder under SAMPLES_ROOT that holds clips/ (a samples folder brought back from
# the GPU machine) against the prepared synthetic data, with the mini preset's FVD options on the CPU; JSON lines.
# Ran as: MATTEN_BENCH_CACHE=<folder with i3d/> python fvd_here.py runs/mini/data/synthetic/prepared SAMPLES_ROOT
import json, sys, time
from dataclasses import replace
from pathlib import Path
from harness import run as R
from harness.fvd import compute_fvd
p = R.PRESETS["mini"]
real, root = sys.argv[1], Path(sys.argv[2])
for d in sorted(root.iterdir()):
    if not (d / "clips").is_dir():
        continue
    t0 = time.time()
    res = compute_fvd(replace(p.fvd, real=real, fake=str(d), device="cpu", bootstrap=500))
    print(json.dumps({"set": d.name, "fvd": round(R.fvd_value(res), 1), "ci": [round(res["interval"]["low"], 1), round(res["interval"]["high"], 1)], "s": round(time.time() - t0)}), flush=True)
