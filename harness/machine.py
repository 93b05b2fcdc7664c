"""Machine facts, once: which device, a synchronised timer, peak memory, a description (and, re-exported
from models.registry, the parameter counter).

Training, sampling, FVD and every benchmark take these from here, so a number in a record and a
number in a benchmark table were measured the same way.

Imports torch and the standard library only (the GPU benchmarks run where nothing else is installed).
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from harness.errors import UserError
from models.registry import count_params  # noqa: F401  (the one parameter counter lives with the models)

# ------------------------------------------------------------------ device


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The torch device a command runs on: one rule for every stage.

    ``auto`` (or None): the GPU when torch sees one, else the CPU. ``cuda``: GPU ``LOCAL_RANK`` (0 outside
    torchrun), so each torchrun process takes its own. ``cuda:N``: GPU N. ``cpu``: the CPU. On a GPU the
    chosen one also becomes the current CUDA device (kernels and allocations land there by default).

    Raises UserError (one line, exit code 2) for a GPU asked for where torch sees none, an index past the
    GPUs it sees, or an unknown spec: never a torch traceback later on, never a silent fallback.
    """
    spec = "auto" if spec is None else str(spec)
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {spec} but torch sees no GPU (matten-bench doctor)")
        index = int(os.environ.get("LOCAL_RANK", "0")) if spec == "cuda" else _index(spec)
        count = torch.cuda.device_count()
        if index >= count:
            raise UserError(f"--device {spec}: GPU {index} asked for, torch sees {count} (cuda:0..cuda:{count - 1})")
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    raise UserError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:N")


def _index(spec: str) -> int:
    tail = spec.partition(":")[2]
    if not tail.isdigit():
        raise UserError(f"--device {spec!r}: expected cuda:N with N a GPU index")
    return int(tail)


# ------------------------------------------------------------------ compile


def compile_blocks(model: torch.nn.Module, mode: str = "default") -> str:
    """``torch.compile`` the model in place, block by block where it has ``blocks`` (Latte, Matten), else whole.

    Block by block is PyTorch's "regional compilation" recipe for models built from repeated blocks: blocks of
    one class at one shape share one compiled graph, so Matten-S/8 (18 blocks, bf16, batch 2) compiled in 96 s on
    the CPU against 428 s for the whole model, and its next step ran as fast (4.56 against 4.60 s); the modules, their
    state-dict keys and what DDP wraps stay those of the eager model. ``dynamic=False``: a block used on two
    layouts (spatial and temporal tokens) gets one graph per shape instead of one graph with symbolic shapes.
    Compilation is lazy (the first call). Returns what was compiled, for the records ("18 blocks", "the model").
    Undo for one call with ``torch.compiler.set_stance("force_eager")``."""
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, torch.nn.ModuleList) and len(blocks):
        for block in blocks:
            block.compile(mode=mode, dynamic=False)
        return f"{len(blocks)} blocks"
    model.compile(mode=mode)
    return "the model"


# ------------------------------------------------------------------ time


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 for CUDA matmuls and cuDNN convolutions on (or off) inside the block; the process's flags as they
    were afterwards (they are global: a stage must not leave them changed for the next)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool = True) -> Iterator[None]:
    """cuDNN's autotuner (``torch.backends.cudnn.benchmark``) on inside the block, the process's flag as it was
    afterwards: a benchmark times the fastest convolution algorithms without changing what runs after it."""
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old


def synchronize(device: str | torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU): call before reading a host clock."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], device: str | torch.device, warmup: int, repeats: int) -> list[float]:
    """Seconds per call of ``fn``, each call synchronised with ``device``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


def median_time(fn: Callable[[], object], repeats: int, device: str | torch.device, warmup: int = 1) -> float:
    """Median seconds per call over ``repeats`` synchronised calls after ``warmup`` untimed ones."""
    return statistics.median(time_calls(fn, device, warmup, repeats))


# ------------------------------------------------------------------ memory


def reset_peak_memory(device: str | torch.device) -> None:
    """Start a new peak: CUDA's allocator peak is reset (the CPU's high-water mark cannot be)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: str | torch.device) -> tuple[float, str]:
    """(GiB, what was measured): CUDA's max allocated bytes since the last reset on a GPU, else this
    process's resident high-water mark (``VmHWM``). ``ru_maxrss`` is not used on Linux: a child started
    by a large parent reports the parent's size across fork+exec."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30, "cuda_max_allocated"
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20, "process_vmhwm"  # kB
    except OSError:
        pass
    scale = 2**30 if platform.system() == "Darwin" else 2**20  # macOS reports bytes, Linux KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale, "process_ru_maxrss"


# ------------------------------------------------------------------ description


def usable_cpus() -> int:
    """CPUs this process may run on (respects taskset / cgroups' affinity), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo's first "model name"), or "" where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def machine_record(device: str | torch.device = "cpu") -> dict[str, Any]:
    """What ran a measurement, for every record: device name, count, torch/CUDA versions, CPUs, threads."""
    device = torch.device(device)
    rec: dict[str, Any] = {
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        # the vector ISA torch's CPU kernels dispatch to: another one rounds differently (the smoke scale's FVDs moved
        # by ~1e-6 in 3 of 30 between two VMs of one image, 2026-12-01, every other number identical)
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "usable_cpus": usable_cpus(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if device.type == "cuda":
        rec.update(
            gpu=torch.cuda.get_device_name(device),
            gpu_count=torch.cuda.device_count(),
            cuda=torch.version.cuda,
            mps=mps_running(),
        )
    return rec


def mps_running(pipe_dir: str | None = None) -> bool:
    """Whether a CUDA Multi-Process Service daemon is up (its control pipe exists), so that processes sharing
    the GPU run their kernels side by side instead of taking turns. The pipe is in ``$CUDA_MPS_PIPE_DIRECTORY``,
    by default ``/tmp/nvidia-mps`` (NVIDIA's MPS documentation)."""
    pipe_dir = pipe_dir or os.environ.get("CUDA_MPS_PIPE_DIRECTORY") or "/tmp/nvidia-mps"
    return os.path.exists(os.path.join(pipe_dir, "control"))


def machine_description(device: str | torch.device = "cpu") -> str:
    """One line for a table's footer, from :func:`machine_record` (on a CPU with the load average now)."""
    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load average {:.1f}/{:.1f}/{:.1f} (1/5/15 min)".format(*os.getloadavg())
    return describe_machine(machine_record(device), load)


def describe_machine(r: dict[str, Any], tail: str = "") -> str:
    """One line from a :func:`machine_record` (also one read back from a record file, where a key may be missing)."""
    if "gpu" in r:
        return f"{r['gpu']} (x{r.get('gpu_count', 1)}), torch {r.get('torch')}, CUDA {r.get('cuda')}"
    return (f"{r.get('cpu')}, {r.get('usable_cpus')} usable CPUs, {r.get('torch_threads')} torch threads, "
            f"torch {r.get('torch')}{tail}")
