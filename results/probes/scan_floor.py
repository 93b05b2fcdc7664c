# probe (scan issue): `bench gpu`'s table (d) with mamba-ssm's kernel only (its `torch` row is slow at XL shapes;
# pass `torch` to add it) and its table (c), the mixer, as JSON lines. Run on the GPU: python3 scan_floor.py floor|mixer
import json
import sys
import time

import torch

from harness.bench import models as M
from models import scan

part, t0 = sys.argv[1], time.time()
assert scan.cuda_available()
if part == "floor":
    shape = M.XL_SCAN
    nbytes = M.scan_bytes(**shape, elem=2)
    bw = M.copy_bandwidth("cuda", 1024)
    ins = M.scan_inputs(shape["batch"], shape["d"], shape["L"], shape["N"], "cuda", torch.bfloat16, groups=shape["groups"])
    rows = []
    backends = [("cuda (mamba-ssm)", scan._cuda_fn)]
    if scan.triton_available():  # the triton backend, since this probe first ran
        from models.scan_triton import selective_scan_triton

        backends.append(("triton (ours)", selective_scan_triton))
    if "torch" in sys.argv:
        backends.append(("torch", scan.selective_scan_torch))
    for name, fn in backends:
        for bwd in (False, True):
            t = M._time_scan(fn, ins, bwd, 5, "cuda", warmup=2)
            need = nbytes["forward"] + (nbytes["backward"] if bwd else 0)
            rows.append({"pass": "fwd+bwd" if bwd else "fwd", "backend": name, "median ms": t * 1e3, "bytes (GB)": need / 1e9,
                         "copy GB/s": bw / 1e9, "floor ms": need / bw * 1e3, "x floor": t / (need / bw)})
            print(json.dumps(rows[-1]), flush=True)
    out = {"shape": shape, "bytes": nbytes, "rows": rows}
else:
    out = {"rows": M.bench_mixer("cuda", batch=5, tokens=4096, dim=1152, heads=16, frames=16, repeats=20)}
print(json.dumps({"part": part, "s": time.time() - t0, **out}, default=str), flush=True)
