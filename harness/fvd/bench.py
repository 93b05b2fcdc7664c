"""`matten-bench bench fvd`: I3D throughput (uint8 256x256 clips -> resize -> I3D logits), side by side.

CPU: the fp32 path on a few clips, extrapolated to 2048 (said so in the output).
CUDA: 2048 uint8 clips already on the GPU, the fp32 (TF32 off), TF32, bf16 and fp16 paths timed in
one run (median of ``runs``), each path's max |logit - fp32 logit| over all clips.
Random weights are used (and said) when the converted weights are not in the cache.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import torch

from harness.fvd.protocol import Extractor

CLIP_SHAPE = (16, 256, 256, 3)  # what Latte-style samplers write: 16 frames at 256x256


def load_model(device: str) -> tuple[torch.nn.Module, str]:
    """The converted Kinetics-400 weights if cached, else random weights (timings are the same)."""
    from harness.fvd.i3d import InceptionI3d
    from harness.paths import i3d_weights_path

    path = i3d_weights_path()
    if path.exists():
        from harness.fvd.weights import load_i3d

        model, info = load_i3d(path, device)
        return model, f"Kinetics-400 weights ({path.name}, sha256 {info['sha256'][:12]}...)"
    torch.manual_seed(0)
    model = InceptionI3d().eval()
    with torch.no_grad():  # give BatchNorm plausible statistics so activations stay in range
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_var.fill_(1.0)
    return model.to(device), f"RANDOM weights (no converted weights at {path}; run `matten-bench i3d fetch`)"


def random_clips(num: int, seed: int = 0, device: str = "cpu") -> torch.Tensor:
    """uint8 (num, 16, 256, 256, 3), drawn on ``device`` (6.4 GB for 2048 clips: made on the GPU, not copied)."""
    g = torch.Generator(device=device).manual_seed(seed)
    return torch.randint(0, 256, (num, *CLIP_SHAPE), dtype=torch.uint8, generator=g, device=device)


def bench_cpu(num: int = 8, batch_size: int = 1, threads: int | None = None, compile: bool = False) -> dict[str, Any]:
    """Seconds per clip on the CPU (fp32), measured on ``num`` clips after one warm-up clip."""
    if threads:
        torch.set_num_threads(threads)
    model, weights = load_model("cpu")
    extractor = Extractor(model, "cpu", "stylegan-v", "fp32", batch_size, compile)
    clips = random_clips(num + batch_size)
    t = time.perf_counter()
    extractor.logits(clips[num:])  # warm-up (oneDNN picks its kernels; torch.compile compiles)
    warmup = time.perf_counter() - t
    per_batch = []
    t0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(0, num, batch_size):
        t = time.perf_counter()
        extractor.logits(clips[i : i + batch_size])
        per_batch.append((time.perf_counter() - t) / len(clips[i : i + batch_size]))
    total, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    per_clip = statistics.median(per_batch)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "weights": weights,
        "clips_measured": num,
        "batch_size": batch_size,
        "compiled": compile,
        "warmup_seconds": warmup,
        "seconds_per_clip_median": per_clip,
        "seconds_per_clip_mean": total / num,
        "clips_per_second": 1.0 / per_clip,
        "extrapolated_minutes_2048": per_clip * 2048 / 60,
        # On a shared machine wall time measures the neighbours too: CPU seconds per clip / threads
        # is what the same work takes with the cores to itself (assuming the threads scale).
        "cpu_seconds_per_clip": cpu / num,
        "uncontended_estimate_minutes_2048": cpu / num / torch.get_num_threads() * 2048 / 60,
        "load_average_1min": load,
        "cpu_count": os.cpu_count(),
    }


def _time_path(extractor: Extractor, clips: torch.Tensor, runs: int) -> tuple[float, torch.Tensor]:
    extractor.logits(clips[: extractor.batch_size])  # warm-up: cuDNN autotuning, allocator
    torch.cuda.synchronize()
    times, logits = [], None
    for _ in range(runs):
        torch.cuda.synchronize()
        t = time.perf_counter()
        logits = extractor.logits(clips)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times), logits


def bench_cuda(num: int = 2048, batch_size: int = 64, runs: int = 3, compile: bool = False) -> dict[str, Any]:
    """fp32 / tf32 / bf16 / fp16 side by side on ``num`` clips already on the GPU (uint8)."""
    import copy

    torch.backends.cudnn.benchmark = True
    model, weights = load_model("cuda")
    clips = random_clips(num, device="cuda")
    rows, reference = [], None
    for precision in ("fp32", "tf32", "bf16", "fp16"):
        extractor = Extractor(copy.deepcopy(model), "cuda", "stylegan-v", precision, batch_size, compile)
        seconds, logits = _time_path(extractor, clips, runs)
        if reference is None:
            reference = logits
        rows.append({
            "path": precision + ("+compile" if compile else ""),
            "seconds_for_clips": seconds,
            "clips_per_second": num / seconds,
            "max_abs_logit_diff_vs_fp32": float((logits - reference).abs().max()),
            "max_abs_logit_fp32": float(reference.abs().max()),
        })  # fmt: skip
        del extractor
        torch.cuda.empty_cache()
    return {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "weights": weights,
        "clips": num,
        "batch_size": batch_size,
        "runs": runs,
        "rows": rows,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
    }

