"""Training: IDDPM loss on video latents, AdamW + EMA, exact resume, DDP via torchrun.

One process per GPU (``torchrun --nproc-per-node N -m harness.cli train ...``); a single
process when torchrun is not used. Rank 0 writes checkpoints, metrics and the ledger.

Exactness: the data order, the diffusion timestep and the noise of every sample are
functions of (seed, step, position in the global batch) only, drawn on the CPU in the
DataLoader's workers, so a resumed run repeats the uninterrupted one bit for bit, N
processes with batch b see the same samples, timesteps and noise as one process with
batch N·b, and a GPU run draws the same noise as a CPU run. Everything else that draws
random numbers (the model's label dropout) uses the global RNGs, whose states (every
rank's) are in each checkpoint.

Unreadable videos: a window the loader cannot read (``harness.data.clips.UnreadableVideo``: neither decord
nor, after it, PyAV on one thread decodes it; the same for every run) does not stop the run. The sample at
global position p gets a substitute clip: the first readable of up to 16 other videos drawn from (seed, p)
alone, at the same epoch's window, with its own label; its timestep and noise stay those of p. So the data
stays a function of (seed, step, position) and the files, whatever the workers and the timing. Each
unreadable video is named once (a warning) and listed in ``records/train.json`` (``bad_videos``) and in the
checkpoints; more of them than ``--max-bad-videos`` allows stop the run with one line (with several
processes, at the next logging interval or checkpoint, where they compare notes).

Speed: the loop only queues work on the device. Metrics are summed on the device and read
once per logging interval (the one host sync, besides checkpoints); the EMA is two foreach
kernels; AdamW is fused on CUDA; on CUDA the model is compiled block by block
(``harness.machine.compile_blocks``) unless ``compile=False``, in ``compile_mode`` (with CUDA graphs each
step starts a new graph iteration: ``torch.compiler.cudagraph_mark_step_begin``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator
from copy import deepcopy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.markup import escape

from harness import ledger
from harness.checkpoint import (
    CheckpointWriter,
    checkpoint_bytes,
    checkpoint_dir,
    latest_checkpoint,
    load_checkpoint,
    set_rng_state,
    step_of,
)
from harness.config import TrainConfig
from harness.console import console, progress
from harness.data.clips import UnreadableVideo, clips_to_float
from harness.diffusion import create_diffusion
from harness.distributed import Dist, all_gather_objects, all_reduce_sum, barrier, init_distributed, wrap
from harness.ema import update_ema
from harness.errors import UserError
from harness.lock import folder_lock
from harness.machine import (
    compile_blocks,
    machine_record,
    peak_memory_gib,
    reset_peak_memory,
    resolve_device,
    synchronize,
)


class TrainingDiverged(UserError):
    """The loss or gradient norm became NaN/inf; the last good checkpoint is untouched."""


# ------------------------------------------------------------------ data: clips, timesteps and noise by position


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


def batch_keys(n: int, batch: int, d: Dist, seed: int, start_step: int) -> Iterator[list[tuple[int, int, int]]]:
    """This rank's batches from ``start_step`` on, endlessly, epoch after epoch: lists of
    (item index, global sample position, epoch). Rank r takes slots [r·batch, (r+1)·batch) of each global batch."""
    g = batch * d.world
    per_epoch = n // g
    lo = d.rank * batch
    step = start_step
    while True:
        epoch, k0 = divmod(step, per_epoch)
        for b in epoch_batches(n, g, seed, epoch)[k0:]:
            yield [(i, step * g + lo + r, epoch) for r, i in enumerate(b[lo : lo + batch])]
            step += 1


def draw_t_and_noise(position: int, shape: tuple[int, ...], seed: int, num_timesteps: int):
    """(t: int64 scalar, noise: float32 ``shape``) of one sample, from a CPU generator seeded by
    (seed, global position) alone."""
    g = torch.Generator().manual_seed(seed * 1_000_000_007 + position)
    t = torch.randint(0, num_timesteps, (1,), generator=g)[0]
    return t, torch.randn(shape, generator=g)


SUBSTITUTE_TRIES = 16  # other videos tried, in a fixed order, in place of an unreadable one


def substitutes(n: int, i: int, seed: int, position: int) -> list[int]:
    """The videos tried, in order, in place of unreadable video ``i`` for the sample at global ``position``:
    up to ``SUBSTITUTE_TRIES`` others, drawn from (seed, position) alone."""
    rng = np.random.default_rng((seed, position, 0x5B5717))
    order = rng.choice(n, size=min(n, SUBSTITUTE_TRIES + 1), replace=False).tolist()
    return [j for j in order if j != i][:SUBSTITUTE_TRIES]


class TrainingSamples(torch.utils.data.Dataset):
    """``ds`` keyed by (index, position, epoch): the clip at that epoch (its window and flip), its label,
    and the sample's timestep and noise. Runs in the DataLoader's workers.

    An unreadable clip is replaced by the first readable of :func:`substitutes` (same epoch; the substitute's
    label; the position's timestep and noise). The item says what happened: ``bad`` ((path, reason) of each
    unreadable window met), ``substituted`` (1 if the clip is a substitute), ``unfilled`` (1 if no substitute
    could be read either: a blank clip the training loop refuses to train on) and ``reread`` (the path of the
    video whose window decord failed on and PyAV read, the same pixels; empty list when none)."""

    def __init__(self, ds, noise_shape: tuple[int, ...], seed: int, num_timesteps: int):
        self.ds, self.noise_shape, self.seed, self.num_timesteps = ds, noise_shape, seed, num_timesteps

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, Any]:
        i, position, epoch = key
        bad: list[tuple[str, str]] = []
        if in_memory(self.ds):  # a latent cache: no epochs, nothing to fail
            item = self.ds[i]
        else:
            item = self._readable(i, position, epoch, bad)
        t, noise = draw_t_and_noise(position, self.noise_shape, self.seed, self.num_timesteps)
        return {"video": torch.as_tensor(item["video"]), "label": int(item["label"]), "t": t, "noise": noise,
                "bad": bad, "substituted": int(bool(bad) and not item.get("unfilled")),
                "unfilled": int(bool(item.get("unfilled"))),
                "reread": [self.ds.paths[item["index"]]] if item.get("reread") else []}

    def _readable(self, i: int, position: int, epoch: int, bad: list[tuple[str, str]]) -> dict[str, Any]:
        try:
            return self.ds.clip(i, epoch)
        except UnreadableVideo as e:
            bad.append((e.path, e.reason))
        for j in substitutes(len(self.ds), i, self.seed, position):
            try:
                return self.ds.clip(j, epoch)
            except UnreadableVideo as e:
                bad.append((e.path, e.reason))
        blank = torch.zeros((self.ds.num_frames, self.ds.size, self.ds.size, 3), dtype=torch.uint8)
        return {"video": blank, "label": 0, "unfilled": True}


def collate(items: list[dict]) -> dict[str, Any]:
    return {
        "video": torch.stack([it["video"] for it in items]),
        "label": torch.tensor([it["label"] for it in items]),
        "t": torch.stack([it["t"] for it in items]),
        "noise": torch.stack([it["noise"] for it in items]),
        "bad": [b for it in items for b in it["bad"]],
        "substituted": sum(it["substituted"] for it in items),
        "unfilled": sum(it["unfilled"] for it in items),
        "reread": [path for it in items for path in it["reread"]],
    }


class BadVideos:
    """The videos the loader could not read during a run, against the budget (``--max-bad-videos``).

    ``videos``: path -> {"reason", "first_step" (1-based, as metrics.jsonl), "reads"}; ``substituted``:
    samples that got a substitute clip; ``reread``: path -> windows decord failed on and PyAV read (how many
    depends on decord's timing; the pixels do not; each such video is named once). Batches are noted as they
    come (:meth:`note`); :meth:`sync` shares the notes of every process (one all-gather, only with several
    processes), names each new video and stops the run (``UserError``, one line) when more videos than allowed
    could not be read, or a sample found no readable substitute. Saved in checkpoints: a resume goes on counting.
    """

    def __init__(self, num_videos: int, fraction: float):
        self.num_videos, self.fraction = num_videos, fraction
        self.allowed = math.ceil(fraction * num_videos)
        self.videos: dict[str, dict[str, Any]] = {}
        self.substituted = self.unfilled = 0
        self.reread: dict[str, int] = {}
        self._pending: list[tuple] = []  # (step, bad, substituted, reread, unfilled) of each batch that met any

    @property
    def pending(self) -> bool:
        """Notes not yet synced."""
        return bool(self._pending)

    def note(self, step: int, batch: dict[str, Any]) -> None:
        """Keep what batch ``step`` (0-based) met, until the next :meth:`sync`."""
        if batch["bad"] or batch["reread"] or batch["unfilled"]:
            self._pending.append((step + 1, list(batch["bad"]), batch["substituted"], batch["reread"],
                                  batch["unfilled"]))

    def sync(self, d: Dist) -> None:
        """Merge every process's notes (in step, then rank order), warn about new videos, check the budget."""
        notes = all_gather_objects(self._pending, d) if d.world > 1 else [self._pending]
        self._pending = []
        events = sorted(((step, rank, *rest) for rank, mine in enumerate(notes) for step, *rest in mine),
                        key=lambda e: (e[0], e[1]))
        for step, _, bad, substituted, reread, unfilled in events:
            self.substituted += substituted
            for path in reread:
                if path not in self.reread and d.main:
                    console.print(f"[yellow]warning:[/yellow] step {step}: decord failed on a window of "
                                  f"{escape(path)}, which FFmpeg (PyAV) then read (the same pixels)",
                                  soft_wrap=True, highlight=False)
                self.reread[path] = self.reread.get(path, 0) + 1
            self.unfilled += unfilled
            for path, reason in bad:
                if path in self.videos:
                    self.videos[path]["reads"] += 1
                    continue
                self.videos[path] = {"reason": reason, "first_step": step, "reads": 1}
                if d.main:
                    console.print(
                        f"[yellow]warning:[/yellow] step {step}: cannot read {escape(path)} ({escape(reason)}); its "
                        f"samples get substitute clips ({len(self.videos)} unreadable video(s), --max-bad-videos "
                        f"allows {self.allowed})", soft_wrap=True, highlight=False,
                    )
        self.check()

    def check(self) -> None:
        if self.unfilled:
            raise UserError(f"{self.unfilled} sample(s) found no readable clip among their video and "
                            f"{SUBSTITUTE_TRIES} substitutes: {self._listed()}; run `matten-bench prepare ... "
                            "--check full` to find and skip the unreadable videos")
        if len(self.videos) > self.allowed:
            raise UserError(
                f"{len(self.videos)} videos could not be read, more than --max-bad-videos {self.fraction} allows "
                f"({self.allowed} of {self.num_videos}): {self._listed()}; `matten-bench prepare ... --check full` "
                "finds and skips them (then train in a new --run-dir), or --resume with a larger --max-bad-videos"
            )

    def _listed(self, most: int = 3) -> str:
        shown = [f"{path} ({v['reason']})" for path, v in list(self.videos.items())[:most]]
        more = len(self.videos) - most
        return ", ".join(shown) + (f" and {more} more" if more > 0 else "")

    def record(self) -> dict[str, Any]:
        return {"max_bad_videos": self.fraction, "allowed": self.allowed, "of_videos": self.num_videos,
                "count": len(self.videos), "videos": [{"path": p, **v} for p, v in self.videos.items()],
                "samples_substituted": self.substituted, "windows_reread_by_pyav": sum(self.reread.values()),
                "reread_videos": dict(sorted(self.reread.items()))}

    def state_dict(self) -> dict[str, Any]:
        return {"videos": self.videos, "substituted": self.substituted, "reread": dict(self.reread)}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.videos = {p: dict(v) for p, v in s["videos"].items()}
        self.substituted, self.reread = int(s["substituted"]), {p: int(n) for p, n in s["reread"].items()}


def in_memory(ds) -> bool:
    """A latent cache (harness.vae.LatentDataset: its clips in memory, fixed), not videos decoded per sample (a
    dataset with ``clip(i, epoch)``)."""
    return not hasattr(ds, "clip")


def loader_kind(ds, cfg: TrainConfig, *, cuda: bool) -> str:
    """How this run's batches are made: "threads" (harness.loader: a latent cache, in memory, off CUDA),
    "processes" (DataLoader's workers: videos to decode, and any data when training on CUDA) or "main"
    (``--num-workers 0``: in the loop's own thread).

    On CUDA a small model's step is bound by the host launching its kernels, and loader threads share the
    interpreter lock with that launching: compiled Latte-S/8 at the mini shape kept 71-72 % of its pure step's
    samples/s with threads and 85-90 % with processes (H200, results/benchmarks-history.md, ninth session)."""
    if cfg.num_workers == 0:
        return "main"
    if cfg.loader == "auto":
        return "threads" if in_memory(ds) and not cuda else "processes"
    return cfg.loader


def make_loader(ds, cfg: TrainConfig, d: Dist, start_step: int, noise_shape: tuple[int, ...], num_timesteps: int,
                *, cuda: bool, pin: bool):
    """One endless iterator of batches for the whole run (its workers live across epochs): a DataLoader, or
    harness.loader.ThreadedBatches (the same batches) as :func:`loader_kind` says for ``cuda`` (training on CUDA);
    ``pin``: the batches in pinned memory (for a CUDA device)."""
    if len(ds) < cfg.batch * d.world:
        raise UserError(f"the dataset has {len(ds)} clips, fewer than one global batch ({cfg.batch * d.world}); "
                        "lower --batch")
    samples = TrainingSamples(ds, noise_shape, cfg.seed, num_timesteps)
    keys = batch_keys(len(ds), cfg.batch, d, cfg.seed, start_step)
    if loader_kind(ds, cfg, cuda=cuda) == "threads":
        from harness.loader import ThreadedBatches

        return ThreadedBatches(samples, keys, collate, cfg.num_workers, pin)
    from harness.machine import usable_cpus

    if cfg.num_workers > usable_cpus() and d.main:  # said once, in one line, instead of torch's paragraph
        console.print(f"note: --num-workers {cfg.num_workers} on {usable_cpus()} usable CPU(s): the workers share "
                      "them (--num-workers sets how many)")
    warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
    return torch.utils.data.DataLoader(
        samples,
        batch_sampler=keys,
        num_workers=cfg.num_workers,
        collate_fn=collate,
        pin_memory=pin,
        # its own generator: starting the loader must not draw from the global RNG, whose stream (label dropout)
        # a resumed run continues from the checkpoint; the workers' seeds are unused (each sample is keyed)
        generator=torch.Generator().manual_seed(cfg.seed),
    )


# ------------------------------------------------------------------ model and metrics


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


class IntervalStats:
    """Sums of (loss, mse, vb, grad norm) over the current logging interval, kept on the device so that
    no step waits for the host, and the first step whose loss or gradient norm was not finite."""

    def __init__(self, device: torch.device):
        self.sums = torch.zeros(4, dtype=torch.float64, device=device)
        self.steps = 0
        self.first_bad = torch.zeros((), dtype=torch.int64, device=device)  # step number (1-based), 0 = none
        self.at_bad = torch.zeros(4, dtype=torch.float64, device=device)

    def add(self, step: int, loss, mse, vb, grad_norm) -> None:
        v = torch.stack([loss, mse, vb, grad_norm]).detach().to(torch.float64)
        self.sums += v
        self.steps += 1
        new = ~torch.isfinite(v[0] + v[3]) & (self.first_bad == 0)  # finite iff loss and norm both are
        self.first_bad = torch.where(new, step + 1, self.first_bad)
        self.at_bad = torch.where(new, v, self.at_bad)

    def raise_if_diverged(self, d: Dist, last_ckpt: Path | None, on_diverge) -> None:
        """A host sync (and, with several processes, one collective): stop at the first non-finite step."""
        first = int(self.first_bad.item())
        if d.world > 1:  # every rank stops together (a non-finite gradient norm is the same on all of them)
            anywhere = all_reduce_sum(torch.tensor([float(first > 0)], device=self.sums.device), d)
            if anywhere.item() == 0:
                return
        elif first == 0:
            return
        loss, _, _, gn = self.at_bad.tolist()
        on_diverge(first, loss, gn)
        where = f"last good checkpoint: {last_ckpt}" if last_ckpt else "no checkpoint was written yet"
        raise TrainingDiverged(
            f"training diverged at step {first}: loss={loss} grad_norm={gn}; {where} "
            "(--resume restarts from it; a lower --lr or --precision fp32 may be given with it)"
        )

    def take(self, d: Dist) -> dict[str, float]:
        """The interval's means over every process (the interval's one host sync), then a new interval."""
        sums = all_reduce_sum(self.sums.clone(), d) / d.world
        loss, mse, vb, gn = (v / max(self.steps, 1) for v in sums.tolist())
        self.sums.zero_()
        n, self.steps = self.steps, 0
        return {"loss": loss, "mse": mse, "vb": vb, "grad_norm": gn, "steps": n}

    def state_dict(self) -> dict[str, Any]:
        return {"sums": self.sums.cpu(), "steps": self.steps}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.sums.copy_(s["sums"])
        self.steps = int(s["steps"])


def scan_backend() -> str:
    from models.scan import backend_in_use

    return str(backend_in_use())


# ------------------------------------------------------------------ the loop


def train(config: TrainConfig | dict, resume: bool = False) -> dict[str, Any]:
    """Train to ``config.steps`` steps; with ``resume`` continue from the run's latest checkpoint.

    The run directory is this job's while it trains (harness.lock): a second job on it, or an unwritable
    folder, is a one-line error before any work (on every rank under torchrun)."""
    cfg = config if isinstance(config, TrainConfig) else TrainConfig(**config)
    for name in ("data", "run_dir"):
        if not getattr(cfg, name):
            raise UserError(f"--{name.replace('_', '-')} is required")
    device = resolve_device(cfg.device)
    cfg.compile_plan(device)  # a --compile-mode that would do nothing here is refused before any work
    d = init_distributed(device)
    with contextlib.ExitStack() as held:
        on_rank0_for_all(lambda: held.enter_context(folder_lock(cfg.run_dir, "train")), d, device,
                         f"rank 0 could not take {cfg.run_dir}")
        return _train(cfg, resume, device, d)


def on_rank0_for_all(check: Callable[[], Any], d: Dist, device: torch.device, elsewhere: str) -> None:
    """Run ``check`` on rank 0; when it raises a UserError, every rank stops (rank 0 with it, the others with
    ``elsewhere``) and none is left waiting in a collective. One all-reduce with several processes."""
    refused = None
    if d.main:
        try:
            check()
        except UserError as e:
            refused = e
    if d.world > 1:
        flag = all_reduce_sum(torch.tensor([float(refused is not None)], device=device), d)
        refused = refused or (UserError(elsewhere) if flag.item() else None)
    if refused is not None:
        raise refused


def _train(cfg: TrainConfig, resume: bool, device: torch.device, d: Dist) -> dict[str, Any]:
    run_dir = Path(cfg.run_dir)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None and not resume:
        raise UserError(f"{run_dir} already has checkpoints (latest {ckpt.name}); pass --resume or a new --run-dir")
    for seed_fn in (torch.manual_seed, np.random.seed, random.seed):  # label dropout's RNG, per rank
        seed_fn(cfg.seed * 1000 + d.rank)

    # -- data, model, optimizer, EMA
    on_cuda = device.type == "cuda"  # fused AdamW, pinned batches, and the loader --loader auto picks
    ds = open_dataset(cfg)
    vae, model_args = _model_inputs(cfg, ds, device)
    if cfg.preflight and start_step_of(ckpt) < cfg.steps:  # will a step fit? refused before any allocation
        from harness import preflight

        preflight.check(cfg, model_args, device, vae.downsample if vae is not None else 1)
    model = build_model_from_config(cfg, **model_args).to(device)
    ema = deepcopy(model).requires_grad_(False).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=on_cuda)
    schedule = cfg.ema_schedule()
    diffusion = create_diffusion()
    stats = IntervalStats(device)
    bad = BadVideos(len(ds), cfg.max_bad_videos)
    start = _restore(ckpt, cfg, d, model, ema, opt, stats, bad) if ckpt is not None else 0
    if resume and d.main:  # where a resumed run continues (or that there was nothing to resume), never silent
        console.print(f"resume: from {escape(ckpt.name)}, step {start}" if ckpt is not None else
                      f"resume: no checkpoint in {escape(str(run_dir))}: training starts at step 0")
    if start > cfg.steps:
        raise UserError(f"{ckpt} is at step {start}, past --steps {cfg.steps}: pass --steps {start} or more")
    if cfg.preflight and (start < cfg.steps or ckpt is None):  # will its checkpoints fit on the disk?
        _check_disk(cfg, checkpoint_bytes(model), d, device)
    compiled, cuda_graphs = cfg.compile_plan(device)
    compiled_what = compile_blocks(model, cfg.compile_mode) if compiled else None  # in place, before DDP wraps it
    forward = wrap(model, device, d, cfg.ddp_bucket_mb, cfg.ddp_static_graph)
    noise_shape = (model_args["num_frames"], model_args["in_channels"], model_args["input_size"],
                   model_args["input_size"])
    loader = (
        make_loader(ds, cfg, d, start, noise_shape, diffusion.num_timesteps, cuda=on_cuda, pin=on_cuda)
        if start < cfg.steps
        else ()  # nothing left to train: start no workers
    )

    # -- records
    metrics_path, rec = run_dir / "metrics.jsonl", None
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        protocol = {"loss": "mse(eps) + vb (IDDPM learned range)", "lr": cfg.lr, "lr_schedule": cfg.describe_lr(),
                    "precision": cfg.precision,
                    "resumed_from_step": start, "ema": schedule.describe(), "compile": compiled,
                    "compile_mode": cfg.compile_mode if compiled else None,
                    "loader": {"kind": loader_kind(ds, cfg, cuda=on_cuda) if start < cfg.steps else None,
                               "workers": cfg.num_workers},  # kind None: no step to train, no loader started
                    "compiled": compiled_what,
                    "machine": machine_record(device)}
        rec = ledger.start(run_dir, "train", cfg.hashed(), protocol=protocol)
        _truncate_metrics(metrics_path, start)
    state = {"vae": _vae_identity(ds, vae) if d.main else {}, "model_args": model_args}

    def on_diverge(step: int, loss: float, gn: float) -> None:
        if d.main:
            _append_jsonl(metrics_path, {"step": step, "event": "diverged", "loss": loss, "grad_norm": gn})

    def checkpoint_state(done: int) -> dict[str, Any]:
        per_epoch = len(ds) // (cfg.batch * d.world)
        return {
            **state, "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
            "ema_schedule": schedule.describe(), "interval_stats": stats.state_dict(), "bad_videos": bad.state_dict(),
            "data": {"epoch": done // per_epoch, "batch_in_epoch": done % per_epoch, "world_size": d.world},
            "config": dataclasses.asdict(cfg), "config_hash": ledger.config_hash(cfg.hashed()),
            "scan_backend": scan_backend(),
        }

    # -- the loop: everything below only queues work on the device, except where a comment says otherwise
    model.train()
    reset_peak_memory(device)
    writer = CheckpointWriter(run_dir, cfg.keep_checkpoints, d, cfg.keep_steps)
    last_ckpt, t_log, n_log = ckpt, time.perf_counter(), 0
    with progress() if d.main else _NoBar() as bar, _closing(writer), _closing(loader):
        task = bar.add_task("train", total=cfg.steps, completed=start)
        if start == cfg.steps == 0:  # --steps 0: the untrained model's checkpoint (a curve's step-0 point)
            last_ckpt = writer.save(0, checkpoint_state(0))
        for step, batch in zip(range(start, cfg.steps), loader, strict=False):  # the loader is endless
            if cuda_graphs:  # a new iteration: the graphs may reuse the previous step's outputs' memory
                torch.compiler.cudagraph_mark_step_begin()
            bad.note(step, batch)  # unreadable videos (substituted), host-side lists: no device sync
            if d.world == 1 and bad.pending:
                bad.sync(d)  # one process: name them and check the budget now
            x = clips_to_float(batch["video"].to(device, non_blocking=True))  # uint8 frames -> [-1, 1] here
            if vae is not None:
                with torch.no_grad():
                    x = vae.encode(x)
            y = batch["label"].to(device, non_blocking=True) if model_args["num_classes"] > 0 else None
            t, noise = batch["t"].to(device, non_blocking=True), batch["noise"].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                losses = diffusion.training_losses(forward, x, t, y, noise)
            loss = losses["loss"].mean()
            loss.backward()
            clip = cfg.clip_max_norm if step >= cfg.start_clip_iter else math.inf  # Latte clips from a step on
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            if cfg.lr_decay_end:
                for group in opt.param_groups:
                    group["lr"] = cfg.lr_at(step)
            opt.step()
            opt.zero_grad(set_to_none=True)
            update_ema(ema, model, schedule.decay_at(step))
            stats.add(step, loss, losses["mse"].mean(), losses["vb"].mean(), grad_norm)
            done = step + 1
            n_log += x.shape[0] * d.world
            bar.update(task, completed=done)

            if done % cfg.log_every == 0 or done == cfg.steps:  # the interval's host sync
                bad.sync(d)
                stats.raise_if_diverged(d, last_ckpt, on_diverge)
                means = stats.take(d)
                synchronize(device)
                dt = time.perf_counter() - t_log
                mem, mem_kind = peak_memory_gib(device)
                if d.main:
                    _append_jsonl(metrics_path, {
                        "step": done, **means, "clipped": clip != math.inf, "lr": opt.param_groups[0]["lr"],
                        "ema_decay": schedule.decay_at(step), "samples_per_s": n_log / dt,
                        "peak_mem_gib": round(mem, 3), "mem_kind": mem_kind,
                    })
                    bar.update(task, description=f"train loss {means['loss']:.4f}")
                t_log, n_log = time.perf_counter(), 0
            if done % cfg.ckpt_every == 0 or done == cfg.steps:  # never a checkpoint of diverged weights
                bad.sync(d)  # ... nor of a run past its budget of unreadable videos
                stats.raise_if_diverged(d, last_ckpt, on_diverge)
                last_ckpt = writer.save(done, checkpoint_state(done))

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
            checkpoint_seconds={"loop_waited": writer.stall_seconds, "written_in_background": writer.write_seconds},
            bad_videos=bad.record(),
        )
    barrier(d)
    return rec or {}


def _check_disk(cfg: TrainConfig, size: int, d: Dist, device: torch.device) -> None:
    """Refuse on every rank when rank 0's disk cannot hold the run's checkpoints (harness.preflight.check_disk)."""
    from harness import preflight

    def check() -> None:
        run_dir = Path(cfg.run_dir)
        need = preflight.disk_need(run_dir, size, cfg.keep_checkpoints, cfg.keep_steps, cfg.steps, cfg.ckpt_every)
        preflight.check_disk(checkpoint_dir(run_dir), {run_dir.name: need},
                             "free space, lower --keep-checkpoints or move --run-dir to a larger disk "
                             "(harness.preflight; --no-preflight skips this check)")

    on_rank0_for_all(check, d, device, f"rank 0's disk cannot hold the checkpoints of {cfg.run_dir}")


def start_step_of(ckpt: Path | None) -> int:
    """The step a checkpoint file is at, from its name (``step-NNNNNNN.pt``); 0 without one."""
    return step_of(ckpt) if ckpt is not None else 0


def _model_inputs(cfg: TrainConfig, ds, device: torch.device):
    """The VAE that encodes batches on the fly (None for a latent cache) and the model's constructor
    arguments, read off the first clip: channels, size, classes, frames (a latent cache fixes T itself)."""
    first = clips_to_float(torch.as_tensor(_first_readable(ds)["video"]))  # (T, C, H, W)
    vae = None
    if hasattr(ds, "meta"):  # latent cache: the latents go straight in
        in_channels, input_size = first.shape[1], first.shape[-1]
    else:
        from harness.vae import load_vae

        vae = load_vae(cfg.vae, device)
        in_channels, input_size = vae.channels, first.shape[-1] // vae.downsample
    return vae, {
        "in_channels": int(in_channels),
        "input_size": int(input_size),
        "num_classes": int(getattr(ds, "num_classes", 0)),
        "num_frames": int(first.shape[0]),
    }


def _first_readable(ds) -> dict[str, Any]:
    """The first item of ``ds`` that can be read (an unreadable one is met, named and counted in training)."""
    for i in range(len(ds)):
        try:
            return ds[i]
        except UnreadableVideo:
            continue
    raise UserError(f"none of the {len(ds)} videos can be read (`matten-bench prepare ... --check full` says why)")


def _restore(ckpt: Path, cfg: TrainConfig, d: Dist, model, ema, opt, stats: IntervalStats, bad: BadVideos) -> int:
    """Load a checkpoint into the run's components; returns its step."""
    state = load_checkpoint(ckpt)
    if state["config_hash"] != ledger.config_hash(cfg.hashed()):
        saved, now = state.get("config", {}), cfg.hashed()
        differ = "; ".join(f"{k}: {saved[k]!r} -> {v!r}" for k, v in now.items() if k in saved and saved[k] != v)
        differ = differ or "the options of another code version"
        raise UserError(f"{ckpt} was written with a different configuration ({differ}); resume with the same options")
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    opt.load_state_dict(state["optimizer"])
    for group in opt.param_groups:  # the optimizer state carries the old lr; --lr wins
        group["lr"] = cfg.lr
    if "interval_stats" in state:  # the logging interval a kill interrupted continues where it was
        stats.load_state_dict(state["interval_stats"])
    if "bad_videos" in state:  # unreadable videos met before the checkpoint still count
        bad.load_state_dict(state["bad_videos"])
    saved_world = state.get("data", {}).get("world_size", len(state["rng"]))
    if saved_world != d.world and d.main:  # allowed (a cluster job may get other GPUs), never silent
        console.print(
            f"[yellow]warning:[/yellow] {escape(str(ckpt))} was written by {saved_world} process(es), resuming on "
            f"{d.world}: the global batch changes from {saved_world * cfg.batch} to {d.world * cfg.batch} and this "
            "resume is not bit-for-bit the run it continues"
        )
    set_rng_state(state["rng"][d.rank] if d.rank < len(state["rng"]) else state["rng"][0])
    return int(state["step"])


def _vae_identity(ds, vae) -> dict[str, Any]:
    """The VAE whose latents the model learns (the cache's, or the one encoding on the fly)."""
    if hasattr(ds, "meta"):
        return ds.meta["vae"]
    return vae.identity() if hasattr(vae, "identity") else {"kind": "identity"}


def _append_jsonl(path: Path, obj: dict) -> None:
    """One line of strict JSON (a non-finite number is written as the string "nan", "inf" or "-inf")."""
    clean = {k: str(v) if isinstance(v, float) and not math.isfinite(v) else v for k, v in obj.items()}
    with open(path, "a") as f:
        f.write(json.dumps(clean, allow_nan=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop lines a killed run wrote after its last checkpoint (they will be written again), and a
    last line torn by a crash mid-write (said, not silent)."""
    if not path.exists():
        return
    keep = []
    for ln in path.read_text().splitlines():
        if not ln.strip():
            continue
        try:
            obj = json.loads(ln)
        except json.JSONDecodeError:
            console.print(f"[yellow]warning:[/yellow] {escape(str(path))}: dropped a line a crash left unfinished: "
                          f"{escape(repr(ln[:80]))}")
            continue
        if obj.get("step", 0) <= step:
            keep.append(ln)
    from harness.io import atomic_write_text

    atomic_write_text(path, "".join(ln + "\n" for ln in keep))


@contextlib.contextmanager
def _closing(obj):
    """On the way out, ``obj.close()`` where it has one: the checkpoint writer waits until the checkpoint being
    written is on disk (its error, if any, is raised); harness.loader's batches stop their threads. (DataLoader has
    no close: its workers stop with its iterator.)"""
    try:
        yield obj
    finally:
        if hasattr(obj, "close"):
            obj.close()


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        pass
