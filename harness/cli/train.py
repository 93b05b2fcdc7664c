"""`matten-bench encode | train | sample`: thin wrappers over harness.vae, harness.train and harness.sample."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from harness.cli.app import app
from harness.config import SampleConfig, TrainConfig, config_command
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
    console.print(f"latent cache: {escape(str(out))} ({meta['num_videos']} videos, VAE {meta['vae']['kind']})")


@app.command()
@config_command(TrainConfig, exclude=("model_overrides", "keep_steps"))
def train(cfg: TrainConfig, resume: bool = typer.Option(False, "--resume", help="continue from the run's latest "
                                                        "checkpoint")) -> None:
    """Train Matten or Latte with the IDDPM loss (one process, or one per GPU under torchrun)."""
    from harness.distributed import leave
    from harness.train import train as run_train

    try:
        rec = run_train(cfg, resume=resume)
    finally:  # under torchrun: leave the process group cleanly (no shutdown warning, no hung peers)
        leave()
    if rec:
        console.print(f"trained to step {cfg.steps}: {escape(str(Path(cfg.run_dir) / rec['outputs']['checkpoint']))}")


@app.command()
@config_command(SampleConfig)
def sample(cfg: SampleConfig) -> None:
    """Sample videos from a checkpoint (resumable: finished shards are skipped)."""
    from harness.sample import sample as run_sample

    rec = run_sample(cfg)
    weights = rec["config"]["weights"]
    if weights == "ema":
        weights += f" ({rec['config']['ema_schedule']['formula']}, decay {rec['config']['ema_schedule']['decay']})"
    console.print(f"weights: {weights}; {rec['config']['sampler']}-{rec['config']['steps']}, spacing {cfg.spacing}")
    if rec["status"] != "reused":  # a reused folder's counts and time are its earlier run's (its record has them)
        console.print(json.dumps({k: rec.get(k) for k in ("status", "shards_written", "shards_skipped", "seconds")}))


checkpoint_app = typer.Typer(help="Training checkpoints.", no_args_is_help=True)
app.add_typer(checkpoint_app, name="checkpoint")


@checkpoint_app.command("convert")
def checkpoint_convert(
    path: Path = typer.Argument(..., help="a checkpoint written by an older matten-bench"),
    out: Path = typer.Option(None, help="write the converted checkpoint here (default: in place)"),
    trust: bool = typer.Option(False, "--trust", help="required: the file is unpickled fully, so only convert "
                               "checkpoints you made yourself"),
) -> None:
    """Rewrite an old checkpoint (RNG states pickled as numpy/Python objects) so it loads with weights_only."""
    from harness.checkpoint import convert_legacy_checkpoint
    from harness.errors import UserError

    if not trust:
        raise UserError("converting unpickles the whole file, which can run code: pass --trust for a checkpoint "
                        "you made yourself")
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}")
    target = convert_legacy_checkpoint(path, out)
    console.print(f"converted: {escape(str(target))} (loads with weights_only=True)")
