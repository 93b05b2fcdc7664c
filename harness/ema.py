"""The exponential moving average of the weights that sampling uses, and its decay schedule.

After each optimizer step the EMA takes ``ema ← d_n·ema + (1 − d_n)·θ``, n = the number of EMA updates
before this one (0 after the first optimizer step; the training loop's 0-based step index), with

* Latte's recipe (``warmup=False``): d_n = decay = 0.9999 from the first step, as Latte and DiT train;
* the warm-up (``warmup=True``): d_n = min(decay, (1 + n) / (10 + n)): d_0 = 0.1, d_90 = 0.91,
  d_990 = 0.991. The formula is CompVis' ``LitEma`` and diffusers' ``EMAModel(use_ema_warmup=False)``; both
  count one update later (their first decay is 2/11, and diffusers copies the weights at the first update).

Why the warm-up: with 0.9999 from step 0 the initial weights keep a share 0.9999^k after k steps
(90 % at 1,000 steps, 14 % at 20,000), so a short run's EMA samples are the untrained model's noise.
The paper scale keeps Latte's recipe; smoke and mini use the warm-up. d_n depends on n only, so a
resumed run applies the same decays as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from harness.errors import UserError


@dataclass(frozen=True)
class EMASchedule:
    """The decay d_n applied at the n-th update (n counts from 0; one update per optimizer step)."""

    decay: float = 0.9999  # Latte's and DiT's
    warmup: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay < 1.0:
            raise UserError(f"--ema-decay {self.decay}: expected 0 <= decay < 1")

    def decay_at(self, n: int) -> float:
        """d_n (a Python float, so every update with the same n does the same float arithmetic)."""
        if self.warmup:
            return min(self.decay, (1.0 + n) / (10.0 + n))
        return self.decay

    def describe(self) -> dict[str, Any]:
        """For records: the decay, the warm-up and the formula in words."""
        formula = "min(decay, (1 + n) / (10 + n))" if self.warmup else "decay (constant, Latte's recipe)"
        return {**asdict(self), "formula": formula, "n": "EMA updates before this one (0 at the first)"}


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema ← decay·ema + (1 − decay)·model over all parameters at once (two foreach kernels, not two
    per parameter); bit-for-bit :func:`update_ema_reference`, which it replaces in the training loop."""
    e = [p for p in ema.parameters()]
    m = [p.detach() for p in model.parameters()]
    if len(e) != len(m):
        raise ValueError(f"the EMA has {len(e)} parameters, the model {len(m)}")
    torch._foreach_mul_(e, decay)
    torch._foreach_add_(e, m, alpha=1.0 - decay)


@torch.no_grad()
def update_ema_reference(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """The slow twin: parameter by parameter, as DiT's ``update_ema`` writes it."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.mul_(decay).add_(p.detach(), alpha=1.0 - decay)
