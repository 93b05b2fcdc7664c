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
  fp32 and 3 under bf16 autocast (which keeps norms, softmax and the scan in fp32); a factor of 1.5 covers
  the backward's transient buffers.

Until 2026-11-30 the shared part was counted once per clip, which put Matten-B at the mini shape (batch 64)
at 75.6 GiB against its measured 15.3 GiB peak on the H200 (results/mini/README.md); it is now 32.8 GiB there.
The mini models: 7.7 (Latte-S) to 53.4 GiB (Matten-S v2) estimated, 4.6 to 24.2 GiB measured with mamba-ssm's
scan, which keeps less for its backward than the torch backend the meta pass runs (variant 1: 35.5 / 12.3).

The estimate is a guide, not a measurement. Against the peak resident memory of two real training steps
on a CPU (tiny models, batch 2, 16 frames; 2026-11-30; two runs where a range is given): Matten 64×64 fp32
2.26 GiB estimated / 2.02–2.33 measured, bf16 1.70 / 1.81–1.97, 96×96 fp32 5.07 / 4.41; Latte 64×64 fp32
1.15 / 1.36–1.39. tests/test_preflight.py holds it within a factor of two.

``train`` refuses a run whose estimate exceeds 90 % of the memory the device has free (CUDA:
``torch.cuda.mem_get_info``; CPU: ``MemAvailable``), naming a ``--batch`` or ``--image-size`` that would
fit; ``--no-preflight`` skips the check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from harness.config import TrainConfig
from harness.errors import UserError

STATE_BYTES_PER_PARAM = 4 + 4 + 8 + 4  # weights, gradients, AdamW's exp_avg and exp_avg_sq, EMA
TRANSIENT = 1.5  # backward's temporaries on top of the saved activations (fitted: see the module's docstring)
USABLE = 0.9  # of the free memory


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


def saved_elements(cfg: TrainConfig, model_args: dict, input_size: int, batch: int = 1) -> tuple[int, int]:
    """(elements saved for backward, parameters) of one forward + IDDPM loss of ``cfg``'s model at latent
    size ``input_size``, on the meta device."""
    from harness.diffusion import create_diffusion
    from harness.train import build_model_from_config

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
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        diffusion.training_losses(model, x, t, y, noise)["loss"].mean()
    return sum(seen.values()), params


def estimate(cfg: TrainConfig, model_args: dict, patch_units: tuple[int, int] = (2, 4)) -> Estimate:
    """The memory estimate of ``cfg``'s training step (see the module's docstring)."""
    patch, size = cfg.patch, model_args["input_size"]
    frames = model_args["num_frames"]
    k1, k2 = patch_units  # k x k tokens a frame
    one, params = saved_elements(cfg, model_args, patch * k1)
    two, _ = saved_elements(cfg, model_args, patch * k1, batch=2)
    per_clip1 = two - one  # what a clip adds at k1
    shared = one - per_clip1  # what the batch does not change
    per_clip2 = saved_elements(cfg, model_args, patch * k2)[0] - shared
    t1, t2 = frames * k1 * k1, frames * k2 * k2
    per_token = (per_clip2 - per_clip1) / (t2 - t1)
    scale = TRANSIENT * (3 if cfg.precision == "bf16" else 4)  # bytes: autocast keeps norms, softmax, scan in fp32
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
    est = estimate(cfg, model_args)
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
