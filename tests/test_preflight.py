"""The memory preflight: refuses a step that will not fit with the options that would, against hand arithmetic,
and stays within a factor of two of a measured peak."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import preflight
from harness.config import TrainConfig
from harness.errors import UserError
from harness.vae import write_latent_cache

ARGS = {"in_channels": 3, "input_size": 256, "num_classes": 0, "num_frames": 16}
DEFAULT = TrainConfig(data="d", run_dir="r", family="matten", size="tiny")  # train's defaults: 256 px, patch 2


def test_default_training_on_a_cpu_is_refused_with_a_batch_that_fits(monkeypatch):
    monkeypatch.setattr(preflight, "free_memory", lambda device: 16 * 2**30)
    est = preflight.estimate(DEFAULT, ARGS)
    assert est.tokens_per_clip == 16 * 128 * 128 and est.state == 20 * est.params
    fits = int((0.9 * 16 * 2**30 - est.state - est.shared) // est.activations_per_clip)  # by hand
    assert est.total == est.state + est.shared + DEFAULT.batch * (est.fixed + est.per_token * est.tokens_per_clip)
    assert 1 <= fits < DEFAULT.batch
    with pytest.raises(UserError) as e:
        preflight.check(DEFAULT, ARGS, torch.device("cpu"))
    message = str(e.value)
    assert message.startswith(f"one training step needs about {est.total / 2**30:.1f} GiB")
    assert f"--batch {fits} would fit" in message and "16.0 GiB free" in message
    assert preflight.check(replace(DEFAULT, batch=fits), ARGS, torch.device("cpu")).batch == fits  # and it does


def test_what_the_batch_does_not_change_is_counted_once():
    """The weights the layers keep for backward do not grow with the batch: at the mini shape (patch 8, 32x32,
    batch 64) Matten-B's estimate was 75.6 GiB with them counted per clip, against 15.3 GiB measured on the H200."""
    cfg = TrainConfig(family="matten", size="b", patch=8, num_frames=16, image_size=32, batch=64, precision="bf16")
    args = {"in_channels": 3, "input_size": 32, "num_classes": 10, "num_frames": 16}
    est = preflight.estimate(cfg, args)
    assert est.shared >= 4 * est.params  # about each weight once, at 3 bytes x 1.5
    assert est.total < 2 * 15.3 * 2**30 * 1.1  # within the documented factor of two (and a little) of the peak
    one = preflight.estimate(replace(cfg, batch=1), args)
    assert est.total - one.total == pytest.approx(63 * est.activations_per_clip)


def test_when_one_clip_is_too_many_a_smaller_image_size_is_named_and_fits(monkeypatch):
    monkeypatch.setattr(preflight, "free_memory", lambda device: 2 * 2**30)
    with pytest.raises(UserError, match=r"--batch 1 --image-size (\d+) would fit") as e:
        preflight.check(DEFAULT, ARGS, torch.device("cpu"))
    size = int(str(e.value).split("--image-size ")[1].split()[0])
    small = preflight.estimate(replace(DEFAULT, batch=1), dict(ARGS, input_size=size))
    assert small.total <= 0.9 * 2 * 2**30 and size % DEFAULT.patch == 0


def test_estimate_is_within_a_factor_of_two_of_a_measured_peak(tmp_path):
    """Two real training steps in a fresh process (its peak resident memory, VmHWM, above its start)."""
    code = f"""
import json, numpy as np
from harness import train as T, preflight
from harness.machine import peak_memory_gib
from harness.vae import write_latent_cache
write_latent_cache({str(tmp_path / 'c')!r}, np.zeros((4, 16, 3, 64, 64), np.float16), np.zeros(4, int), 0)
cfg = T.TrainConfig(data={str(tmp_path / 'c')!r}, run_dir={str(tmp_path / 'r')!r}, family="matten", size="tiny",
                    batch=2, steps=2, num_workers=0, device="cpu", precision="fp32", image_size=64, preflight=False)
base = peak_memory_gib("cpu")[0]
T.train(cfg)
est = preflight.estimate(cfg, {{"in_channels": 3, "input_size": 64, "num_classes": 0, "num_frames": 16}})
print(json.dumps({{"measured": peak_memory_gib("cpu")[0] - base, "estimate": est.total / 2**30}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert 0.5 < got["estimate"] / got["measured"] < 2.0, got


@pytest.mark.skipif(preflight.free_memory(torch.device("cpu")) > 30 * 2**30, reason="this machine would fit it")
def test_train_with_its_defaults_stops_in_seconds_not_minutes(tmp_path):
    write_latent_cache(tmp_path / "c", np.zeros((6, 16, 3, 256, 256), np.float16), np.zeros(6, int), 0)
    out = subprocess.run([sys.executable, "-m", "harness.cli", "train", "--data", str(tmp_path / "c"), "--run-dir",
                          str(tmp_path / "r"), "--device", "cpu"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.startswith("error: one training step needs about ")
    assert "would fit" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_with_mamba_ssm_the_scan_counts_what_its_kernel_saves():
    """On CUDA with mamba-ssm the meta pass counts the kernel's saved set (u, delta, A, B, C, D, z, delta_bias,
    one fp32 state pair per 2,048 steps, the output), worked out here by hand for one call."""
    b, d, n, L = 2, 8, 4, 4100  # two 2,048-step chunks and a bit: 3 chunk states
    u, delta, z = (torch.zeros(b, d, L, device="meta", requires_grad=True) for _ in range(3))
    A = torch.zeros(d, n, device="meta", requires_grad=True)
    B, C = (torch.zeros(b, 2, n, L, device="meta", requires_grad=True) for _ in range(2))
    D, bias = (torch.zeros(d, device="meta", requires_grad=True) for _ in range(2))
    seen = {}
    with torch.autograd.graph.saved_tensors_hooks(lambda t: seen.setdefault(id(t), t.numel()), lambda t: t):
        preflight._mamba_ssm_saves(u, delta, A, B, C, D, z, bias, True)
    hand = 3 * b * d * L + d * n + 2 * (b * 2 * n * L) + 2 * d + b * d * 3 * (2 * n) + b * d * L
    assert sum(seen.values()) == hand


@pytest.mark.parametrize("variant,scan,peak", [(3, "cuda", 6.8), (2, "cuda", 23.7), (2, "torch", 41.9)])
def test_the_estimate_on_cuda_lies_between_the_measured_peak_and_twice_it(variant, scan, peak):
    """Matten-S/8 at the mini shape, bf16, batch 64, against eager peaks measured on an H200 (results/benchmarks.md;
    v2 one scan row per sequence, as the meta pass runs it): with mamba-ssm's scan (2 bytes an element) and with
    the torch scan, which keeps fp32 copies for its backward (3 bytes)."""
    cfg = replace(DEFAULT, family="matten", size="s", variant=variant, patch=8, batch=64, precision="bf16")
    args = {"in_channels": 3, "input_size": 32, "num_classes": 10, "num_frames": 16}
    est = preflight.estimate(cfg, args, scan=scan).total / 2**30
    assert peak < est < 2 * peak


# ----------------------------------------------------------------------------- disk


def _fake_checkpoints(run_dir, steps, nbytes):
    folder = run_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    for s in steps:
        (folder / f"step-{s:07d}.pt").write_bytes(b"\0" * nbytes)


def test_disk_need_by_hand(tmp_path):
    """The evaluation steps ahead stay; of the other checkpoints ahead, the newest keep + the one being written, less
    what prunable checkpoints already hold (at least one's size)."""
    ck, size, evals = tmp_path, 1000, (0, 250, 500, 1000)
    # the mini preset from scratch: a checkpoint every 100 steps to 1000 and at 0 (run trains to step 0 first):
    # 0, 250, 500, 1000 kept + 8 others, of which 1 newest + 1 being written: 6 checkpoints
    assert preflight.disk_need(ck, size, 1, evals, 1000, 100) == 4 * size + 2 * size
    # keep 100 never prunes: every one of the 12 at once
    assert preflight.disk_need(ck, size, 100, evals, 1000, 100) == 4 * size + 8 * size
    # resumed at step 300 with 0 and 250 kept and 300 prunable (100 bytes on disk): 500 and 1000 kept ahead, and
    # of 400, 600, 700, 800, 900 the newest + the one being written, less the 100 bytes
    _fake_checkpoints(ck, (0, 250, 300), 100)
    assert preflight.disk_need(ck, size, 1, evals, 1000, 100) == 2 * size + (2 * size - 100)
    # many prunable ones (keep lowered from 100 to 1): the next write still needs its own size
    _fake_checkpoints(ck, range(301, 310), 1000)
    assert preflight.disk_need(ck, size, 1, evals, 1000, 100) == 2 * size + size
    assert preflight.disk_need(ck, size, 1, evals, 400, 100) == size  # only 400 ahead
    assert preflight.disk_need(ck, size, 1, (), 309, 100) == 0  # already there
    # keep 100 resumed at 500 with 100..500 held: nothing is pruned, so 600..1000 all add (a helper's case: the
    # first formula said one checkpoint)
    _fake_checkpoints(tmp_path / "k100", range(100, 501, 100), size)
    assert preflight.disk_need(tmp_path / "k100", size, 100, (), 1000, 100) == 5 * size
    # plain train, steps 10, a checkpoint every 4: 4, 8 and 10, keep 2: all three at once (2 + 1 being written)
    assert preflight.disk_need(tmp_path / "new", size, 2, (), 10, 4) == 3 * size


def test_check_disk_refuses_in_one_line_naming_the_largest(tmp_path, monkeypatch):
    from harness import checkpoint

    monkeypatch.setattr(checkpoint, "free_disk_bytes", lambda path: 5e9)
    preflight.check_disk(tmp_path, {"a": 2e9, "b": 3e9}, "fix it")  # fits exactly
    with pytest.raises(UserError) as e:
        preflight.check_disk(tmp_path, {"a": 2e9, "b": 3e9, "c": 1e9, "d": 0.5e9}, "free space")
    assert str(e.value) == (f"the checkpoints need about 6.5 GB more on the disk of {tmp_path} (b 3 GB, a 2 GB, "
                            "c 1 GB, ...) and it has 5 GB free: free space")
