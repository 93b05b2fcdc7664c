"""The EMA: its decay schedule against hand values, the foreach update against its slow twin and the
closed form, and the training loop applying the schedule step by step (recomputed from checkpoints)."""

import json
import math

import numpy as np
import pytest
import torch

from harness import train as T
from harness.checkpoint import list_checkpoints
from harness.ema import EMASchedule, update_ema, update_ema_reference
from harness.errors import UserError
from tests.test_train import config, make_latent_cache


def test_warmup_schedule_by_hand():
    s = EMASchedule(decay=0.9999, warmup=True)
    assert s.decay_at(0) == 1 / 10 and s.decay_at(1) == 2 / 11 and s.decay_at(90) == 91 / 100
    # (1+n)/(10+n) reaches 0.9999 at n = 89,990 (1 + n >= 0.9999 (10 + n) <=> n >= 8.999 / 0.0001)
    assert s.decay_at(89_989) < 0.9999 and s.decay_at(89_990) == 0.9999 and s.decay_at(10**7) == 0.9999
    latte = EMASchedule(decay=0.9999, warmup=False)  # Latte's recipe: the decay from the first update
    assert latte.decay_at(0) == latte.decay_at(123_456) == 0.9999
    assert s.describe()["formula"] == "min(decay, (1 + n) / (10 + n))" and not latte.describe()["warmup"]
    with pytest.raises(UserError, match="--ema-decay 1.0"):
        EMASchedule(decay=1.0)


def _nets(seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.LayerNorm(7), torch.nn.Linear(7, 3))
    return net, [p.detach().clone() for p in net.parameters()]


def test_foreach_update_equals_the_slow_twin_bit_for_bit():
    model, _ = _nets(0)
    fast, _ = _nets(1)
    slow, _ = _nets(1)
    for n in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        d = EMASchedule(0.999, warmup=True).decay_at(n)
        update_ema(fast, model, d)
        update_ema_reference(slow, model, d)
        for a, b in zip(fast.parameters(), slow.parameters(), strict=True):
            assert torch.equal(a, b)


def test_ema_after_k_updates_equals_the_closed_form():
    """e_k = (Π_{n<k} d_n) θ_0 + Σ_{j=1..k} (1 − d_{j−1}) (Π_{j≤n<k} d_n) θ_j, in float64 by hand."""
    k, schedule = 12, EMASchedule(0.95, warmup=True)  # the cap 0.95 is reached at n = 170: all warm-up here
    model, theta0 = _nets(0)
    ema, _ = _nets(0)  # the EMA starts as a copy of the initial model
    thetas = []
    for n in range(k):
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p))
        thetas.append([p.detach().double().clone() for p in model.parameters()])
        update_ema(ema, model, schedule.decay_at(n))
    d = [schedule.decay_at(n) for n in range(k)]
    for i, got in enumerate(ema.parameters()):
        want = math.prod(d) * theta0[i].double()
        for j in range(1, k + 1):
            want = want + (1 - d[j - 1]) * math.prod(d[j:]) * thetas[j - 1][i]
        torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)


def test_the_loop_applies_the_schedule_step_by_step(tmp_path):
    """From the checkpoints of every step: ema_k = d_{k-1}·ema_{k-1} + (1 − d_{k-1})·θ_k exactly, with the
    warm-up's d_n; the decay and schedule are in the checkpoint, the metrics and the training record."""
    data = make_latent_cache(tmp_path / "data")
    run = tmp_path / "run"
    T.train(config(data, run, steps=5, ckpt_every=1, keep_checkpoints=10, ema_decay=0.9999))
    states = [T.load_checkpoint(p) for p in list_checkpoints(run)]
    schedule = EMASchedule(0.9999, warmup=True)
    for prev, cur in zip(states, states[1:], strict=False):
        d = schedule.decay_at(prev["step"])  # the update after optimizer step k+1 uses n = k
        for name, e in cur["ema"].items():
            want = prev["ema"][name].clone().mul_(d).add_(cur["model"][name], alpha=1 - d)
            assert torch.equal(e, want), name
    assert states[-1]["ema_schedule"]["warmup"] and states[-1]["ema_schedule"]["decay"] == 0.9999
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["ema_decay"] for x in lines] == [schedule.decay_at(n) for n in range(5)]
    rec = json.loads((run / "records" / "train.json").read_text())
    assert rec["protocol"]["ema"]["formula"] == "min(decay, (1 + n) / (10 + n))"
    # the initial weights' share after 5 updates: 5e-4 with the warm-up, 0.9995 with Latte's constant 0.9999
    assert np.prod([schedule.decay_at(n) for n in range(5)]) < 1e-3 and 0.9999**5 > 0.999
