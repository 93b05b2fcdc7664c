# probe (trainer issue, 2026-11-30 eighth session; ran as devtmp/p13c.py on one H200: PYTHONPATH=$PWD python3 devtmp/p13c.py):
# is the Latte-S/8 eager step at the mini shape bound by the host (kernel launches) or by the GPU, and how much GPU
# time does the loop spend a step. Prints JSON lines, also to $OUT/p13c.jsonl. Numbers: results/benchmarks-history.md.
import json, os, statistics, time
import torch
from torch.profiler import profile, ProfilerActivity
from harness.bench import train as B
dev = torch.device("cuda")
shape = B.Shape(size="s", patch=8, batch=64, frames=16, channels=3, latent=32, num_classes=10)
opts = B.Options(compile=False, reference=False, sampling=False, loop_steps=100, loop_workers=4)
out = open(os.path.join(os.environ.get("OUT", "."), "p13c.jsonl"), "a")
def say(**k):
    line = json.dumps(k); print(line); out.write(line + "\n"); out.flush()
g = torch.Generator(device=dev).manual_seed(0)
x, t, y = B._inputs(shape, dev, g); noise = torch.randn(x.shape, generator=g, device=dev)
model = B._build("latte", shape, opts, dev).train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0, fused=True)
step = B.make_train_step(model, opt, x, t, y, noise, bf16=True)
for _ in range(5): step()
torch.cuda.synchronize()
def unsynced(n=30):
    t0 = time.perf_counter()
    for _ in range(n): step()
    torch.cuda.synchronize(); return (time.perf_counter() - t0) / n * 1e3
def synced(n=30):
    return statistics.median(B.time_it(step, dev, 0, n))
def cpu_only(n=30):  # host time to enqueue a step when the GPU queue is not full: launch cost
    torch.cuda.synchronize(); ts = []
    for _ in range(n):
        t0 = time.perf_counter(); step(); ts.append(time.perf_counter() - t0); torch.cuda.synchronize()
    return statistics.median(ts) * 1e3
for r in range(4):
    say(probe="pure", rep=r, synced_ms=round(synced(), 2), unsynced_ms=round(unsynced(), 2), host_enqueue_ms=round(cpu_only(), 2))
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    t0 = time.perf_counter()
    for _ in range(10): step()
    torch.cuda.synchronize(); wall = (time.perf_counter() - t0) / 10 * 1e3
ka = prof.key_averages()
dev_total = sum(e.self_device_time_total for e in ka) / 10 / 1e3
nk = sum(e.count for e in ka if e.self_device_time_total > 0 and e.device_type == torch.autograd.DeviceType.CUDA) / 10
say(probe="profile-pure", wall_ms_profiled=round(wall, 2), kernel_ms_per_step=round(dev_total, 2), kernels_per_step=nk)
rows = sorted(ka, key=lambda e: -e.self_device_time_total)[:12]
for e in rows:
    say(probe="top-kernel", name=e.key[:90], ms_per_step=round(e.self_device_time_total / 10 / 1e3, 3), count=e.count / 10)
del model, opt, step; torch.cuda.empty_cache()
for loader in ("threads", "processes"):
    o = B.Options(compile=False, reference=False, sampling=False, loop_steps=100, loop_workers=4, loop_loader=loader)
    pure = B.pure_step("latte", shape, o, dev)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter(); lp = B.train_loop("latte", shape, o, dev); wall = time.perf_counter() - t0
    ka = prof.key_averages()
    say(probe="loop", loader=loader, pure_step_ms=round(pure["step_ms"], 2), pure_all=pure["step_ms_all"],
        loop_sps=round(lp["loop_samples_per_s"], 1), intervals=lp["loop_samples_per_s_intervals"],
        kernel_ms_per_step=round(sum(e.self_device_time_total for e in ka) / 100 / 1e3, 2), wall_s=round(wall, 1))
