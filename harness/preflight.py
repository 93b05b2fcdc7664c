"""Before training starts: will one step fit in this device's memory? An estimate, and a one-line refusal.

The estimate has two parts, in bytes:

* **state**: 20 bytes a parameter — the fp32 weights (4), their gradients (4), AdamW's two moments (8)
  and the EMA (4);
* **activations**: what autograd keeps for the backward pass. One forward pass and loss run on the meta
  device (shapes only, no arithmetic, seconds) under ``torch.autograd.graph.saved_tensors_hooks``, which
  sees every tensor saved for backward; its elements are counted at two small token counts and at two
  batch sizes, which splits them into what a clip adds (a line in tokens, taken to the run's tokens a
  clip and batch: the models' memory is linear in tokens, attention runs through SDPA, which keeps no T×T
  matrix) and what the batch does not change (``shared``: the weights the layers keep for their backward,
  and their bf16 copies under autocast, counted once). Elements are counted at 4 bytes under
  fp32 and, under bf16 autocast (which keeps norms, softmax and the scan in fp32), at 2 on CUDA with mamba-ssm's
  scan and 3 otherwise (BYTES_PER_ELEMENT); a factor of 1.5 covers the backward's transient buffers.

Until 2026-11-30 the shared part was counted once per clip, which put Matten-B at the mini shape (batch 64)
at 75.6 GiB against its measured 15.3 GiB peak on the H200 (results/mini/README.md).

Where the run's scan is mamba-ssm's (CUDA with mamba-ssm installed), the meta pass counts what its
``SelectiveScanFn`` keeps for the backward (its inputs, the output and one fp32 state per 2,048 steps) instead
of the torch backend's fp32 copies, and a bf16 element counts 2 bytes (see BYTES_PER_ELEMENT). Before
both (2026-11-30), Matten-XL/2 at 16×4×32×32, batch 5, bf16 was estimated at 141.6 GiB and refused on an H200
with 135 GiB free. Estimated now against the eager bf16 peaks measured on the H200 (results/mini/probe,
results/benchmarks.md): Matten-XL/2 batch 5 88.4 / 62.0 GiB, Latte-XL/2 52.8 / 34.1; at the mini shape
(16×3×32×32, patch 8, batch 64) Matten-B v3 20.3 / 14.5, Matten-S v1 18.2 / 11.9, v2 31.9 / 20.8 (its scan rows
packed; 23.7 one row per sequence; the meta pass does not pack), v3 9.3 / 6.8, Latte-S 5.3 / 4.2: 1.26 to 1.53
times the peak. With the torch scan on CUDA (3 bytes): Matten-S v2 53.4 / 41.9.

The estimate is a guide, not a measurement. Against the peak resident memory of two real training steps
on a CPU (tiny models, batch 2, 16 frames; 2026-11-30; two runs where a range is given): Matten 64×64 fp32
2.26 GiB estimated / 2.02–2.33 measured, bf16 1.70 / 1.81–1.97, 96×96 fp32 5.07 / 4.41; Latte 64×64 fp32
1.15 / 1.36–1.39. tests/test_preflight.py holds it within a factor of two.

``train`` refuses a run whose estimate exceeds 90 % of the memory the device has free (CUDA:
``torch.cuda.mem_get_info``; CPU: ``MemAvailable``), naming a ``--batch`` or ``--image-size`` that would
fit; ``--no-preflight`` skips the check.

**Disk.** ``train`` and ``run`` also refuse a run whose checkpoints will not fit on the disk of its run folder
(:func:`disk_need`, :func:`check_disk`): a checkpoint's bytes (harness.checkpoint.checkpoint_bytes), times the
evaluation steps kept for good + the newest ``keep_checkpoints`` and the one being written of the others, less what
the run's prunable checkpoints already hold; ``run`` adds up its experiments, which share one disk. The third mini
run on the H200 filled its 64 GB disk (eight models, up to 100 checkpoints each) and three trainings stopped on a
message that did not say why (results/mini/README.md).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.config import TrainConfig
from harness.errors import UserError

STATE_BYTES_PER_PARAM = 4 + 4 + 8 + 4  # weights, gradients, AdamW's exp_avg and exp_avg_sq, EMA
TRANSIENT = 1.5  # backward's temporaries on top of the saved activations (fitted: see the module's docstring)
USABLE = 0.9  # of the free memory
# bytes a saved element takes: fp32 4; under bf16 autocast most saved tensors are the bf16 inputs of matmuls (2)
# and norms, softmax and the scan stay fp32. On CUDA with mamba-ssm's scan: 2, fitted to the H200 peaks in the
# module's docstring; otherwise 3 (the CPU's autocast keeps more in fp32, and the torch scan keeps fp32 copies:
# Matten-S v2 at the mini shape on CUDA with the torch scan peaked at 41.9 GiB, estimated at 53.4 with 3 bytes).
BYTES_PER_ELEMENT = {"fp32": 4, "bf16, mamba-ssm scan": 2, "bf16": 3}


@dataclass(frozen=True)
class Estimate:
    """Bytes a training step needs: ``state`` (weights, grads, AdamW, EMA) + ``shared`` (saved for backward
    whatever the batch) + ``activations`` (at ``batch``); a clip's activations are ``fixed + per_token × tokens``
    bytes."""

    params: int
    state: float
    shared: float
    fixed: float
    per_token: float
    batch: int
    tokens_per_clip: int

    @property
    def activations_per_clip(self) -> float:
        return self.fixed + self.per_token * self.tokens_per_clip

    @property
    def total(self) -> float:
        return self.state + self.shared + self.activations_per_clip * self.batch


class _MambaSsmSaves(torch.autograd.Function):
    """Shapes only: the tensors mamba-ssm's SelectiveScanFn saves for its backward (mamba_ssm/ops/
    selective_scan_interface.py: u, delta, A, B, C, D, z, delta_bias, the chunk states x of
    (batch, d, ceil(L / 2048), 2N) fp32, and the output before the gate)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias):
        batch, d, L = u.shape
        states = u.new_empty((batch, d, -(-L // 2048), 2 * A.shape[1]), dtype=torch.float32)
        out = u.new_empty(u.shape)
        ctx.save_for_backward(*(t for t in (u, delta, A, B, C, D, z, delta_bias, states, out) if t is not None))
        return out

    @staticmethod
    def backward(ctx, grad):  # never run: the meta pass only counts what is saved
        raise NotImplementedError


def _mamba_ssm_saves(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    return _MambaSsmSaves.apply(u, delta, A, B, C, D, z, delta_bias)


def saved_elements(cfg: TrainConfig, model_args: dict, input_size: int, batch: int = 1,
                   scan: str = "torch") -> tuple[int, int]:
    """(elements saved for backward, parameters) of one forward + IDDPM loss of ``cfg``'s model at latent
    size ``input_size``, on the meta device; ``scan="cuda"`` counts the selective scan's saved tensors as
    mamba-ssm keeps them, any other backend as the torch backend does."""
    from harness.diffusion import create_diffusion
    from harness.train import build_model_from_config
    from models import scan as scan_backends

    args = dict(model_args, input_size=input_size)
    with torch.device("meta"):
        model = build_model_from_config(cfg, **args)
        t_, c = args["num_frames"], args["in_channels"]
        x = torch.zeros(batch, t_, c, input_size, input_size)
        noise = torch.zeros_like(x)
        t = torch.zeros(batch, dtype=torch.long)
        y = torch.zeros(batch, dtype=torch.long) if args["num_classes"] else None
    params = sum(p.numel() for p in model.parameters())
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor):
        seen[id(tensor)] = tensor.numel()  # a tensor saved twice is kept once
        return tensor

    diffusion = create_diffusion()
    route = scan_backends.routed_through(_mamba_ssm_saves) if scan == "cuda" else contextlib.nullcontext()
    with route, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        diffusion.training_losses(model, x, t, y, noise)["loss"].mean()
    return sum(seen.values()), params


def estimate(cfg: TrainConfig, model_args: dict, patch_units: tuple[int, int] = (2, 4), scan: str = "torch",
             ) -> Estimate:
    """The memory estimate of ``cfg``'s training step (see the module's docstring); ``scan`` is the selective-scan
    backend the run will use (models.scan.resolve_backend; "cuda", mamba-ssm's kernel, runs on CUDA only)."""
    patch, size = cfg.patch, model_args["input_size"]
    frames = model_args["num_frames"]
    k1, k2 = patch_units  # k x k tokens a frame
    one, params = saved_elements(cfg, model_args, patch * k1, scan=scan)
    two, _ = saved_elements(cfg, model_args, patch * k1, batch=2, scan=scan)
    per_clip1 = two - one  # what a clip adds at k1
    shared = one - per_clip1  # what the batch does not change
    per_clip2 = saved_elements(cfg, model_args, patch * k2, scan=scan)[0] - shared
    t1, t2 = frames * k1 * k1, frames * k2 * k2
    per_token = (per_clip2 - per_clip1) / (t2 - t1)
    kind = "fp32" if cfg.precision == "fp32" else "bf16, mamba-ssm scan" if scan == "cuda" else "bf16"
    scale = TRANSIENT * BYTES_PER_ELEMENT[kind]
    return Estimate(params=params, state=STATE_BYTES_PER_PARAM * params, shared=scale * shared,
                    fixed=scale * (per_clip1 - per_token * t1), per_token=scale * per_token, batch=cfg.batch,
                    tokens_per_clip=frames * (size // patch) ** 2)


def free_memory(device: torch.device) -> float:
    """Bytes the device has free: CUDA's free memory, or the CPU's MemAvailable."""
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return math.inf  # unknown: no refusal


def check(cfg: TrainConfig, model_args: dict, device: torch.device, vae_downsample: int = 1) -> Estimate:
    """Refuse (UserError, one line) a run whose step would not fit; returns the estimate."""
    from models.scan import resolve_backend

    est = estimate(cfg, model_args, scan=resolve_backend(device))
    free = free_memory(device)
    budget = USABLE * free
    if est.total <= budget:
        return est
    gib = 2**30
    fits = []
    batch = int((budget - est.state - est.shared) // est.activations_per_clip)
    if batch >= 1:
        fits.append(f"--batch {batch}")
    else:  # not even one clip: fewer tokens at batch 1, solved from the line in tokens
        tokens = (budget - est.state - est.shared - est.fixed) / est.per_token
        size = cfg.patch * int(math.sqrt(max(tokens, 0) / model_args["num_frames"]))  # a whole number of patches
        if size >= cfg.patch:
            fits.append(f"--batch 1 --image-size {size * vae_downsample}")
    hint = f"; {' or '.join(fits)} would fit" if fits else "; not even one clip fits: a smaller model or clip"
    where = "GPU" if device.type == "cuda" else "CPU"
    raise UserError(
        f"one training step needs about {est.total / gib:.1f} GiB ({(est.state + est.shared) / gib:.1f} GiB of "
        f"weights, gradients, AdamW and EMA for {est.params / 1e6:.1f}M parameters + "
        f"{est.activations_per_clip * est.batch / gib:.1f} "
        f"GiB of activations for {est.batch} clip(s) of {est.tokens_per_clip:,} tokens) and this {where} has "
        f"{free / gib:.1f} GiB free{hint} (harness.preflight; --no-preflight skips this check)"
    )


def disk_need(run_dir: str | Path, checkpoint_bytes: int, keep: int, keep_steps: tuple[int, ...], steps: int,
              ckpt_every: int) -> int:
    """Bytes the training run in ``run_dir`` still adds to its disk, up to ``steps``, for checkpoints of
    ``checkpoint_bytes`` each.

    The checkpoints still to be written are those at multiples of ``ckpt_every``, at ``steps`` and at the
    ``keep_steps`` ahead (harness.train writes step 0 only when asked for ``steps`` 0, as ``run`` does). Those at
    ``keep_steps`` stay; of the others at most the newest ``keep`` plus the one being written share the disk, less
    what the run's prunable checkpoints already hold there (a new write needs at least its own size). 0 when the run
    is already at ``steps``.
    """
    from harness.checkpoint import list_checkpoints, step_of

    held = list_checkpoints(run_dir)
    start = max((step_of(p) for p in held), default=-1)
    if start >= steps:
        return 0
    ahead = {s for s in range(max(start + 1, 1), steps + 1) if s % ckpt_every == 0} | {steps}
    ahead |= {s for s in keep_steps if start < s <= steps}
    kept = len(ahead & set(keep_steps))
    rolling = len(ahead) - kept
    prunable = sum(p.stat().st_size for p in held if step_of(p) not in keep_steps)
    # the others: the held prunable ones and those ahead, of which at most keep + 1 at a time (pruning starts
    # only past keep), and at least the one being written
    window = max(checkpoint_bytes, min(rolling * checkpoint_bytes, (keep + 1) * checkpoint_bytes - prunable))
    window = window if rolling else 0
    return kept * checkpoint_bytes + window


def check_disk(run_dir: str | Path, needs: dict[str, int], fix: str) -> None:
    """Refuse (UserError, one line ending in ``fix``) when the bytes in ``needs`` ({what: bytes}) exceed the free
    space of ``run_dir``'s disk."""
    from harness.checkpoint import free_disk_bytes, gb

    need, free = sum(needs.values()), free_disk_bytes(run_dir)
    if need <= free:
        return
    largest = sorted(needs.items(), key=lambda kv: -kv[1])[:3]
    detail = ", ".join(f"{k} {gb(v)}" for k, v in largest) + (", ..." if len(needs) > 3 else "")
    raise UserError(
        f"the checkpoints need about {gb(need)} more on the disk of {run_dir} ({detail}) and it has {gb(free)} "
        f"free: {fix}"
    )
