# probe 4's FVDs in one process (concurrent FVD processes thrash the CPUs): every folder under SAMPLES_ROOT/*/ that
# holds clips/ against the prepared synthetic data, with the mini preset's FVD options on DEVICE; JSON lines.
# argv: prepared folder, samples root, device.
import json, sys, time
from dataclasses import replace
from pathlib import Path
from harness import run as R
from harness.fvd import compute_fvd
p = R.PRESETS["mini"]
import os
if os.environ.get("FVD_NUM"):  # a check of this script on a CPU with a tiny probe
    p = replace(p, fvd=replace(p.fvd, num=int(os.environ["FVD_NUM"]), bootstrap=10))
real, root, device = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
for d in sorted(x for x in root.glob("*/*") if (x / "clips").is_dir()):
    t0 = time.time()
    res = compute_fvd(replace(p.fvd, real=real, fake=str(d), device=device))
    line = {"set": f"{d.parent.name}/{d.name}", "fvd": round(R.fvd_value(res), 1), "s": round(time.time() - t0)}
    if res.get("interval"):
        line["ci"] = [round(res["interval"]["low"], 1), round(res["interval"]["high"], 1)]
    print(json.dumps(line), flush=True)
