"""Probe (not committed): eager bf16 fwd+bwd+AdamW step of every mini-scale model at the mini shape on the GPU.
Also variant 2 and 3 with the depthwise conv as K shifted multiply-adds (the compiled path's form) instead of cuDNN."""
import statistics, sys, time
import torch, torch.nn.functional as F
from models import build_model
from models.mamba import BiMamba

def shift_conv(self, x, weight, bias):
    K, L = self.d_conv, x.shape[-1]
    xp = F.pad(x, (K - 1, 0)); w = weight.squeeze(1).to(x.dtype)
    return F.silu(bias.to(x.dtype)[:, None] + sum(w[:, k, None] * xp[..., k:k + L] for k in range(K)))

B = int(sys.argv[1]) if len(sys.argv) > 1 else 64
cases = [("matten", "s", 3, "madan"), ("matten", "s", 1, "madan"), ("matten", "s", 2, "madan"),
         ("matten", "s", 4, "madan"), ("matten", "s", 3, "tokens"), ("latte", "s", 3, "madan"),
         ("matten", "b", 3, "madan"), ("shift", "s", 2, "madan"), ("shift", "s", 3, "madan")]
orig = BiMamba._conv
for fam, size, v, cond in cases:
    BiMamba._conv = shift_conv if fam == "shift" else orig
    torch.manual_seed(0); torch.cuda.reset_peak_memory_stats()
    m = build_model("matten" if fam == "shift" else fam, size, variant=v, conditioning=cond, patch=8, num_classes=10,
                    num_frames=16, in_channels=3, input_size=32).cuda()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    x = torch.randn(B, 16, 3, 32, 32, device="cuda"); t = torch.randint(0, 1000, (B,), device="cuda")
    y = torch.randint(0, 10, (B,), device="cuda")
    times = []
    for i in range(13):
        torch.cuda.synchronize(); t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = m(x, t, y)
        loss = out.float().square().mean(); loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize(); times.append(time.perf_counter() - t0)
    params = sum(p.numel() for p in m.parameters()) / 1e6
    print(f"{fam:6s} {size} v{v} {cond:6s} params {params:6.2f} M  step {1e3 * statistics.median(times[3:]):7.1f} ms"
          f"  peak {torch.cuda.max_memory_allocated() / 2**30:5.1f} GiB", flush=True)
    del m, opt
BiMamba._conv = orig
