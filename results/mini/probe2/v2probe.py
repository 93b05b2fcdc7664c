"""Eager bf16 fwd+bwd+AdamW step of Matten-S v2 and v3 at the mini shape: scan backend auto (short sequences ->
torch) against mamba-ssm's kernel for every sequence."""
import statistics, time
import torch
from models import build_model, scan

B = 64
for v, backend in ((2, "auto"), (2, "cuda"), (3, "auto"), (3, "torch")):
    scan.set_backend(backend)
    torch.manual_seed(0); torch.cuda.reset_peak_memory_stats()
    m = build_model("matten", "s", variant=v, patch=8, num_classes=10, num_frames=16, in_channels=3, input_size=32).cuda()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True)
    x = torch.randn(B, 16, 3, 32, 32, device="cuda"); t = torch.randint(0, 1000, (B,), device="cuda")
    y = torch.randint(0, 10, (B,), device="cuda")
    times = []
    for i in range(12):
        torch.cuda.synchronize(); t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = m(x, t, y)
        loss = out.float().square().mean(); loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize(); times.append(time.perf_counter() - t0)
    print(f"matten-s v{v} backend {backend:5s} -> used {scan.backend_in_use():10s} step {1e3 * statistics.median(times[3:]):7.1f} ms"
          f"  peak {torch.cuda.max_memory_allocated() / 2**30:5.1f} GiB", flush=True)
    del m, opt
    torch.cuda.empty_cache()
scan.set_backend("auto")
