# probe (multi-GPU issue, 2026-11-30 ninth session), on nvidia-h200-x2:
#   torchrun --standalone --nproc-per-node 2 results/probes/ddp_where.py   (NVLink multicast off, see bench/ddp.py)
# Where do Latte-XL/2's extra milliseconds a step on two GPUs go? The bench step (compiled blocks, bf16, batch 5,
# 16x4x32x32, fused AdamW) timed, in alternating rounds, as: each rank alone (no DDP: one GPU's step while the other
# GPU runs too), DDP as train wraps it with several bucket sizes / static_graph / buffer broadcast, and DDP inside
# no_sync() (the hooks without the all-reduce). Plus the bare NCCL all-reduce of all the gradients' bytes.
# Rank 0 prints JSON lines, also to $OUT/ddp_where.jsonl. Numbers: results/benchmarks-history.md.
import json
import os
import statistics

import torch
import torch.distributed as dist

from harness.bench import train as B
from harness.machine import compile_blocks

rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
torch.cuda.set_device(local)
dev = torch.device("cuda", local)
dist.init_process_group("nccl", device_id=dev)
out = open(os.path.join(os.environ.get("OUT", "."), "ddp_where.jsonl"), "a") if rank == 0 else None


def say(**k):
    if rank == 0:
        line = json.dumps(k)
        print(line, flush=True)
        out.write(line + "\n")
        out.flush()


shape = B.Shape()  # XL/2, batch 5, 16x4x32x32, 101 classes: the shape
opts = B.Options()
g = torch.Generator(device=dev).manual_seed(rank)
x, t, y = B._inputs(shape, dev, g)
noise = torch.randn(x.shape, generator=g, device=dev)
model = B._build("latte", shape, opts, dev).train()
compile_blocks(model, "default")
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0, fused=True)
n_params = sum(p.numel() for p in model.parameters())
say(probe="setup", params=n_params, grad_gb_fp32=round(n_params * 4 / 1e9, 3), world=dist.get_world_size())


def ddp(bucket_mb=25, static=False, broadcast=True):
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[local], gradient_as_bucket_view=True,
                                                     bucket_cap_mb=bucket_mb, static_graph=static,
                                                     broadcast_buffers=broadcast)


class NoSync(torch.nn.Module):  # DDP's forward inside no_sync(): hooks run, no all-reduce
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, *a, **k):
        with self.m.no_sync():
            return self.m(*a, **k)


arms = {
    "alone": lambda: model,
    "ddp25": lambda: ddp(25),
    "ddp25-nobcast": lambda: ddp(25, broadcast=False),
    "ddp100-static": lambda: ddp(100, static=True),
    "ddp100-static-nobcast": lambda: ddp(100, static=True, broadcast=False),
    "ddp400": lambda: ddp(400),
    "ddp25-nosync": lambda: NoSync(ddp(25)),
}
steps = {}
for name, make in arms.items():
    steps[name] = B.make_train_step(make(), opt, x, t, y, noise, bf16=True)
    for _ in range(4):  # warm-up: compile (first arm), DDP's first iterations (bucket rebuild, static graph)
        steps[name]()
    torch.cuda.synchronize()
    dist.barrier()
times = {name: [] for name in arms}
for rnd in range(3):
    for name, step in steps.items():
        dist.barrier()
        ms = B.time_it(step, dev, 1, 12)
        times[name] += ms
        say(probe="round", round=rnd, arm=name, median_ms=round(statistics.median(ms), 2))
for name, ms in times.items():
    say(probe="arm", arm=name, median_ms=round(statistics.median(ms), 2), min_ms=round(min(ms), 2),
        max_ms=round(max(ms), 2), n=len(ms))

# the bare all-reduce of every gradient's bytes (fp32), and of one 25 MiB bucket
for mib in (25, 100, int(n_params * 4 / 2**20)):
    buf = torch.ones(mib * 2**18, device=dev)
    for _ in range(3):
        dist.all_reduce(buf)
    torch.cuda.synchronize()
    ms = B.time_it(lambda: dist.all_reduce(buf), dev, 1, 10)
    m = statistics.median(ms)
    say(probe="all_reduce", mib=mib, median_ms=round(m, 3), algbw_gb_s=round(mib * 2**20 / m / 1e6, 1))
    del buf
dist.destroy_process_group()
