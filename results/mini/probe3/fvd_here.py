import json, sys, time
from dataclasses import replace
from pathlib import Path
from harness import run as R
from harness.fvd import compute_fvd
p = R.PRESETS["mini"]
real = "/work/main/runs/mini/data/synthetic/prepared"
for d in sorted(Path("/tmp/p14fvd").iterdir()):
    if not (d / "clips").is_dir():
        continue
    t0 = time.time()
    res = compute_fvd(replace(p.fvd, real=real, fake=str(d), device="cpu", bootstrap=500))
    print(json.dumps({"set": d.name, "fvd": round(R.fvd_value(res), 1), "ci": [round(res["interval"]["low"], 1), round(res["interval"]["high"], 1)], "s": round(time.time() - t0)}), flush=True)
