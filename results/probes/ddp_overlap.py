# probe (multi-GPU issue, 2026-11-30 ninth session), on nvidia-h200-x2, after ddp_where.py:
#   TAG=plain torchrun --standalone --nproc-per-node 2 results/probes/ddp_overlap.py
#   TAG=high TORCH_NCCL_HIGH_PRIORITY=1 torchrun ...   (NCCL's stream at high priority: PyTorch's ProcessGroupNCCL)
# ddp_where.py found DDP adding ~12 ms a step to Latte-XL/2 (161 -> 173 ms) whatever the buckets, while the bare
# all-reduce of all its gradients takes 8.2 ms: as if the all-reduces barely overlapped the backward. This probe
# profiles DDP steps on rank 0 and splits the NCCL kernels' time into the part that runs while a compute kernel
# runs and the part that runs alone (exposed), and says when the first and last NCCL kernel start in the step.
# Rank 0 prints JSON lines, also to $OUT/ddp_overlap.jsonl. Numbers: results/benchmarks-history.md.
import json
import os
import statistics

import torch
import torch.distributed as dist
from torch.profiler import ProfilerActivity, profile

from harness.bench import train as B
from harness.machine import compile_blocks

rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
torch.cuda.set_device(local)
dev = torch.device("cuda", local)
dist.init_process_group("nccl", device_id=dev)
tag = os.environ.get("TAG", "plain")
out = open(os.path.join(os.environ.get("OUT", "."), "ddp_overlap.jsonl"), "a") if rank == 0 else None


def say(**k):
    if rank == 0:
        line = json.dumps({"tag": tag, **k})
        print(line, flush=True)
        out.write(line + "\n")
        out.flush()


shape = B.Shape()  # XL/2, batch 5, 16x4x32x32, 101 classes
g = torch.Generator(device=dev).manual_seed(rank)
x, t, y = B._inputs(shape, dev, g)
noise = torch.randn(x.shape, generator=g, device=dev)
model = B._build("latte", shape, B.Options(), dev).train()
compile_blocks(model, "default")
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0, fused=True)


def ddp(bucket_mb):
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[local], gradient_as_bucket_view=True,
                                                     bucket_cap_mb=bucket_mb, broadcast_buffers=False)


arms = {"alone": model, "ddp25": ddp(25), "ddp400": ddp(400)}
steps = {name: B.make_train_step(m, opt, x, t, y, noise, bf16=True) for name, m in arms.items()}
for step in steps.values():
    for _ in range(4):
        step()
torch.cuda.synchronize()
times = {name: [] for name in arms}
for _ in range(3):
    for name, step in steps.items():
        dist.barrier()
        times[name] += B.time_it(step, dev, 1, 12)
for name, ms in times.items():
    say(probe="arm", arm=name, median_ms=round(statistics.median(ms), 2), n=len(ms))


def union(iv):
    iv, merged = sorted(iv), []
    for a, b in iv:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged


def overlap(a, merged):  # length of [a0, a1] covered by the merged intervals
    return sum(max(0.0, min(a[1], b) - max(a[0], s)) for s, b in merged)


for name in ("ddp25", "ddp400"):
    step = steps[name]
    dist.barrier()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            step()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA and e.time_range.end > 0]
    nccl = [(e.time_range.start, e.time_range.end) for e in kernels if "nccl" in e.name.lower()]
    comp = [(e.time_range.start, e.time_range.end) for e in kernels if "nccl" not in e.name.lower()]
    t0, t1 = min(s for s, _ in comp + nccl), max(b for _, b in comp + nccl)
    cm = union(comp)
    nccl_us = sum(b - a for a, b in nccl)
    hidden = sum(overlap(iv, cm) for iv in nccl)
    busy = sum(b - a for a, b in union(comp + nccl))
    # in the last of the three steps: where the NCCL kernels start, against the step's first and last kernel
    last_start = sorted(s for s, _ in comp + nccl)[-len(kernels) // 3]
    n3 = [iv for iv in nccl if iv[0] >= last_start]
    say(probe="profile", arm=name, steps=3, wall_ms_per_step=round((t1 - t0) / 3e3, 2),
        gpu_busy_ms_per_step=round(busy / 3e3, 2), compute_ms_per_step=round(sum(b - a for a, b in cm) / 3e3, 2),
        nccl_kernels_per_step=len(nccl) / 3, nccl_ms_per_step=round(nccl_us / 3e3, 2),
        nccl_alone_ms_per_step=round((nccl_us - hidden) / 3e3, 2),
        last_step_nccl_start_ms=[round((a - last_start) / 1e3, 1) for a, _ in sorted(n3)][:: max(1, len(n3) // 12)],
        last_step_ms=round((t1 - last_start) / 1e3, 2))
dist.destroy_process_group()
