"""Training: IDDPM loss on video latents, AdamW + EMA, exact resume, DDP via torchrun.

One process per GPU (``torchrun --nproc-per-node N -m harness.cli train ...``); a single
process when torchrun is not used. Rank 0 writes checkpoints, metrics and the ledger.

Exactness: the data order, the diffusion timestep and the noise of every sample are
functions of (seed, step, position in the global batch) only, so a resumed run repeats the
uninterrupted one bit for bit, and N processes with batch b see the same samples, timesteps
and noise as one process with batch N·b. Everything else that draws random numbers (the
model's label dropout) uses the global RNGs, whose states (torch, CUDA, numpy, python; every
rank's) are in each checkpoint.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import random
import resource
import time
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from harness import ledger
from harness.console import console
from harness.data.clips import clips_to_float
from harness.device import resolve_device
from harness.diffusion import create_diffusion
from harness.errors import UserError
from harness.io import atomic_save_torch


@dataclass
class TrainConfig:
    data: str  # a prepared dataset folder or a latent cache (matten-bench encode)
    run_dir: str
    family: str = "matten"
    size: str = "tiny"
    variant: int = 3
    patch: int = 2
    conditioning: str = "madan"
    class_dropout: float = 0.1
    model_overrides: dict = field(default_factory=dict)  # depth / hidden / heads for custom sizes
    vae: str = "identity"  # for a prepared dataset: identity | sd-v1-4:PATH (ignored for a latent cache)
    num_frames: int = 16
    frame_interval: int = 3
    image_size: int = 256
    steps: int = 1000
    batch: int = 5  # per process (Latte's local_batch_size for UCF101)
    lr: float = 1e-4
    weight_decay: float = 0.0  # Latte: AdamW(lr=1e-4, weight_decay=0)
    ema_decay: float = 0.9999
    precision: str = "bf16"  # bf16 autocast | fp32
    clip_max_norm: float = 0.1  # Latte's UCF101 config: clip_max_norm 0.1 ...
    start_clip_iter: int = 100_000  # ... applied from step 100000 on (before: norm measured, not clipped)
    seed: int = 0
    ckpt_every: int = 1000
    keep_checkpoints: int = 2
    log_every: int = 10
    num_workers: int = 4
    device: str = "auto"
    compile: bool = False  # torch.compile the (DDP-wrapped) model; same math, faster on GPUs
    model_builder: str = "models:build_model"  # "module:function" honouring models.build_model's contract

    def hashed(self) -> dict[str, Any]:
        """What identifies the run. Lengths, intervals, workers, compile, and the two knobs a diverged
        run is resumed with (lr, precision) may change across a resume; the ledger records each start."""
        skip = {"steps", "ckpt_every", "keep_checkpoints", "log_every", "num_workers", "device", "run_dir", "compile"}
        skip |= {"lr", "precision"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}


# ------------------------------------------------------------------ distributed


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; NCCL on GPUs, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()) else "gloo"
        dist.init_process_group(backend=backend)
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(spec: str, d: Dist) -> torch.device:
    spec = resolve_device(spec)
    if spec == "cuda":  # under torchrun each rank takes its own GPU
        torch.cuda.set_device(d.local_rank)
        return torch.device("cuda", d.local_rank)
    return torch.device(spec)


# ------------------------------------------------------------------ data


def open_dataset(cfg: TrainConfig):
    """A latent cache (LatentDataset) or a prepared dataset (ClipDataset of uint8 clips; the training
    loop turns them into frames in [-1, 1] on the device with ``clips_to_float``)."""
    from harness.vae import LatentDataset, is_latent_cache

    if is_latent_cache(cfg.data):
        return LatentDataset(cfg.data)
    if not Path(cfg.data, "manifest.parquet").exists():
        raise UserError(f"{cfg.data} is neither a prepared dataset (manifest.parquet) nor a latent cache")
    from harness.data.clips import ClipDataset

    return ClipDataset(
        cfg.data,
        num_frames=cfg.num_frames,
        frame_interval=cfg.frame_interval,
        size=cfg.image_size,
        train=True,
        seed=cfg.seed,
        uint8=True,
    )


def epoch_batches(n: int, global_batch: int, seed: int, epoch: int) -> list[list[int]]:
    """The global batches of one epoch: a seeded permutation of range(n), incomplete tail dropped."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
    return [perm[k * global_batch : (k + 1) * global_batch] for k in range(n // global_batch)]


def collate(items: list[dict]) -> dict[str, torch.Tensor]:
    return {
        "video": torch.stack([torch.as_tensor(it["video"]) for it in items]),
        "label": torch.tensor([int(it["label"]) for it in items]),
        "position": torch.tensor([int(it["position"]) for it in items]),
    }


class _Positioned(torch.utils.data.Dataset):
    """Wraps a dataset so each item also carries its position in the global batch sequence."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key):
        i, pos = key
        item = dict(self.ds[i])
        item["position"] = pos
        return item


def iterate_batches(ds, cfg: TrainConfig, d: Dist, start_step: int):
    """Yield (step, batch) for this rank from ``start_step`` on, epoch by epoch (exact mid-epoch resume)."""
    g = cfg.batch * d.world
    per_epoch = len(ds) // g
    if per_epoch == 0:
        raise UserError(f"the dataset has {len(ds)} clips, fewer than one global batch ({g}); lower --batch")
    step = start_step
    while True:
        epoch, k0 = divmod(step, per_epoch)
        ds.set_epoch(epoch)
        batches = epoch_batches(len(ds), g, cfg.seed, epoch)[k0:]
        # (index, global sample position) pairs for this rank
        lo, hi = d.rank * cfg.batch, (d.rank + 1) * cfg.batch
        keyed = [[(i, (step + j) * g + lo + r) for r, i in enumerate(b[lo:hi])] for j, b in enumerate(batches)]
        loader = torch.utils.data.DataLoader(
            _Positioned(ds),
            batch_sampler=keyed,
            num_workers=cfg.num_workers,
            collate_fn=collate,
            persistent_workers=False,
        )
        for batch in loader:
            yield step, batch
            step += 1


def draw_t_and_noise(positions: torch.Tensor, shape: tuple, seed: int, num_timesteps: int, device: torch.device):
    """Timestep and noise of each sample from its own generator seeded by (seed, global position)."""
    ts, noises = [], []
    for p in positions.tolist():
        g = torch.Generator(device=device).manual_seed(seed * 1_000_000_007 + p)
        ts.append(torch.randint(0, num_timesteps, (1,), generator=g, device=device))
        noises.append(torch.randn(shape, generator=g, device=device))
    return torch.cat(ts), torch.stack(noises)


# ------------------------------------------------------------------ model, EMA, checkpoints


def build_model_from_config(
    cfg: TrainConfig, *, in_channels: int, input_size: int, num_classes: int, num_frames: int | None = None
):
    mod_name, _, fn_name = cfg.model_builder.partition(":")
    try:
        build = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as e:
        raise UserError(f"cannot import the model builder {cfg.model_builder}: {e}") from e
    return build(
        cfg.family,
        cfg.size,
        variant=cfg.variant,
        patch=cfg.patch,
        conditioning=cfg.conditioning,
        num_classes=num_classes,
        num_frames=num_frames or cfg.num_frames,
        in_channels=in_channels,
        input_size=input_size,
        class_dropout=cfg.class_dropout,
        **cfg.model_overrides,
    )


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema ← decay·ema + (1−decay)·model, parameter by parameter (as DiT)."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.mul_(decay).add_(p.detach(), alpha=1 - decay)


def rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    return sorted(checkpoint_dir(run_dir).glob("step-*.pt"))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    # weights_only=False: our own file, and it holds numpy/python RNG states
    return torch.load(path, map_location="cpu", weights_only=False)


def peak_memory(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "cpu_max_rss"


def scan_backend() -> str:
    try:
        from models.scan import backend_in_use
    except ImportError:
        return "unavailable (models.scan not importable)"
    return str(backend_in_use())


# ------------------------------------------------------------------ the loop


class TrainingDiverged(UserError):
    """The loss or gradient norm became NaN/inf; the last good checkpoint is untouched."""


def train(config: TrainConfig | dict, resume: bool = False) -> dict[str, Any]:
    """Train to ``config.steps`` steps; with ``resume`` continue from the run's latest checkpoint."""
    cfg = config if isinstance(config, TrainConfig) else TrainConfig(**config)
    if cfg.precision not in ("bf16", "fp32"):
        raise UserError(f"--precision must be bf16 or fp32, not {cfg.precision!r}")
    d = init_distributed(cfg.device)
    device = pick_device(cfg.device, d)
    run_dir = Path(cfg.run_dir)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None and not resume:
        raise UserError(f"{run_dir} already has checkpoints (latest {ckpt.name}); pass --resume or a new --run-dir")

    torch.manual_seed(cfg.seed * 1000 + d.rank)
    np.random.seed(cfg.seed * 1000 + d.rank)
    random.seed(cfg.seed * 1000 + d.rank)

    ds = open_dataset(cfg)
    vae = None
    sample_video = clips_to_float(torch.as_tensor(ds[0]["video"]))  # (T, C, H, W)
    if hasattr(ds, "meta"):  # latent cache: the latents go straight in
        in_channels, input_size = sample_video.shape[1], sample_video.shape[-1]
    else:
        from harness.vae import load_vae

        vae = load_vae(cfg.vae, device)
        in_channels, input_size = vae.channels, sample_video.shape[-1] // vae.downsample
    num_classes = int(getattr(ds, "num_classes", 0))
    model_args = {
        "in_channels": int(in_channels),
        "input_size": int(input_size),
        "num_classes": num_classes,
        "num_frames": int(sample_video.shape[0]),  # a latent cache fixes T itself
    }
    model = build_model_from_config(cfg, **model_args)
    vae_id = _vae_identity(ds, vae) if d.main else {}
    model.to(device)
    ema = deepcopy(model).requires_grad_(False).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=device.type == "cuda")
    diffusion = create_diffusion()

    start = 0
    if ckpt is not None:
        state = load_checkpoint(ckpt)
        if state["config_hash"] != ledger.config_hash(cfg.hashed()):
            raise UserError(f"{ckpt} was written with a different configuration; resume with the same options")
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        for group in opt.param_groups:  # the optimizer state carries the old lr; --lr wins
            group["lr"] = cfg.lr
        saved_world = state.get("data", {}).get("world_size", len(state["rng"]))
        if saved_world != d.world and d.main:  # allowed (a cluster job may get other GPUs), never silent
            console.print(
                f"[yellow]warning:[/yellow] {ckpt} was written by {saved_world} process(es), resuming on {d.world}: "
                f"the global batch changes from {saved_world * cfg.batch} to {d.world * cfg.batch} and this resume "
                "is not bit-for-bit the run it continues"
            )
        set_rng_state(state["rng"][d.rank] if d.rank < len(state["rng"]) else state["rng"][0])
        start = state["step"]
    ddp = model
    if d.world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile:
        ddp = torch.compile(ddp)

    rec = None
    metrics_path = run_dir / "metrics.jsonl"
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        rec = ledger.start(
            run_dir,
            "train",
            cfg.hashed(),
            protocol={
                "loss": "mse(eps) + vb (IDDPM learned range)",
                "lr": cfg.lr,
                "precision": cfg.precision,
                "resumed_from_step": start,
            },
        )
        _truncate_metrics(metrics_path, start)

    model.train()
    last_ckpt = ckpt
    t_log, n_log = time.perf_counter(), 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    from harness.console import progress

    with progress() if d.main else _NoBar() as bar:
        task = bar.add_task("train", total=cfg.steps, completed=start)
        if start >= cfg.steps:
            batches = iter(())
        else:
            batches = iterate_batches(ds, cfg, d, start)
        for step, batch in batches:
            x = clips_to_float(batch["video"].to(device, non_blocking=True))
            if vae is not None:
                with torch.no_grad():
                    x = vae.encode(x)
            y = batch["label"].to(device) if num_classes > 0 else None
            t, noise = draw_t_and_noise(
                batch["position"], tuple(x.shape[1:]), cfg.seed, diffusion.num_timesteps, device
            )
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                losses = diffusion.training_losses(ddp, x, t, y, noise)
            loss = losses["loss"].mean()
            loss.backward()
            clip = cfg.clip_max_norm if step >= cfg.start_clip_iter else math.inf
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            stats = torch.stack([loss.detach(), losses["mse"].mean().detach(), losses["vb"].mean().detach(), grad_norm])
            if d.world > 1:
                dist.all_reduce(stats)
                stats /= d.world
            loss_v, mse_v, vb_v, gn_v = stats.tolist()
            if not all(math.isfinite(v) for v in (loss_v, gn_v)):
                where = f"last good checkpoint: {last_ckpt}" if last_ckpt else "no checkpoint was written yet"
                if d.main:
                    _append_jsonl(
                        metrics_path, {"step": step + 1, "event": "diverged", "loss": loss_v, "grad_norm": gn_v}
                    )
                raise TrainingDiverged(
                    f"training diverged at step {step + 1}: loss={loss_v} grad_norm={gn_v}; {where} "
                    "(--resume restarts from it; a lower --lr or --precision fp32 may be given with it)"
                )
            opt.step()
            opt.zero_grad(set_to_none=True)
            update_ema(ema, model, cfg.ema_decay)
            done = step + 1
            n_log += x.shape[0] * d.world
            if d.main:
                bar.update(task, completed=done, description=f"train loss {loss_v:.4f}")
            if done % cfg.log_every == 0 or done == cfg.steps:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                dt = time.perf_counter() - t_log
                mem, mem_kind = peak_memory(device)
                if d.main:
                    _append_jsonl(
                        metrics_path,
                        {
                            "step": done,
                            "loss": loss_v,
                            "mse": mse_v,
                            "vb": vb_v,
                            "grad_norm": gn_v,
                            "clipped": clip != math.inf,
                            "lr": opt.param_groups[0]["lr"],
                            "samples_per_s": n_log / dt,
                            "peak_mem_gib": round(mem, 3),
                            "mem_kind": mem_kind,
                        },
                    )
                t_log, n_log = time.perf_counter(), 0
            if done % cfg.ckpt_every == 0 or done == cfg.steps:
                last_ckpt = save_checkpoint(run_dir, cfg, d, done, model, ema, opt, len(ds), model_args, vae_id)
            if done >= cfg.steps:
                break

    if d.main:
        rec = ledger.finish(
            run_dir,
            rec,
            outputs={
                "checkpoint": str(last_ckpt.relative_to(run_dir)) if last_ckpt else None,
                "metrics": "metrics.jsonl",
            },
            scan_backend=scan_backend(),
            world_size=d.world,
            steps=cfg.steps,
        )
    if d.world > 1:
        dist.barrier()
    return rec or {}


def _vae_identity(ds, vae) -> dict[str, Any]:
    """The VAE whose latents the model learns (the cache's, or the one encoding on the fly)."""
    if hasattr(ds, "meta"):
        return ds.meta["vae"]
    return vae.identity() if hasattr(vae, "identity") else {"kind": "identity"}


def save_checkpoint(
    run_dir: Path, cfg: TrainConfig, d: Dist, step: int, model, ema, opt, n: int, model_args: dict, vae_identity: dict
) -> Path:
    """Rank 0 writes model, EMA, optimizer, step, every rank's RNG states and the data position, atomically."""
    states = [None] * d.world
    if d.world > 1:
        dist.all_gather_object(states, rng_state())
    else:
        states = [rng_state()]
    path = checkpoint_dir(run_dir) / f"step-{step:07d}.pt"
    if d.main:
        per_epoch = n // (cfg.batch * d.world)
        atomic_save_torch(
            path,
            {
                "step": step,
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": opt.state_dict(),
                "rng": states,
                "data": {"epoch": step // per_epoch, "batch_in_epoch": step % per_epoch, "world_size": d.world},
                "config": dataclasses.asdict(cfg),
                "model_args": model_args,
                "vae": vae_identity,
                "config_hash": ledger.config_hash(cfg.hashed()),
                "scan_backend": scan_backend(),
            },
        )
        for old in list_checkpoints(run_dir)[: -cfg.keep_checkpoints]:
            old.unlink()
    if d.world > 1:
        dist.barrier()
    return path


def _append_jsonl(path: Path, obj: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(obj) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop lines a killed run wrote after its last checkpoint (they will be written again)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
    from harness.io import atomic_write_text

    atomic_write_text(path, "".join(ln + "\n" for ln in keep))


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        pass
