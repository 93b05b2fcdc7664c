"""Sampling: videos from a training checkpoint, as FVD clip shards, mp4 files and a contact sheet.

Shard s holds samples [s·B, (s+1)·B); its noise and labels come from a generator seeded by
(seed, s), so a finished shard is skipped on a rerun and a resumed job writes exactly what an
uninterrupted one would. Class-conditional models get balanced labels (sample i → class
i mod num_classes) and classifier-free guidance (Latte's UCF101 scale 7.0 by default).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness import ledger
from harness.clip_shards import shard_path, write_shard
from harness.config import SampleConfig
from harness.diffusion import create_diffusion, sample_video, sampling_respacing
from harness.errors import UserError
from harness.video import write_video


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """(B, T, 3, H, W) in [-1, 1] → uint8 (B, T, H, W, 3)."""
    x = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 1, 3, 4, 2).cpu().numpy()


def write_contact_sheet(
    path: str | Path, clips: np.ndarray, max_frames: int = 8, title: str = "", row_labels: list[str] | None = None
) -> None:
    """A PNG grid of uint8 clips (N, T, H, W, 3): one row per clip, up to ``max_frames`` evenly spaced frames
    per row (left to right), scaled up (nearest) to at least 512 pixels wide; ``title`` on a strip above the
    grid (what the clips are: model, step, sampler, weights) and ``row_labels`` (e.g. each clip's class) on
    each row's left, so a sheet says what it shows without its file name."""
    from PIL import Image, ImageDraw

    n, t, h, w, _ = clips.shape
    cols = np.linspace(0, t - 1, min(t, max_frames)).round().astype(int)
    sheet = np.zeros((n * h, len(cols) * w, 3), dtype=np.uint8)
    for r in range(n):
        for c, f in enumerate(cols):
            sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = clips[r, f]
    img = Image.fromarray(sheet)
    if img.width < 512:  # small clips: scale up (nearest) so a person can see them
        k = max(1, 512 // img.width)
        img = img.resize((img.width * k, img.height * k), Image.NEAREST)
    margin = 64 if row_labels else 0
    strip = 16 if title else 0
    if margin or strip:
        framed = Image.new("RGB", (img.width + margin, img.height + strip), (255, 255, 255))
        framed.paste(img, (margin, strip))
        draw = ImageDraw.Draw(framed)
        if title:
            draw.text((4, 2), title, fill=(0, 0, 0))
        row_h = img.height / n
        for r, label in enumerate(row_labels or []):
            draw.text((4, strip + r * row_h + row_h / 2 - 5), label[:10], fill=(0, 0, 0))
        img = framed
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    img.save(tmp)
    os.replace(tmp, path)


def load_sampling_model(checkpoint: str | Path, use_ema: bool = True, device: str | torch.device = "cpu"):
    """The model of a training checkpoint (EMA weights by default) and the checkpoint's metadata."""
    from harness.checkpoint import latest_checkpoint, load_checkpoint
    from harness.train import TrainConfig, build_model_from_config

    path = Path(checkpoint)
    if path.is_dir():  # a run directory: its latest checkpoint
        found = latest_checkpoint(path)
        if found is None:
            raise UserError(f"no checkpoints in {path}/checkpoints")
        path = found
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    state = load_checkpoint(path)
    cfg = TrainConfig(**state["config"])
    model = build_model_from_config(cfg, **state["model_args"])
    model.load_state_dict(state["ema" if use_ema else "model"])
    return model.to(device).eval(), state, path


def ema_schedule_of(state: dict[str, Any]) -> dict[str, Any]:
    """The EMA schedule a checkpoint's EMA weights were made with (checkpoints before the warm-up existed were
    made with Latte's constant decay), with ``last_decay``, the decay of its last update (None at step 0)."""
    from harness.ema import EMASchedule

    if "ema_schedule" in state:
        out = dict(state["ema_schedule"])
    else:
        decay = state.get("config", {}).get("ema_decay", 0.9999)
        out = {"decay": decay, "warmup": False, "formula": "decay (constant, Latte's recipe)", "n": "not recorded"}
    step = int(state.get("step", 0))
    out["last_decay"] = EMASchedule(out["decay"], bool(out["warmup"])).decay_at(step - 1) if step > 0 else None
    return out


def trained_clips(state: dict[str, Any]) -> dict[str, Any]:
    """The clips a checkpoint's model was trained on, what ``fvd`` compares with the real clips' frame rate:
    ``{"num_frames", "frame_interval", "image_size", "data" (the prepared dataset), "latent_cache" (or None)}``.
    From a latent cache's own description when the model was trained on one (its clips, its source dataset),
    else from the training configuration; a value nothing records is None."""
    config = state.get("config", {})
    data = config.get("data")
    out = {"num_frames": state.get("model_args", {}).get("num_frames", config.get("num_frames")),
           "frame_interval": config.get("frame_interval"), "image_size": config.get("image_size"), "data": data,
           "latent_cache": None}
    meta_path = Path(str(data or "")) / "latent_cache.json"
    if meta_path.is_file():  # the cache's clips are what the model saw, whatever the config's clip options say
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = {}
        clip = meta.get("clip", {}) if isinstance(meta, dict) else {}
        out.update(frame_interval=clip.get("frame_interval"), image_size=clip.get("size"),
                   data=meta.get("source") if isinstance(meta, dict) else None, latent_cache=data)
    return out


def vae_spec_of(identity: dict[str, Any]) -> str:
    if identity.get("kind") == "identity":
        return "identity"
    return f"{identity['kind']}:{identity['path']}"


@torch.no_grad()
def sample(cfg: SampleConfig, *, replace_stale: bool = False) -> dict[str, Any]:
    """Write ``cfg.num`` videos to ``cfg.out`` (clips/ shards, videos/*.mp4, contact_sheet.png) and a ledger record.

    The timesteps are Latte's for both samplers (``spacing="iddpm"``, :func:`harness.diffusion.sampling_respacing`);
    the record says which weights were used (EMA or raw) and the EMA's schedule. A folder whose record has this
    configuration resumes (its shards are kept); one whose samples were made with other options is refused
    (UserError naming the options that differ), or, with ``replace_stale`` (``run``, which owns its samples
    folders), emptied of them first.
    """
    for name in ("checkpoint", "out"):
        if not getattr(cfg, name):
            raise UserError(f"--{name} is required")
    steps = cfg.sampling_steps
    try:
        create_diffusion(sampling_respacing(steps, cfg.spacing))
    except ValueError as e:  # ddim-stride: no integer stride gives that many steps
        raise UserError(f"--steps {steps} --spacing {cfg.spacing}: {e}") from e
    from harness.lock import folder_lock
    from harness.machine import resolve_device

    dev = resolve_device(cfg.device)
    with folder_lock(cfg.out, "sample"):  # one job per samples folder; an unwritable one fails here
        return _sample(cfg, dev, steps, replace_stale)


# options added to the sample record since records were first written, with what older code did: a record without
# one made its samples that way
_ADDED_SINCE = {"clip_denoised": False}


def _stale_outputs(out_dir: Path, config: dict[str, Any], replace: bool) -> None:
    """Refuse (or with ``replace`` delete) the shards, mp4s and sheet of samples made with another configuration:
    they would otherwise be kept as shards of this one and measured under its name."""
    previous = ledger.read_record(out_dir, "sample")
    made = sorted((out_dir / "clips").glob("clips-*.npy")) + sorted((out_dir / "videos").glob("sample-*.mp4"))
    if previous is None or not made:
        return
    old = {**_ADDED_SINCE, **previous.get("config", {})}
    # a whole shard s depends on every option but the count (its noise and labels come from (seed, s)): more or
    # fewer clips of the same options keep the whole shards already made (_sample remakes one of another length)
    differ = [f"{k}: {old.get(k)!r} -> {config.get(k)!r}" for k in sorted(set(old) | set(config))
              if k != "num" and old.get(k) != config.get(k)]
    if not differ:
        return
    what = "; ".join(differ)
    if not replace:
        raise UserError(f"{out_dir} holds samples made with other options ({what}): sample into a new --out, or "
                        "delete its clips/ and videos/ first")
    from harness.console import console

    console.print(f"[dim]resample[/dim] {out_dir}: options changed ({what}); removing {len(made)} old file(s)")
    for path in made + [out_dir / "contact_sheet.png"]:
        path.unlink(missing_ok=True)


def _sample(cfg: SampleConfig, dev: torch.device, steps: int, replace_stale: bool = False) -> dict[str, Any]:
    num, batch_size, sampler, spacing, eta = cfg.num, cfg.batch_size, cfg.sampler, cfg.spacing, cfg.eta
    cfg_scale, use_ema, seed, precision = cfg.cfg_scale, cfg.use_ema, cfg.seed, cfg.precision
    model, state, ckpt_path = load_sampling_model(cfg.checkpoint, use_ema, dev)
    margs = state["model_args"]
    num_classes = int(margs["num_classes"])
    if cfg_scale is None:
        cfg_scale = 7.0 if num_classes > 0 else 1.0
    vae_spec = cfg.vae or vae_spec_of(state["vae"])
    if cfg.clip_denoised and vae_spec != "identity":
        raise UserError(f"--clip-denoised clamps x_0 to the pixels' range [-1, 1]; this model samples latents of "
                        f"{vae_spec}, which are not in it: sample without it")
    from harness.vae import load_vae

    decoder = load_vae(vae_spec, dev)
    t = int(margs.get("num_frames", state["config"]["num_frames"]))
    shape = (t, margs["in_channels"], margs["input_size"], margs["input_size"])
    out_dir = Path(cfg.out)
    config = {
        "checkpoint": str(ckpt_path.resolve()),
        "step": state["step"],
        "weights": "ema" if use_ema else "model",
        "ema_schedule": ema_schedule_of(state) if use_ema else None,
        "num": num,
        "batch_size": batch_size,
        "sampler": sampler,
        "steps": steps,
        "spacing": spacing,
        "eta": eta if sampler == "ddim" else None,
        "clip_denoised": cfg.clip_denoised,
        "cfg_scale": cfg_scale,
        "seed": seed,
        "vae": vae_spec,
        "labels": "i mod num_classes" if num_classes else None,
        "precision": precision,
    }
    n_shards = (num + batch_size - 1) // batch_size
    done = ledger.find_complete(out_dir, "sample", config)
    if done and _all_there(out_dir, cfg, done, n_shards):
        from harness.console import console

        console.print(f"[dim]reuse[/dim] {out_dir}: its {num} clips were sampled with these options "
                      f"(finished {done.get('finished', '?')}); nothing written")
        return {**done, "status": "reused"}
    _stale_outputs(out_dir, config, replace_stale)
    earlier_fps = videos_fps(ledger.read_record(out_dir, "sample"))  # of the mp4s already there
    if cfg.mp4:
        _stale_videos(out_dir, cfg.fps, earlier_fps)
    mp4_fps = cfg.fps if cfg.mp4 else earlier_fps
    timesteps = create_diffusion(sampling_respacing(steps, spacing)).timestep_map.tolist()[::-1]
    rec = ledger.start(  # before any file is removed: a job killed from here on leaves a "running" record
        out_dir,
        "sample",
        config,
        protocol={"sampler": sampler, "steps": steps, "cfg_scale": cfg_scale, "spacing": spacing,
                  "clip_denoised": cfg.clip_denoised,
                  "model_timesteps_first": timesteps[:5], "model_timesteps_last": timesteps[-1],
                  "clips": trained_clips(state), "mp4_fps": mp4_fps},
    )
    _drop_beyond(out_dir, num, n_shards, cfg.contact_sheet)
    from harness.console import progress

    written = skipped = 0
    sheet: list[np.ndarray] = []
    with progress() as bar:
        task = bar.add_task(f"sample {sampler}-{steps}", total=num)
        for s in range(n_shards):
            lo, hi = s * batch_size, min(num, (s + 1) * batch_size)
            clips = _whole_shard(out_dir, s, hi - lo)
            if clips is not None:
                skipped += 1
            else:
                g = torch.Generator(device=dev).manual_seed(seed * 1_000_003 + s)
                y = torch.arange(lo, hi, device=dev) % num_classes if num_classes else None
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    latents = sample_video(
                        model,
                        (hi - lo, *shape),
                        sampler=sampler,
                        steps=steps,
                        spacing=spacing,
                        eta=eta,
                        y=y,
                        cfg_scale=cfg_scale,
                        generator=g,
                        device=dev,
                        clip_denoised=cfg.clip_denoised,
                    )
                clips = to_uint8(decoder.decode(latents.float()))
                for j in range(lo, hi):  # a remade shard's clips are new: so are their videos
                    video_path(out_dir, j).unlink(missing_ok=True)
                write_shard(out_dir, s, clips)
                written += 1
            if cfg.mp4:
                for j in range(hi - lo):
                    if not video_path(out_dir, lo + j).exists():
                        write_video(video_path(out_dir, lo + j), clips[j], cfg.fps)
            if cfg.contact_sheet and sum(len(c) for c in sheet) < cfg.contact_sheet:  # the first clips, any shard
                sheet.append(clips[: cfg.contact_sheet - sum(len(c) for c in sheet)])
            bar.advance(task, hi - lo)
    if sheet:
        ema = config["ema_schedule"] or {}
        weights = f"EMA {ema.get('decay')}{' with warm-up' if ema.get('warmup') else ''}" if use_ema else "raw weights"
        title = (f"{Path(str(config['checkpoint'])).parent.parent.name} · step {state['step']} · "
                 f"{sampler.upper()}-{steps} ({spacing}){', x_0 clamped' if cfg.clip_denoised else ''} · {weights}")
        labels = [f"class {i % num_classes}" for i in range(cfg.contact_sheet)] if num_classes else None
        clips_shown = np.concatenate(sheet)
        write_contact_sheet(out_dir / "contact_sheet.png", clips_shown, title=title,
                            row_labels=labels[: len(clips_shown)] if labels else None)
    outputs = {"clips": "clips/", "videos": "videos/" if cfg.mp4 else None, "contact_sheet": "contact_sheet.png"}
    return ledger.finish(out_dir, rec, outputs, shards_written=written, shards_skipped=skipped, mp4_fps=mp4_fps,
                         contact_sheet_clips=cfg.contact_sheet)


def video_path(out_dir: Path, i: int) -> Path:
    """Clip ``i``'s mp4."""
    return out_dir / "videos" / f"sample-{i:05d}.mp4"


def _whole_shard(out_dir: Path, s: int, n: int) -> np.ndarray | None:
    """Shard ``s`` if it is on disk and holds the ``n`` clips this count asks of it; else None (absent, or the
    last shard of an earlier, smaller or larger ``--num``: its clips came from noise drawn for another batch
    shape, so it is remade, not cut or topped up)."""
    path = shard_path(out_dir, s)
    return np.load(path) if _shard_len(path) == n else None


def _shard_len(path: Path) -> int | None:
    """The clips in a shard file; None when it is absent or unreadable (cut short by hand: it is remade, as write_shard
    writes atomically and a killed job leaves none half written)."""
    try:
        return len(np.load(path, mmap_mode="r", allow_pickle=False))
    except (OSError, ValueError):
        return None


def _all_there(out_dir: Path, cfg: SampleConfig, done: dict[str, Any], n_shards: int) -> bool:
    """Whether a complete record's outputs are all on disk as this call asks for them: every shard whole, the mp4s
    (when asked) at this frame rate, the contact sheet of this many clips."""
    for s in range(n_shards):
        if _shard_len(shard_path(out_dir, s)) != min(cfg.batch_size, cfg.num - s * cfg.batch_size):
            return False
    if cfg.mp4 and not (videos_fps(done) in (None, cfg.fps)
                        and all(video_path(out_dir, i).exists() for i in range(cfg.num))):
        return False
    return done.get("contact_sheet_clips", cfg.contact_sheet) == cfg.contact_sheet and (
        cfg.contact_sheet == 0 or (out_dir / "contact_sheet.png").exists())


_SHARD_NAME = re.compile(r"clips-(\d{5,})\.npy")  # shard_path's names; anything else in clips/ is not ours
_VIDEO_NAME = re.compile(r"sample-(\d{5,})\.mp4")  # video_path's


def _drop_beyond(out_dir: Path, num: int, n_shards: int, contact_sheet: int) -> None:
    """Delete the shards and mp4s past this count (a smaller ``--num`` than an earlier run's): ``fvd`` reads every
    shard of the folder, which must hold the clips its record names and no others. Files of other names are left
    alone. With ``contact_sheet`` 0, an earlier run's sheet goes too (it may show clips no longer here)."""
    from harness.console import console

    extra = [p for p in (out_dir / "clips").glob("clips-*.npy")
             if (m := _SHARD_NAME.fullmatch(p.name)) and int(m[1]) >= n_shards]
    extra += [p for p in (out_dir / "videos").glob("sample-*.mp4")
              if (m := _VIDEO_NAME.fullmatch(p.name)) and int(m[1]) >= num]
    if extra:
        console.print(f"[dim]trim[/dim] {out_dir}: --num {num}; removing {len(extra)} shard(s)/video(s) past it")
    for p in extra:
        p.unlink()
    if contact_sheet == 0:
        (out_dir / "contact_sheet.png").unlink(missing_ok=True)


def videos_fps(record: dict[str, Any] | None) -> int | None:
    """The frame rate of the mp4s a sample record's run wrote or kept: ``mp4_fps`` of a finished record, the
    protocol's of a running one (a killed job); None for a record before it, or none."""
    record = record or {}
    return record.get("mp4_fps", (record.get("protocol") or {}).get("mp4_fps"))


def _stale_videos(out_dir: Path, fps: int, old: int | None) -> None:
    """Refuse to mix frame rates: mp4s already in ``videos/`` written at ``old`` fps, another than ``--fps`` (the
    sample record's, :func:`videos_fps`; records before it name none, and their mp4s are kept)."""
    if old is not None and old != fps and any((out_dir / "videos").glob("sample-*.mp4")):
        raise UserError(f"{out_dir}/videos holds mp4s at {old} fps, not --fps {fps}: delete {out_dir}/videos (the "
                        f"clips are kept and written again) or pass --fps {old}")
