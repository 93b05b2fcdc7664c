# probe (scan issue, 2026-11-30 seventh session; run as devtmp/p19b.py by results/mini/probe3/c1.sh): the triton scan at XL shape for several (chunk, block), beside mamba-ssm; JSON lines
import functools, json, sys, time, torch
from harness.bench import models as M
from models import scan, scan_triton as ST
t0 = time.time()
shape = M.XL_SCAN
nbytes = M.scan_bytes(**shape, elem=2)
bw = M.copy_bandwidth("cuda", 1024)
ins = M.scan_inputs(shape["batch"], shape["d"], shape["L"], shape["N"], "cuda", torch.bfloat16, groups=shape["groups"])
fns = [("cuda", scan._cuda_fn)]
for chunk in (16, 32, 64, 128):
    for block in (1, 2, 4, 8):
        fns.append((f"triton c{chunk} b{block}", functools.partial(ST.selective_scan_triton, chunk=chunk, block=block)))
for name, fn in fns:
    for bwd in (False, True):
        try:
            t = M._time_scan(fn, ins, bwd, 5, "cuda", warmup=2)
        except Exception as e:
            print(json.dumps({"backend": name, "bwd": bwd, "error": str(e)[:200]}), flush=True); continue
        need = nbytes["forward"] + (nbytes["backward"] if bwd else 0)
        print(json.dumps({"pass": "fwd+bwd" if bwd else "fwd", "backend": name, "ms": round(t * 1e3, 3),
                          "x floor": round(t / (need / bw), 2)}), flush=True)
print("s", time.time() - t0, "bw", bw / 1e9)
