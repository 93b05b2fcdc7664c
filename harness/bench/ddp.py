"""Several GPUs through torchrun, measured the way a user runs them: scaling, equality, and a killed job.

Every run here is the real ``train`` command under ``torchrun --standalone --nproc-per-node K`` (the README's
cluster command on one node), on a latent cache of random latents of the paper's shape (no SD-VAE weights
are needed: the training path is the one users run on a cache). What it measures:

* **scaling**: samples/s on 1 and on K processes (the median of the logging intervals after the first
  ``skip``, which hold the compile and warm-up), and the efficiency throughput(K) / (K · throughput(1));
* **equality**: one fp32 step with batch b on each of K ranks against one step with batch K·b on one
  process: the largest weight difference after the step (the position-keyed data order and noise make the
  two see the same samples);
* **kill and resume**: a K-process run killed (SIGKILL to one rank) after a checkpoint, rerun with
  ``--resume``, against the same run uninterrupted: the logged losses step by step, split at the checkpoint
  it resumed from (the steps before it were computed by the killed launch, so their difference is the two runs'
  run-to-run noise: 0 on the CPU, not 0 on CUDA with mamba-ssm, whose backward adds with atomics); then the same
  run resumed on one process, which must say that the global batch changed.

NVLink multicast stays off (NCCL_NVLS_ENABLE=0, TORCH_SYMM_MEM_DISABLE_MULTICAST=1, NVSHMEM_DISABLE_NVLS=1), as
the H200 machines here require; a cluster user sets what their site needs.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.bench.train import Shape
from harness.errors import UserError

NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
EFFICIENCY_TARGET = 0.95  # the multi-GPU issue's target for Matten-XL/2 and Latte-XL/2


@dataclass(frozen=True)
class Setup:
    """The training every run here shares: the model and batch (per process) of ``bench train``'s Shape, a latent
    cache of ``clips`` clips of that shape, and how ``train`` runs."""

    shape: Shape = Shape()
    clips: int = 640
    device: str = "cuda"
    precision: str = "bf16"
    compile: bool = True
    workers: int = 2
    ddp_bucket_mb: int = 25  # train's --ddp-bucket-mb (PyTorch's default)
    ddp_static_graph: bool = False  # train's --ddp-static-graph

    def ddp_suffix(self) -> str:
        """A run folder's suffix naming DDP options other than PyTorch's defaults ('' for the defaults), so that
        runs with other bucketing sit beside the defaults' in one workdir."""
        return (f"-bucket{self.ddp_bucket_mb}" if self.ddp_bucket_mb != 25 else "") + (
            "-static" if self.ddp_static_graph else "")


def make_cache(workdir: Path, setup: Setup) -> Path:
    """A latent cache of ``setup.clips`` random latents (seeded), written once."""
    from harness.vae import is_latent_cache, write_latent_cache

    cache, shape = workdir / "cache", setup.shape
    if not is_latent_cache(cache):
        rng = np.random.default_rng(0)
        lat = rng.standard_normal((setup.clips, shape.frames, shape.channels, shape.latent, shape.latent))
        write_latent_cache(cache, lat.astype(np.float16), np.arange(setup.clips) % max(shape.num_classes, 1),
                           shape.num_classes)
    return cache


def train_command(nproc: int, cache: Path, run_dir: Path, family: str, setup: Setup, steps: int, *,
                  log_every: int = 10, ckpt_every: int = 100_000, resume: bool = False, extra: tuple[str, ...] = (),
                  ) -> list[str]:
    """``torchrun --standalone --nproc-per-node nproc -m harness.cli train ...``: the command a user runs."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "harness.cli", "train", "--data", str(cache), "--run-dir", str(run_dir), "--family", family,
           "--size", setup.shape.size, "--patch", str(setup.shape.patch), "--batch", str(setup.shape.batch),
           "--steps", str(steps), "--log-every", str(log_every),
           "--ckpt-every", str(ckpt_every), "--device", setup.device, "--precision", setup.precision,
           "--num-workers", str(setup.workers), "--compile" if setup.compile else "--no-compile",
           "--ddp-bucket-mb", str(setup.ddp_bucket_mb),
           "--ddp-static-graph" if setup.ddp_static_graph else "--no-ddp-static-graph"]
    return cmd + (["--resume"] if resume else []) + list(extra)


def _name(family: str, setup: Setup) -> str:
    """The trained model's public name (models.registry: ``matten-xl-v3``, ``latte-xl``)."""
    from models.registry import ModelSpec

    return ModelSpec(family, setup.shape.size).name


def _env() -> dict[str, str]:
    return {**os.environ, **NO_MULTICAST, "PYTHONUNBUFFERED": "1"}


def _run(cmd: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=_env())
    if done.returncode != 0:
        tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-1:] or ["(no output)"]
        raise UserError(f"{' '.join(cmd[:6])} ... exited with {done.returncode}: {tail[0]} (log {log})")


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The run's logged intervals (metrics.jsonl), events left out; [] before the first (a line being written by
    a running job is left out too)."""
    out = []
    path = run_dir / "metrics.jsonl"
    for ln in path.read_text().splitlines() if path.exists() else []:
        try:
            row = json.loads(ln)
        except json.JSONDecodeError:
            continue
        if "event" not in row:
            out.append(row)
    return out


def throughput(run_dir: Path, skip: int) -> float:
    """Median samples/s over the logging intervals after the first ``skip`` (compile and warm-up)."""
    rows = metrics(run_dir)[skip:]
    if not rows:
        raise UserError(f"{run_dir}: no logging interval after the first {skip}; train more --steps")
    return statistics.median(r["samples_per_s"] for r in rows)


def scaling(families: list[str], setup: Setup, workdir: Path, nprocs: int = 2, steps: int = 60, log_every: int = 10,
            skip: int = 2) -> list[dict[str, Any]]:
    """Samples/s of each model on 1 and on ``nprocs`` processes, and the scaling efficiency."""
    cache = make_cache(workdir, setup)
    rows = []
    for family in families:
        rate = {}
        for k in (1, nprocs):
            run_dir = workdir / f"scaling-{family}-{k}{setup.ddp_suffix()}"  # 1 and N side by side, each setup
            cmd = train_command(k, cache, run_dir, family, setup, steps, log_every=log_every)
            _run(cmd, run_dir.with_suffix(".log"))
            rate[k] = throughput(run_dir, skip)
        eff = rate[nprocs] / (nprocs * rate[1])
        rows.append({"model": _name(family, setup), "batch per process": setup.shape.batch,
                     "samples/s, 1 process": rate[1], f"samples/s, {nprocs} processes": rate[nprocs],
                     "efficiency": eff, "target": EFFICIENCY_TARGET, "met": eff >= EFFICIENCY_TARGET})
    return rows


def _weights(run_dir: Path) -> dict[str, Any]:
    from harness.checkpoint import latest_checkpoint, load_checkpoint

    return load_checkpoint(latest_checkpoint(run_dir))["model"]


def equality(family: str, setup: Setup, workdir: Path, nprocs: int = 2) -> dict[str, Any]:
    """One fp32 step, batch b on each of ``nprocs`` ranks, against batch nprocs·b on one process."""
    from dataclasses import replace

    cache = make_cache(workdir, setup)
    exact = replace(setup, precision="fp32", compile=False)
    extra = ("--class-dropout", "0")
    many, one = workdir / f"equal-{family}-{nprocs}", workdir / f"equal-{family}-1"
    _run(train_command(nprocs, cache, many, family, exact, 1, log_every=1, extra=extra), many.with_suffix(".log"))
    double = replace(exact, shape=replace(setup.shape, batch=nprocs * setup.shape.batch))
    _run(train_command(1, cache, one, family, double, 1, log_every=1,
                       extra=extra), one.with_suffix(".log"))
    a, b = _weights(many), _weights(one)
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    scale = max(float(b[k].float().abs().max()) for k in b)
    per_rank = setup.shape.batch
    return {"model": _name(family, setup),
            "what": f"1 step, fp32: batch {per_rank} x {nprocs} ranks vs {nprocs * per_rank} x 1",
            "max |weight difference|": diff, "max |weight|": scale,
            "loss, ranks": metrics(many)[0]["loss"], "loss, one process": metrics(one)[0]["loss"]}


def _resumed_from(run_dir: Path) -> int | None:
    """The checkpoint step the run's last training started from, read from its record (records/train.json)."""
    rec = run_dir / "records" / "train.json"
    try:
        return int(json.loads(rec.read_text())["protocol"]["resumed_from_step"])
    except (OSError, KeyError, ValueError, TypeError):
        return None


def _rank_pids(launcher: int) -> list[int]:
    """The worker processes torchrun started (its children)."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(launcher)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def kill_resume(family: str, setup: Setup, workdir: Path, nprocs: int = 2, steps: int = 200, kill_after: int = 120,
                ckpt_every: int = 50, log_every: int = 10) -> dict[str, Any]:
    """A ``nprocs``-process run SIGKILLed at one rank once ``kill_after`` steps are logged, resumed with the same
    command, against the uninterrupted run; then resumed on one process past ``steps``."""
    cache = make_cache(workdir, setup)
    ref, run = workdir / f"resume-{family}-ref", workdir / f"resume-{family}"
    _run(train_command(nprocs, cache, ref, family, setup, steps, log_every=log_every, ckpt_every=ckpt_every),
         ref.with_suffix(".log"))
    cmd = train_command(nprocs, cache, run, family, setup, steps, log_every=log_every, ckpt_every=ckpt_every)
    with open(run.with_suffix(".killed.log"), "w") as f:
        launcher = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=_env())
        deadline = time.time() + 1800
        while time.time() < deadline and launcher.poll() is None:
            logged = metrics(run)
            if logged and logged[-1]["step"] >= kill_after:
                break
            time.sleep(0.5)
        ranks = _rank_pids(launcher.pid)
        if launcher.poll() is not None or not ranks:
            if launcher.poll() is None:
                launcher.kill()
                launcher.wait()
            raise UserError(f"the run ended (or logged nothing) before step {kill_after} "
                            f"(log {run.with_suffix('.killed.log')})")
        killed_at = metrics(run)[-1]["step"]  # the last step logged before the kill (a lower bound of where it hit)
        os.kill(ranks[-1], signal.SIGKILL)  # one rank; torchrun takes the group down
        if launcher.wait(timeout=600) == 0:
            raise UserError(f"the run finished before the kill took effect (log {run.with_suffix('.killed.log')}); "
                            "give it more steps")
    _run(cmd + ["--resume"], run.with_suffix(".resumed.log"))
    resumed_from = _resumed_from(run)
    a, b = {r["step"]: r["loss"] for r in metrics(ref)}, {r["step"]: r["loss"] for r in metrics(run)}
    diffs = [abs(a[s] - b[s]) for s in a if s in b]
    # the steps the killed launch logged before its checkpoint: two runs that no resume separates, i.e. the
    # run-to-run noise of the arithmetic (0 where it is deterministic) that the resumed steps are read against
    before = [abs(a[s] - b[s]) for s in a if s in b and resumed_from is not None and s <= resumed_from]
    after = [abs(a[s] - b[s]) for s in a if s in b and resumed_from is not None and s > resumed_from]
    one = train_command(1, cache, run, family, setup, steps + 2 * log_every, log_every=log_every,
                        ckpt_every=ckpt_every, resume=True)
    _run(one, run.with_suffix(".one-process.log"))
    warned = "the global batch changes" in " ".join(run.with_suffix(".one-process.log").read_text().split())  # wrapped
    return {"model": _name(family, setup), "processes": nprocs, "steps": steps, "killed after step": killed_at,
            "resumed from step": resumed_from,
            "logged steps compared": len(diffs), "max |loss difference|": max(diffs) if diffs else float("nan"),
            "max |loss difference| before the resume": max(before) if before else float("nan"),
            "max |loss difference| after the resume": max(after) if after else float("nan"),
            "bit for bit": bool(diffs) and max(diffs) == 0.0, "resumed on 1 process, warned": warned,
            "1-process run reached": metrics(run)[-1]["step"]}
