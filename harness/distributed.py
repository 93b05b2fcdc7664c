"""The process group under torchrun: who this process is, and the few collectives the harness uses.

One process per GPU (``torchrun --nproc-per-node N -m harness.cli train ...``); without torchrun
(WORLD_SIZE unset) everything here is a no-op for a single process. NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """This process's place: global rank, world size, and its GPU's index on the node (LOCAL_RANK)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 writes checkpoints, metrics and records."""
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """Join torchrun's process group (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR/PORT from the environment);
    a single process when WORLD_SIZE is unset or 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    if not dist.is_initialized():
        if device.type == "cuda":
            # NCCL's kernels on a high-priority stream (PyTorch's TORCH_NCCL_HIGH_PRIORITY=1 does the same): the
            # gradient all-reduces are then scheduled ahead of the backward's queued kernels instead of waiting
            # for SMs behind them. Latte-XL/2 on two H200s: NCCL kernel time 28.3 -> 17.6 ms a step, scaling
            # 0.934 -> 0.947 (results/benchmarks-history.md, ninth session; results/probes/ddp_overlap.py)
            options = dist.ProcessGroupNCCL.Options()
            options.is_high_priority_stream = True
            dist.init_process_group(backend="nccl", pg_options=options)
        else:
            dist.init_process_group(backend="gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def wrap(model: torch.nn.Module, device: torch.device, d: Dist, bucket_mb: int = 25,
         static_graph: bool = False) -> torch.nn.Module:
    """``model`` inside DistributedDataParallel when there are several processes, else itself.

    ``bucket_mb``: the gradient bucket size in MiB (DDP's ``bucket_cap_mb``; PyTorch's default 25), ``static_graph``:
    DDP's ``static_graph`` (the same parameters used every step). Neither changes which gradients are summed."""
    if d.world == 1:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    # gradient_as_bucket_view: the gradients are views into DDP's all-reduce buckets, so no copy into and out of
    # them each step (the same sums; PyTorch's DDP notes recommend it where nothing keeps .grad across steps).
    # no buffer sync before each forward (DDP's default): the models' only buffers are fixed sin-cos tables
    # (models.blocks), computed alike on every rank and never written. torch 2.13 names the option
    # forward_sync_buffers (broadcast_buffers warns there); unlike broadcast_buffers=False it still copies rank 0's
    # buffers once when DDP is built, which changes nothing for tables that are equal everywhere
    ddp = torch.nn.parallel.DistributedDataParallel
    no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(ddp).parameters
               else {"broadcast_buffers": False})
    return ddp(model, device_ids=device_ids, gradient_as_bucket_view=True, bucket_cap_mb=bucket_mb,
               static_graph=static_graph, **no_sync)


def all_reduce_sum(x: torch.Tensor, d: Dist) -> torch.Tensor:
    """``x`` summed over every process, in place (one collective)."""
    if d.world > 1:
        dist.all_reduce(x)
    return x


def all_gather_objects(obj: Any, d: Dist) -> list[Any]:
    """Every process's ``obj`` (picklable), in rank order."""
    if d.world == 1:
        return [obj]
    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()


def leave() -> None:
    """Leave the process group, if one was joined (no shutdown warning, no hung peers)."""
    if dist.is_initialized():
        dist.destroy_process_group()
