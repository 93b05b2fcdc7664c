"""CPU stages of the mini run, done here because the GPU image lacks PyAV (synthetic writer) and fvcore."""
import sys, time
from pathlib import Path
from harness.run import PRESETS, stage_params, stage_flops, stage_prepare
root = Path(sys.argv[1]).resolve()
p = PRESETS["mini"]
which = sys.argv[2:] or ["prepare", "params", "flops"]
for w in which:
    t = time.time()
    if w == "prepare":
        stage_prepare(root, p, "synthetic", {})
    elif w == "params":
        stage_params(root)
    elif w == "flops":
        for fam, size in p.flops_models():
            stage_flops(root, p, fam, size)
    print(f"{w}: {time.time() - t:.1f} s", flush=True)
