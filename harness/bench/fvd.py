"""`matten-bench bench fvd`: I3D throughput (uint8 256x256 clips -> resize -> I3D logits), side by side.

CPU: the fp32 path on ``num`` clips (all 2048 to measure end to end; fewer are extrapolated, and
the output says which).
CUDA: 2048 uint8 clips already on the GPU, the fp32 (TF32 off), TF32, 3xTF32, bf16 and fp16 paths
timed in one run (median of ``runs``), each path's max |logit - fp32 logit| over all clips.
Random weights are used (and said) when the converted weights are not in the cache.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import numpy as np
import torch

from harness.console import progress
from harness.fvd.protocol import Extractor
from harness.machine import (
    cudnn_benchmark,
    machine_description,
    machine_record,
    peak_memory_gib,
    synchronize,
    time_calls,
    usable_cpus,
)

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


def motion_clips(num: int, device: str = "cpu") -> torch.Tensor:
    """uint8 (num, 16, 256, 256, 3) of the synthetic dataset's moving shapes: content the detector
    recognises as video (its logits reach about 15, where noise gives about 9), so precision errors
    are measured where they are largest."""
    from harness.data.synthetic import render_frames

    frames = [render_frames(k % 5, 5, k, frames=16, width=256, height=256, seed=k) for k in range(num)]
    return torch.from_numpy(np.stack(frames)).to(device)


def bench_cpu(num: int = 8, batch_size: int = 2, threads: int | None = None, compile: bool = False) -> dict[str, Any]:
    """Seconds per clip on the CPU (fp32), on ``num`` clips after one warm-up batch.

    Clips are drawn batch by batch (outside the timing), so ``num`` may be the full 2048: the
    total then measures the protocol's whole I3D pass end to end, warm-up (and compile) included.
    """
    if threads:
        torch.set_num_threads(threads)
    model, weights = load_model("cpu")
    extractor = Extractor(model, "cpu", "stylegan-v", "fp32", batch_size, compile)
    t = time.perf_counter()
    extractor.logits(random_clips(batch_size, seed=2**31))  # warm-up (oneDNN picks its kernels; torch.compile compiles)
    warmup = time.perf_counter() - t
    per_clip, detector_seconds = [], 0.0
    cpu0 = time.process_time()
    with progress() as bar:
        task = bar.add_task("I3D on the CPU", total=num)
        for i in range(0, num, batch_size):
            clips = random_clips(min(batch_size, num - i), seed=i)
            t = time.perf_counter()
            extractor.logits(clips)
            seconds = time.perf_counter() - t
            detector_seconds += seconds
            per_clip.append(seconds / len(clips))
            bar.update(task, advance=len(clips))
    cpu = time.process_time() - cpu0
    median = statistics.median(per_clip)
    return {
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "weights": weights,
        "clips_measured": num,
        "batch_size": batch_size,
        "compiled": compile,
        "warmup_seconds": warmup,
        "seconds_per_clip_median": median,
        "seconds_per_clip_mean": detector_seconds / num,
        "clips_per_second": 1.0 / median,
        "measured_minutes": (warmup + detector_seconds) / 60,  # these clips, warm-up included
        "extrapolated_minutes_2048": (warmup + median * 2048) / 60,
        "cpu_seconds_per_clip": cpu / num,
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "cpu_count": usable_cpus(),
        "machine": machine_record("cpu"),
    }


def _time_path(extractor: Extractor, clips: torch.Tensor, runs: int) -> tuple[float, float, torch.Tensor]:
    t = time.perf_counter()
    extractor.logits(clips[: extractor.batch_size])  # warm-up: cuDNN autotuning, allocator, compile
    synchronize(extractor.device)
    warmup = time.perf_counter() - t
    logits = []
    times = time_calls(lambda: logits.append(extractor.logits(clips)), extractor.device, 0, runs)
    return statistics.median(times), warmup, logits[-1]


def bench_cuda(
    num: int = 2048, batch_size: int = 64, runs: int = 3, compile: bool = False, device: str = "cuda"
) -> dict[str, Any]:
    """fp32 / tf32 / tf32x3 / bf16 / fp16 side by side on ``num`` clips already on the GPU (uint8).

    Each path's error is its max |logit - fp32 logit| over the ``num`` noise clips and over 128
    synthetic motion clips (larger logits, larger errors).
    """
    with cudnn_benchmark(True):  # the autotuner for the timed paths only; the flag is put back afterwards
        return _bench_cuda(num, batch_size, runs, compile, device)


def _bench_cuda(num: int, batch_size: int, runs: int, compile: bool, device: str) -> dict[str, Any]:
    import copy

    model, weights = load_model(device)
    clips = random_clips(num, device=device)
    motion = motion_clips(128, device=device)
    rows, reference, reference_motion = [], None, None
    for precision in ("fp32", "tf32", "tf32x3", "bf16", "fp16"):
        extractor = Extractor(copy.deepcopy(model), device, "stylegan-v", precision, batch_size, compile)
        seconds, warmup, logits = _time_path(extractor, clips, runs)
        logits_motion = extractor.logits(motion)
        if reference is None:
            reference, reference_motion = logits, logits_motion
        rows.append({
            "path": precision + ("+compile" if compile else ""),
            "seconds_for_clips": seconds,
            "warmup_seconds": warmup,
            "clips_per_second": num / seconds,
            "max_abs_logit_diff_vs_fp32": float((logits - reference).abs().max()),
            "max_abs_logit_diff_vs_fp32_motion": float((logits_motion - reference_motion).abs().max()),
            "max_abs_logit_fp32": float(reference.abs().max()),
            "max_abs_logit_fp32_motion": float(reference_motion.abs().max()),
        })
        del extractor
        torch.cuda.empty_cache()
    return {
        "device": machine_description(device),
        "machine": machine_record(device),
        "torch": torch.__version__,
        "weights": weights,
        "clips": num,
        "batch_size": batch_size,
        "runs": runs,
        "rows": rows,
        "peak_memory_gib": peak_memory_gib(device)[0],
    }
