"""`matten-bench encode | train | sample`: thin wrappers over harness.vae, harness.train and harness.sample."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from harness.cli.app import app
from harness.console import console


@app.command()
def encode(
    data: Path = typer.Option(..., help="a prepared dataset folder (matten-bench prepare)"),
    out: Path = typer.Option(..., help="the latent cache folder to write"),
    vae: str = typer.Option("sd-v1-4", help="sd-v1-4:PATH (a local diffusers vae/ folder) | identity"),
    frames: int = typer.Option(16, help="frames per clip"),
    frame_interval: int = typer.Option(3, help="take every k-th frame"),
    size: int = typer.Option(256, help="frame size in pixels"),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    batch_size: int = typer.Option(4, help="clips per VAE batch"),
) -> None:
    """Cache VAE latents of one fixed clip per video, so training can skip the VAE (no augmentation)."""

    from harness.machine import resolve_device
    from harness.vae import encode_dataset

    device = str(resolve_device(device))

    meta = encode_dataset(
        data,
        out,
        vae,
        num_frames=frames,
        frame_interval=frame_interval,
        size=size,
        seed=seed,
        device=device,
        batch_size=batch_size,
    )
    console.print(f"latent cache: {out} ({meta['num_videos']} videos, VAE {meta['vae']['kind']})")


@app.command()
def train(
    data: Path = typer.Option(..., help="a prepared dataset folder or a latent cache (matten-bench encode)"),
    run_dir: Path = typer.Option(..., help="where checkpoints/, metrics.jsonl and records/ go"),
    family: str = typer.Option("matten", help="matten | latte"),
    size: str = typer.Option("tiny", help="tiny | s | b | l | xl"),
    variant: int = typer.Option(3, help="Matten variant 1-4"),
    patch: int = typer.Option(2),
    conditioning: str = typer.Option("madan", help="madan | tokens"),
    vae: str = typer.Option("identity", help="for a prepared dataset: identity | sd-v1-4:PATH"),
    frames: int = typer.Option(16),
    frame_interval: int = typer.Option(3),
    image_size: int = typer.Option(256),
    steps: int = typer.Option(1000),
    batch: int = typer.Option(5, help="per process (Latte: 5)"),
    lr: float = typer.Option(1e-4),
    ema_decay: float = typer.Option(0.9999, help="the EMA's decay (Latte: 0.9999)"),
    ema_warmup: bool = typer.Option(
        True,
        "--ema-warmup/--no-ema-warmup",
        help="decay min(d, (1+n)/(10+n)) at update n, so short runs sample something; --no-ema-warmup is "
        "Latte's recipe (d from step 0)",
    ),
    precision: str = typer.Option("bf16", help="bf16 (autocast) | fp32"),
    clip_max_norm: float = typer.Option(0.1, help="Latte's UCF101 value"),
    start_clip_iter: int = typer.Option(100_000, help="clip gradients from this step on (Latte)"),
    seed: int = typer.Option(0),
    ckpt_every: int = typer.Option(1000),
    log_every: int = typer.Option(10),
    num_workers: int = typer.Option(4),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N (under torchrun, cuda = LOCAL_RANK's GPU)"),
    compile: bool = typer.Option(
        None, "--compile/--no-compile", help="torch.compile the model (default: on for CUDA, off on the CPU)"
    ),
    resume: bool = typer.Option(False, "--resume", help="continue from the run's latest checkpoint"),
    model_builder: str = typer.Option("models:build_model", hidden=True, help="module:function (tests)"),
) -> None:
    """Train Matten or Latte with the IDDPM loss (one process, or one per GPU under torchrun)."""
    from harness.train import TrainConfig
    from harness.train import train as run_train

    cfg = TrainConfig(
        data=str(data),
        run_dir=str(run_dir),
        family=family,
        size=size,
        variant=variant,
        patch=patch,
        conditioning=conditioning,
        vae=vae,
        num_frames=frames,
        frame_interval=frame_interval,
        image_size=image_size,
        steps=steps,
        batch=batch,
        lr=lr,
        ema_decay=ema_decay,
        ema_warmup=ema_warmup,
        precision=precision,
        clip_max_norm=clip_max_norm,
        start_clip_iter=start_clip_iter,
        seed=seed,
        ckpt_every=ckpt_every,
        log_every=log_every,
        compile=compile,
        num_workers=num_workers,
        device=device,
        model_builder=model_builder,
    )
    from harness.distributed import leave

    try:
        rec = run_train(cfg, resume=resume)
    finally:  # under torchrun: leave the process group cleanly (no shutdown warning, no hung peers)
        leave()
    if rec:
        console.print(f"trained to step {steps}: {run_dir / rec['outputs']['checkpoint']}")


@app.command()
def sample(
    checkpoint: Path = typer.Option(..., help="a checkpoint file or a run directory (its latest checkpoint)"),
    out: Path = typer.Option(..., help="samples folder: clips/, videos/, contact_sheet.png"),
    num: int = typer.Option(2048, help="number of videos (FVD uses 2048)"),
    batch_size: int = typer.Option(16),
    sampler: str = typer.Option("ddpm", help="ddpm | ddim"),
    steps: int = typer.Option(None, help="sampling steps (default: DDPM 250, DDIM 50)"),
    spacing: str = typer.Option(
        "iddpm",
        help="which timesteps: iddpm = space_timesteps(1000, str(steps)), as Latte's sample.py for DDPM and DDIM; "
        "ddim-stride = range(0, 1000, 1000/steps), the DDIM paper's",
    ),
    eta: float = typer.Option(0.0, help="DDIM's eta (0 = deterministic)"),
    cfg_scale: float = typer.Option(
        None, help="classifier-free guidance (default 7.0 for class-conditional, as Latte)"
    ),
    ema: bool = typer.Option(True, "--ema/--no-ema", help="EMA weights (default) or the raw model"),
    seed: int = typer.Option(0),
    vae: str = typer.Option(None, help="override the checkpoint's VAE (identity | sd-v1-4:PATH)"),
    device: str = typer.Option("auto"),
    mp4: bool = typer.Option(True, "--mp4/--no-mp4"),
    precision: str = typer.Option("fp32", help="fp32 | bf16"),
) -> None:
    """Sample videos from a checkpoint (resumable: finished shards are skipped)."""
    from harness.sample import sample as run_sample

    rec = run_sample(
        checkpoint,
        out,
        num=num,
        batch_size=batch_size,
        sampler=sampler,
        steps=steps,
        spacing=spacing,
        eta=eta,
        cfg_scale=cfg_scale,
        use_ema=ema,
        seed=seed,
        vae=vae,
        device=device,
        mp4=mp4,
        precision=precision,
    )
    weights = rec["config"]["weights"]
    if weights == "ema":
        weights += f" ({rec['config']['ema_schedule']['formula']}, decay {rec['config']['ema_schedule']['decay']})"
    console.print(f"weights: {weights}; {rec['config']['sampler']}-{rec['config']['steps']}, spacing {spacing}")
    console.print(json.dumps({k: rec.get(k) for k in ("status", "shards_written", "shards_skipped", "seconds")}))
