"""Typed configurations: one dataclass per stage, its fields the one definition of each option.

A stage's options (``TrainConfig``, ``SampleConfig``, ``FVDConfig``) are a dataclass whose fields carry
their help text (and, where the flag differs from the field's name, the flag) in ``metadata``; it
validates itself when built (``__post_init__``, one-line ``UserError``). The same object flows one way:

    CLI flags or a scale's preset  ->  config  ->  stage  ->  the ledger's record (``dataclasses.asdict``)

:func:`config_command` makes the CLI from the dataclass (the torchtitan way), so a flag, its default and
its help cannot drift from the field; a preset (``harness.run.PRESETS``) holds configs and derives an
experiment's with ``dataclasses.replace``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import typer

from harness.errors import UserError

if typing.TYPE_CHECKING:
    import torch


def option(default: Any = dataclasses.MISSING, help: str = "", *, flag: str | None = None, hidden: bool = False,
           required: bool = False, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its CLI help; ``flag`` when the option is not ``--field-name``; ``required``: the
    CLI asks for it although the dataclass has a default (a preset's template leaves it empty, the stage
    checks it is set)."""
    meta = {"help": help, "flag": flag, "hidden": hidden, "required": required}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _flag(f: dataclasses.Field, annotation: Any) -> tuple[str, ...]:
    name = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
    if annotation is bool or bool in typing.get_args(annotation):  # bool or bool | None: --x/--no-x
        return (f"{name}/--no-{name[2:]}",)
    return (name,)


def config_command(cls: type, *, exclude: tuple[str, ...] = ()) -> Callable:
    """Decorate ``fn(cfg, **extra)`` into a typer command whose options are ``cls``'s fields (minus
    ``exclude``) followed by ``fn``'s own keyword options; the command builds ``cls(**fields)`` (which
    validates itself) and calls ``fn`` with it. Fields without a default become required options."""
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.name not in exclude and f.init]

    def decorate(fn: Callable) -> Callable:
        fn_hints = typing.get_type_hints(fn)
        params = []
        for f in fields:
            if f.metadata.get("required") or (f.default is dataclasses.MISSING
                                              and f.default_factory is dataclasses.MISSING):
                default = ...  # typer's "required"
            elif f.default is not dataclasses.MISSING:
                default = f.default
            else:
                default = f.default_factory()
            opt = typer.Option(default, *_flag(f, hints[f.name]), help=f.metadata.get("help", ""),
                               hidden=f.metadata.get("hidden", False), show_default=default is not ...)
            params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=opt,
                                            annotation=hints[f.name]))
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=fn_hints.get(p.name, p.annotation))
               for p in list(inspect.signature(fn).parameters.values())[1:]]
        names = {f.name for f in fields}

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            cfg = cls(**{k: v for k, v in kwargs.items() if k in names})
            return fn(cfg, **{k: v for k, v in kwargs.items() if k not in names})

        command.__signature__ = inspect.Signature(params + own)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params + own}
        del command.__wrapped__  # typer must see the generated signature, not fn's
        return command

    return decorate


# ----------------------------------------------------------------------------- the stages' configurations

MAX_SEED = (2**32 - 1) // 1000 - 1000  # the trainer seeds numpy with seed·1000 + rank (< 1000 ranks), a 32-bit number


LOADERS = ("auto", "processes", "threads")  # harness.train.make_loader


# torch.compile's modes (torch.compile's documentation). The two with CUDA graphs replay each compiled block's
# kernels with one launch: for a small model whose eager step is bound by the host enqueueing its kernels (Latte-S/8
# at the mini shape on an H200: 1,649 kernels, 38-42 ms of host time for 24 ms of GPU time; the pure step 23.8 ms
# with reduce-overhead against 32.1 with default, results/benchmarks-history.md, eighth session).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def check_compile_mode(mode: str, compile: bool | None, flag: str = "--compile-mode") -> None:
    """UserError (one line) unless ``mode`` is one of :data:`COMPILE_MODES`, or for a mode other than the default
    with compilation turned off (``compile`` False; None is "by device", judged by TrainConfig.compile_plan)."""
    if mode not in COMPILE_MODES:
        raise UserError(f"{flag} must be one of {', '.join(COMPILE_MODES)}, not {mode!r}")
    if compile is False and mode != "default":
        raise UserError(f"{flag} {mode} with --no-compile: nothing is compiled; drop one")


def check_compile_mode_on(mode: str, device_type: str, flag: str = "--compile-mode") -> None:
    """UserError (one line) for a CUDA-graph mode off CUDA: torch.compile would quietly compile without graphs."""
    if mode in CUDA_GRAPH_MODES and device_type != "cuda":
        raise UserError(f"{flag} {mode} uses CUDA graphs, which need a CUDA device (here: {device_type}); use "
                        "default or max-autotune-no-cudagraphs")


def check_loader(loader: str, flag: str = "--loader") -> None:
    """UserError (one line) unless ``loader`` is one of :data:`LOADERS`; ``flag`` names the option."""
    if loader not in LOADERS:
        raise UserError(f"{flag} must be one of {', '.join(LOADERS)}, not {loader!r}")


@dataclass
class TrainConfig:
    """Every training option, once: the ``train`` command's flags are made from these fields
    (harness.config), a scale's preset holds one as its template, and the run's record stores it."""

    data: str = option("", "a prepared dataset folder or a latent cache (matten-bench encode)", required=True)
    run_dir: str = option("", "where checkpoints/, metrics.jsonl and records/ go", required=True)
    family: str = option("matten", "matten | latte")
    size: str = option("tiny", "tiny | s | b | l | xl")
    variant: int = option(3, "Matten variant 1-4")
    patch: int = option(2, "patch size (tokens per frame = (size / patch)^2)")
    conditioning: str = option("madan", "madan | tokens")
    class_dropout: float = option(0.1, "label dropout for classifier-free guidance")
    model_overrides: dict = option(default_factory=dict, help="depth / hidden / heads for custom sizes (not a flag)")
    vae: str = option("identity", "for a prepared dataset: identity | sd-v1-4:PATH (a latent cache knows its own)")
    num_frames: int = option(16, "frames per clip", flag="--frames")
    frame_interval: int = option(3, "take every k-th frame")
    image_size: int = option(256, "frame size in pixels")
    steps: int = option(1000, "train up to this many optimizer steps (0: write the untrained model's checkpoint)")
    batch: int = option(5, "clips per step per process (Latte: 5)")
    lr: float = option(1e-4, "AdamW's learning rate (Latte: 1e-4)")
    weight_decay: float = option(0.0, "AdamW's weight decay (Latte: 0)")
    lr_decay_start: int = option(0, "from the update at this step on, the learning rate falls linearly to 0 at "
                                 "--lr-decay-end (the cooldown of a warmup-stable-decay schedule)")
    lr_decay_end: int = option(0, "the step where the falling learning rate reaches 0; --steps may not pass it "
                               "(0: no decay, a constant rate, as Latte and DiT train)")
    ema_decay: float = option(0.9999, "the EMA's decay (Latte and DiT: 0.9999)")
    ema_warmup: bool = option(True, "decay min(d, (1+n)/(10+n)) at update n, so short runs sample a model; "
                              "--no-ema-warmup is Latte's recipe (d from step 0; the paper scale's)")
    precision: str = option("bf16", "bf16 (autocast) | fp32")
    clip_max_norm: float = option(0.1, "gradient clipping norm (Latte's UCF101 value) ...")
    start_clip_iter: int = option(100_000, "... applied from this step on (Latte; before: measured, not clipped)")
    seed: int = option(0, "data order, each sample's noise and timestep, initial weights")
    ckpt_every: int = option(1000, "checkpoint every this many steps (written in the background)")
    keep_checkpoints: int = option(2, "checkpoints kept on disk (the newest)")
    keep_steps: tuple[int, ...] = option(default_factory=tuple, help="checkpoints also kept, never pruned: a run's "
                                         "evaluation steps (not a flag)")
    log_every: int = option(10, "metrics.jsonl gets the mean of each interval of this many steps (as Latte logs)")
    num_workers: int = option(4, "workers that make the batches, processes or threads as --loader says; 0 = in "
                              "the training loop's own thread")
    loader: str = option("auto", "auto | processes | threads: how batches are made. auto = DataLoader's worker "
                         "processes for videos (decoding) and for any data on CUDA (loader threads would share the "
                         "interpreter lock with the kernel launches), threads for a latent cache elsewhere (no batch "
                         "crosses a process boundary). The batches are the same either way (harness.loader)")
    max_bad_videos: float = option(0.01, "videos that may turn out unreadable while training, as a fraction of the "
                                   "dataset's (rounded up; 0 = none): each is named, its samples get a substitute "
                                   "clip drawn from (seed, position), records/train.json lists it; one more stops "
                                   "the run")
    device: str = option("auto", "auto | cpu | cuda | cuda:N (under torchrun, cuda = LOCAL_RANK's GPU)")
    ddp_bucket_mb: int = option(25, "under torchrun: DistributedDataParallel's gradient bucket size in MiB "
                                "(PyTorch's default 25; larger buckets mean fewer, larger all-reduces)")
    ddp_static_graph: bool = option(False, "under torchrun: DistributedDataParallel(static_graph=True), for a "
                                    "model whose parameters all get gradients every step, as ours do")
    compile: bool | None = option(None, "torch.compile the model (default: on for CUDA, off on the CPU)")
    compile_mode: str = option("default", "torch.compile's mode for the blocks: default | reduce-overhead | "
                               "max-autotune | max-autotune-no-cudagraphs. reduce-overhead replays each block's "
                               "kernels as a CUDA graph: for small models whose step is bound by kernel launches")
    preflight: bool = option(True, "estimate a step's memory first and refuse a run that will not fit "
                             "(harness.preflight)")
    model_builder: str = option("models:build_model", "module:function honouring models.build_model's contract",
                                hidden=True)

    def __post_init__(self) -> None:  # data and run_dir may be empty here (a preset's template); train() checks them
        if self.precision not in ("bf16", "fp32"):
            raise UserError(f"--precision must be bf16 or fp32, not {self.precision!r}")
        check_loader(self.loader)
        check_compile_mode(self.compile_mode, self.compile)
        if self.loader != "auto" and self.num_workers == 0:
            raise UserError(f"--loader {self.loader} with --num-workers 0: no {self.loader} to make the batches "
                            "(--num-workers 0 makes them in the loop's own thread); give --num-workers 1 or more")
        flag = {"num_frames": "frames"}
        for name in ("batch", "log_every", "ckpt_every", "keep_checkpoints", "num_frames", "frame_interval",
                     "image_size", "patch", "ddp_bucket_mb"):
            if getattr(self, name) < 1:
                raise UserError(f"--{flag.get(name, name).replace('_', '-')} {getattr(self, name)}: must be at least 1")
        for name in ("steps", "num_workers", "start_clip_iter"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 0")
        self.keep_steps = tuple(int(s) for s in self.keep_steps)  # a record's JSON list, too
        if any(s < 0 for s in self.keep_steps):
            raise UserError(f"keep_steps {self.keep_steps}: steps must be at least 0")
        # the comparisons below are False for NaN, so NaN is refused too
        if not 0.0 <= self.ema_decay < 1.0:
            raise UserError(f"--ema-decay {self.ema_decay}: expected 0 <= decay < 1")
        if not 0.0 < self.lr <= 1.0:
            raise UserError(f"--lr {self.lr}: expected 0 < lr <= 1 (Latte: 1e-4)")
        if self.lr_decay_end and not 0 <= self.lr_decay_start < self.lr_decay_end:
            raise UserError(f"--lr-decay-start {self.lr_decay_start} --lr-decay-end {self.lr_decay_end}: expected "
                            "0 <= start < end")
        if not self.lr_decay_end and self.lr_decay_start:
            raise UserError(f"--lr-decay-start {self.lr_decay_start} without --lr-decay-end: give the step where "
                            "the rate reaches 0")
        if self.lr_decay_end and self.steps > self.lr_decay_end:
            raise UserError(f"--steps {self.steps} runs past --lr-decay-end {self.lr_decay_end}, where the learning "
                            f"rate is 0: pass --steps {self.lr_decay_end} or a later --lr-decay-end")
        if not 0.0 <= self.weight_decay < 1.0:
            raise UserError(f"--weight-decay {self.weight_decay}: expected 0 <= weight decay < 1")
        if not self.clip_max_norm > 0.0:
            raise UserError(f"--clip-max-norm {self.clip_max_norm}: expected a positive norm")
        if not 0.0 <= self.class_dropout < 1.0:
            raise UserError(f"--class-dropout {self.class_dropout}: expected 0 <= p < 1")
        if not 0.0 <= self.max_bad_videos < 1.0:
            raise UserError(f"--max-bad-videos {self.max_bad_videos}: expected a fraction, 0 <= f < 1")
        if not 0 <= self.seed <= MAX_SEED:  # seeds numpy with seed·1000 + rank, which must fit 32 bits
            raise UserError(f"--seed {self.seed}: expected 0..{MAX_SEED:,}")

    def compile_plan(self, device: torch.device) -> tuple[bool, bool]:
        """(compiled, with CUDA graphs) on ``device``: ``compile`` unset means on for CUDA, off elsewhere. A
        ``compile_mode`` that would do nothing there is a one-line UserError."""
        compiled = self.compile if self.compile is not None else device.type == "cuda"
        if not compiled and self.compile_mode != "default":
            raise UserError(f"--compile-mode {self.compile_mode}: the model is not compiled on {device.type} unless "
                            "--compile is given")
        if compiled:
            check_compile_mode_on(self.compile_mode, device.type)
        return compiled, compiled and self.compile_mode in CUDA_GRAPH_MODES

    def lr_at(self, step: int) -> float:
        """The learning rate of the update made at ``step`` (0-based): ``lr`` before ``lr_decay_start``, then
        falling linearly, ``lr * (end - step) / (end - start)``, to 0 at ``lr_decay_end`` (the linear cooldown of
        warmup-stable-decay schedules, e.g. Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond
        Fixed Training Durations"). A function of the step alone, so a resumed run continues it exactly."""
        if not self.lr_decay_end or step < self.lr_decay_start:
            return self.lr
        return self.lr * max(0.0, (self.lr_decay_end - step) / (self.lr_decay_end - self.lr_decay_start))

    def describe_lr(self) -> str:
        """The schedule in words, for the records."""
        if not self.lr_decay_end:
            return f"constant {self.lr:g}"
        return f"{self.lr:g}, falling linearly from step {self.lr_decay_start} to 0 at step {self.lr_decay_end}"

    def ema_schedule(self):
        """The EMA's decay schedule (harness.ema.EMASchedule)."""
        from harness.ema import EMASchedule

        return EMASchedule(self.ema_decay, self.ema_warmup)

    def hashed(self) -> dict[str, Any]:
        """What identifies the run. Lengths, intervals, workers, compile and its mode, the preflight, DDP's
        bucketing, the two knobs a diverged run is resumed with (lr, precision) and the budget of unreadable videos
        (a run stopped by it is resumed with a larger one) may change across a resume; each checkpoint keeps the
        full configuration it was written with, and the training record the last start's."""
        skip = {"steps", "ckpt_every", "keep_checkpoints", "keep_steps", "log_every", "num_workers", "loader", "device",
                "run_dir", "compile", "compile_mode", "preflight", "ddp_bucket_mb", "ddp_static_graph"}
        skip |= {"lr", "precision", "max_bad_videos"}
        if not self.lr_decay_end:  # a constant rate hashes as before these options existed: older runs resume
            skip |= {"lr_decay_start", "lr_decay_end"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}


SAMPLERS = ("ddpm", "ddim")
SPACINGS = ("iddpm", "ddim-stride")  # harness.diffusion.sampling_respacing


@dataclass
class SampleConfig:
    """Every sampling option, once (the ``sample`` command's flags; a preset's template; the sample record)."""

    checkpoint: str = option("", "a checkpoint file or a run directory (its latest checkpoint)", required=True)
    out: str = option("", "samples folder: clips/, videos/, contact_sheet.png", required=True)
    num: int = option(2048, "number of videos (FVD uses 2048)")
    batch_size: int = option(16, "videos per shard (one batch of the sampler)")
    sampler: str = option("ddpm", "ddpm | ddim")
    steps: int | None = option(None, "sampling steps (default: DDPM 250, DDIM 50)")
    spacing: str = option("iddpm", "which timesteps: iddpm = space_timesteps(1000, str(steps)), as Latte's sample.py "
                          "for DDPM and DDIM; ddim-stride = range(0, 1000, 1000/steps), the DDIM paper's")
    eta: float = option(0.0, "DDIM's eta (0 = deterministic)")
    clip_denoised: bool = option(False, "clamp each step's predicted x_0 to [-1, 1] (IDDPM's clip_denoised; only "
                                 "for pixel-space models, --vae identity; Latte samples latents without it)")
    cfg_scale: float | None = option(None, "classifier-free guidance (default 7.0 for class-conditional, as Latte)")
    use_ema: bool = option(True, "the EMA weights (default) or the raw model", flag="--ema")
    seed: int = option(0, "noise and labels of shard s come from (seed, s)")
    vae: str | None = option(None, "override the checkpoint's VAE (identity | sd-v1-4:PATH)")
    device: str = option("auto", "auto | cpu | cuda | cuda:N")
    mp4: bool = option(True, "also write each video as an mp4")
    fps: int = option(8, "frames per second of the mp4s")
    contact_sheet: int = option(8, "clips in contact_sheet.png (0 = none)")
    precision: str = option("fp32", "fp32 | bf16")

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise UserError(f"--sampler must be ddpm or ddim, not {self.sampler!r}")
        if self.spacing not in SPACINGS:
            raise UserError(f"--spacing must be one of {', '.join(SPACINGS)}, not {self.spacing!r}")
        if self.steps is not None and not 1 <= self.steps <= 1000:
            raise UserError(f"--steps must be between 1 and 1000 (the training schedule's length), not {self.steps}")
        if self.precision not in ("fp32", "bf16"):
            raise UserError(f"--precision must be fp32 or bf16, not {self.precision!r}")
        for name in ("num", "batch_size", "fps"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1")
        if self.fps > 1000:  # PyAV's rate is an int32 fraction; no video format plays 1,000 frames a second
            raise UserError(f"--fps {self.fps}: at most 1000")
        if self.contact_sheet < 0:
            raise UserError(f"--contact-sheet {self.contact_sheet}: must be at least 0 (0: no sheet)")
        if self.sampler != "ddim" and self.eta != 0.0:
            raise UserError(f"--eta {self.eta} is DDIM's; --sampler {self.sampler} has none (leave --eta out)")

    @property
    def sampling_steps(self) -> int:
        """``steps``, or the sampler's default: Latte's DDPM-250, DDIM-50 (the usual fast setting)."""
        return self.steps if self.steps is not None else (250 if self.sampler == "ddpm" else 50)


FVD_PROTOCOLS = ("stylegan-v", "videogpt")
FVD_PRECISIONS = ("fp32", "tf32", "tf32x3", "bf16", "fp16")  # harness.fvd.protocol.PRECISIONS
# I3D's temporal strides (conv 1a, pools 4a and 5a: 2 each) leave ceil(T / 8) steps, and its head averages windows
# of 2 steps (a VALID pool): T >= 9. tests/test_fvd_i3d.py runs the network on 9 frames and is refused 8.
I3D_MIN_FRAMES = 9
MIN_FVD_SIZE = 16  # smaller real clips carry too little to resize to 224 meaningfully


@dataclass
class FVDConfig:
    """Every FVD option, once (the ``fvd`` command's flags; a preset's template; the FVD record)."""

    real: str = option("", "a folder of videos (mp4 avi webm mkv mov gif, or frame folders), a prepared dataset, "
                       "or a real-statistics .npz", required=True)
    fake: str = option("", "a folder of videos, a prepared dataset, a samples folder (clips/clips-*.npy) or a "
                       "uint8 (N, T, H, W, 3) .npy", required=True)
    num: int = option(2048, "clips on each side (the protocol uses 2048)")
    protocol: str = option("stylegan-v", "stylegan-v (Latte's numbers) | videogpt")
    i3d: str | None = option(None, "detector: .safetensors, i3d-kinetics-400.ckpt or i3d_torchscript.pt")
    device: str | None = option(None, "cpu | cuda | cuda:N (default: cuda if available)")
    precision: str = option("fp32", "fp32 (reference), bf16; on CUDA also tf32x3 (~fp32), tf32, fp16")
    num_frames: int = option(16, "frames per clip")
    frame_interval: int = option(3, "real clips' frame interval (Latte's realdata_subsample_factor)")
    fake_frame_interval: int = option(1, "frame interval of a generated side given as videos or a prepared "
                                      "dataset (a generator's frames are consecutive)")
    seed: int = option(0, "picks the real clips (and seeds the bootstrap)")
    size: int = option(256, "resolution the real clips are read at before the detector's resize")
    batch_size: int = option(16, "clips per detector batch")
    compile: bool = option(False, "torch.compile the detector (faster on CPU after a ~1 min compile)")
    out: str | None = option(None, "write the JSON record here")
    bootstrap: int = option(1000, "resamples of the clips for the 95% interval (0 = none; ~3 s per 1000 at N=256)")

    def __post_init__(self) -> None:
        if self.protocol not in FVD_PROTOCOLS:
            raise UserError(f"unknown FVD protocol {self.protocol!r}; choose one of {', '.join(FVD_PROTOCOLS)}")
        if self.num < 2:
            raise UserError(f"--num {self.num}: FVD needs at least 2 clips on each side (2048 is the protocol)")
        if self.precision not in FVD_PRECISIONS:
            raise UserError(f"unknown precision {self.precision!r}; choose one of {', '.join(FVD_PRECISIONS)}")
        for name in ("num_frames", "frame_interval", "fake_frame_interval", "size", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1")
        if self.num_frames < I3D_MIN_FRAMES:
            raise UserError(f"--num-frames {self.num_frames}: I3D needs at least {I3D_MIN_FRAMES} frames (its strides "
                            "shrink time 8-fold and its head pools 2 steps); FVD's protocol uses 16")
        if self.size < MIN_FVD_SIZE:
            raise UserError(f"--size {self.size}: real clips smaller than {MIN_FVD_SIZE}x{MIN_FVD_SIZE} are too small "
                            "to resize to 224 meaningfully")
        if self.bootstrap < 0:
            raise UserError(f"--bootstrap {self.bootstrap}: must be at least 0")
