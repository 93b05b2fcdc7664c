# probe (scan issue): `bench gpu`'s table (d), the scan against its floor at Matten-XL/2's shape, without the `torch`
# backend (slow there; pass `torch` to add it), and its table (c), the mixer, as JSON. Run on the GPU:
# python3 scan_floor.py floor|mixer. (At 13:39 UTC on 2026-11-30 it ran a copy of scan_floor's loop over
# mamba-ssm's kernel alone; since, it calls scan_floor, which also times the triton backend where triton imports.)
import json
import sys
import time

from harness.bench import models as M
from models import scan

part, t0 = sys.argv[1], time.time()
assert scan.cuda_available()
if part == "floor":
    out = {"shape": M.XL_SCAN, "rows": M.scan_floor("cuda", with_torch="torch" in sys.argv)}
else:
    out = {"rows": M.bench_mixer("cuda", batch=5, tokens=4096, dim=1152, heads=16, frames=16, repeats=20)}
print(json.dumps({"part": part, "s": time.time() - t0, **out}, default=str), flush=True)
